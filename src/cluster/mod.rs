//! The Kubernetes API at the edges: the namespace cache admission reads, `audit`, which lists
//! pods (and Velero's Schedules) and checks them, and `restore-report`, which gathers a Velero
//! restore's hook results. Thin I/O around the pure core; tested against kube's mock service.

pub mod audit;
pub mod namespaces;
pub mod restore_report;
pub mod restore_source;
pub mod schedules;
