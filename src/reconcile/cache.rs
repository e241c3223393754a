//! The reconciler's pod cache entry: a live pod kept as the compact JSON of only the fields the
//! decision and the patch read, decoded again when the pod is looked at.
//!
//! A typed `Pod` costs kilobytes of struct space even when nearly empty (a `Container` is over
//! 2 KiB of `Option`s), so 10,000 slimmed but typed pods held over 120 MiB
//! (docs/performance.md). The same pods as slimmed JSON are a tenth of that; decoding one for a
//! decision costs microseconds, paid once per event or resync.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Keeps only what the decision and the patch read: metadata without managedFields, each
/// container's name, image, command and mounts, the volumes, the phase.
pub fn slim(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    image: c.image,
                    command: c.command,
                    volume_mounts: c.volume_mounts,
                    ..Container::default()
                })
                .collect(),
            volumes: spec.volumes,
            ..PodSpec::default()
        });
    }
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        ..PodStatus::default()
    });
}

/// A cached pod: its identity typed (for the cache key), the rest as slimmed JSON.
#[derive(Clone, Debug)]
pub struct CachedPod {
    /// name, namespace, uid, resourceVersion only.
    metadata: ObjectMeta,
    json: Box<str>,
}

impl CachedPod {
    /// Slims `pod` and keeps it.
    pub fn new(mut pod: Pod) -> Self {
        slim(&mut pod);
        let metadata = ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        };
        // A Pod of strings, maps and lists always serialises.
        let json = serde_json::to_string(&pod)
            .unwrap_or_default()
            .into_boxed_str();
        Self { metadata, json }
    }

    /// The slimmed pod, decoded again.
    pub fn pod(&self) -> Result<Pod, serde_json::Error> {
        serde_json::from_str(&self.json)
    }

    /// Bytes of JSON held.
    pub fn json_len(&self) -> usize {
        self.json.len()
    }
}

impl<'de> serde::Deserialize<'de> for CachedPod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Pod::deserialize(d).map(Self::new)
    }
}

impl k8s_openapi::Resource for CachedPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for CachedPod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &Self::Ty {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut Self::Ty {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_decision_reads_and_nothing_else() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "resourceVersion": "3", "uid": "u",
                "annotations": {"a": "b"}, "labels": {"l": "v"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s", "uid": "x"}],
                "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {"containers": [{"name": "db", "image": "postgres:16", "env": [{"name": "X", "value": "y"}],
                "command": ["postgres"], "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}], "nodeName": "w"},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        }))
        .expect("pod");
        let cached = CachedPod::new(pod);
        assert_eq!(
            serde_json::to_value(cached.pod().expect("decodes")).expect("json"),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "n", "resourceVersion": "3", "uid": "u",
                    "annotations": {"a": "b"}, "labels": {"l": "v"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "s", "uid": "x"}]},
                "spec": {"containers": [{"name": "db", "image": "postgres:16", "command": ["postgres"],
                    "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]},
                "status": {"phase": "Running"}
            })
        );
        let key = kube::runtime::reflector::ObjectRef::from_obj(&cached);
        assert_eq!(
            (key.name.as_str(), key.namespace.as_deref()),
            ("p", Some("n"))
        );
    }
}
