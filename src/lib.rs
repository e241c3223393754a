//! velero-hook-injector: detect database containers in pods and inject Velero backup and restore
//! hooks.
//!
//! The folders are the layers. The pure core, synchronous and without I/O: [`pod`] (what a pod
//! runs, how Velero copies it), [`hooks`] (templates, scripts, Velero's rules) and [`admission`]
//! (the decision, the namespace mode, the patch, offline rendering). The thin edges: [`server`]
//! (HTTPS, TLS, metrics), [`cluster`] (the Kubernetes API: namespace cache, audit) and
//! [`reconcile`] (hooks for running pods).

pub mod admission;
pub mod cluster;
pub mod hooks;
pub mod keys;
pub mod pod;
pub mod reconcile;
pub mod server;
