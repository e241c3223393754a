//! velero-hook-injector: detect database containers in pods and inject Velero backup hooks.
//!
//! The core (image parsing, detection, templates, patch building, admission decisions) is pure
//! and synchronous; the server, TLS and metrics are thin layers in their own modules.

pub mod admission;
pub mod audit;
pub mod backup_method;
pub mod connection;
pub mod detect;
pub mod image;
pub mod keys;
pub mod metrics;
pub mod namespaces;
pub mod patch;
pub mod policy;
pub mod reconcile;
pub mod render;
pub mod rules;
pub mod script;
pub mod server;
pub mod template;
pub mod tls;
pub mod velero;
pub mod version;
