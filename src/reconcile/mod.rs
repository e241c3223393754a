//! Bringing live pods to the state admission would have produced: `audit --apply` (one shot) and
//! the reconciler in `serve` (continuous).
//!
//! Layers, pure first: [`decide`] (what to do with one pod, from the webhook's own
//! [`crate::admission::mutate`]), [`queue`] and [`ratelimit`] (bounded work), [`cache`] (compact cached pods), then the thin
//! Kubernetes edges: [`apply`] (one preconditioned patch with conflict re-decision, and the
//! `audit --apply` run) and [`controller`] (the watch and the queue worker in `serve`), with their [`metrics`].

pub mod apply;
pub mod cache;
pub mod controller;
pub mod decide;
pub mod metrics;
pub mod queue;
pub mod ratelimit;
