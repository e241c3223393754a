//! The Kubernetes API at the edges: the namespace cache admission reads, and `audit`, which
//! lists pods (and Velero's Schedules) and checks them. Thin I/O around the pure core; tested against kube's mock service.

pub mod audit;
pub mod namespaces;
pub mod schedules;
