//! What a pod runs and how Velero will copy it: image references, engine versions, the
//! deployment read from its env, and the backup method of its data volumes. Pure: no I/O, no clock.

pub mod backup_method;
pub mod deployment;
pub mod image;
pub mod version;
