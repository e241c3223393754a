//! What a pod runs and how Velero will copy it: image references, engine versions, the choice
//! of template and container, and the backup method of its data volumes. Pure: no I/O, no clock.

pub mod backup_method;
pub mod detect;
pub mod image;
pub mod version;

/// `impl k8s_openapi::Resource` for a wrapper type that stands for a core/v1 Pod (admission's
/// lenient pod, the reconciler's slimmed cache entry), so kube's APIs treat it as one.
macro_rules! pod_resource {
    ($t:ty) => {
        impl k8s_openapi::Resource for $t {
            const API_VERSION: &'static str =
                <k8s_openapi::api::core::v1::Pod as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str =
                <k8s_openapi::api::core::v1::Pod as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str =
                <k8s_openapi::api::core::v1::Pod as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str =
                <k8s_openapi::api::core::v1::Pod as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str =
                <k8s_openapi::api::core::v1::Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <k8s_openapi::api::core::v1::Pod as k8s_openapi::Resource>::Scope;
        }
    };
}
pub(crate) use pod_resource;
