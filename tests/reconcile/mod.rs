//! Shared test support for the reconciler and `audit --apply`.
pub mod fake;
