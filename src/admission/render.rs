//! Offline rendering: run the webhook's decision over manifests (Pods and pod templates).

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::admission::patch;
use crate::hooks::template::Library;
use crate::pod::backup_method::ClusterDefaults;
use crate::pod::detect::{self, Outcome};

/// Why a manifest could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input is not YAML/JSON.
    #[error("{source_name}: document {index}: not valid YAML or JSON: {reason}")]
    Parse {
        /// File name or `-`.
        source_name: String,
        /// 1-based document index.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The pod (template) does not fit the Pod schema.
    #[error("{source_name}: document {index} ({kind} {name}): pod spec is not valid: {reason}")]
    Pod {
        /// File name or `-`.
        source_name: String,
        /// 1-based document index.
        index: usize,
        /// Manifest kind.
        kind: String,
        /// Manifest name.
        name: String,
        /// Deserializer message.
        reason: String,
    },
}

/// The result for one document.
#[derive(Debug)]
pub struct Rendered {
    /// The manifest with its pod (template) annotated as the webhook would leave it.
    pub manifest: Value,
    /// The JSON Patch the webhook would return for the pod (empty when nothing changes).
    pub patch: Patch,
    /// `Kind/name` of the manifest.
    pub subject: String,
    /// Decision outcome; `None` for kinds without pods.
    pub outcome: Option<Outcome>,
    /// Warnings the API client would print.
    pub warnings: Vec<String>,
}

impl Rendered {
    /// A manifest without a pod (template): printed as it came.
    fn untouched(manifest: Value, subject: String) -> Self {
        Self {
            manifest,
            patch: Patch(vec![]),
            subject,
            outcome: None,
            warnings: vec![],
        }
    }
}

/// Where the pod template sits inside a workload manifest (`""` for a Pod itself).
pub fn pod_template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Parses multi-document YAML (JSON is YAML) into values, skipping empty documents.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| RenderError::Parse {
            source_name: source_name.to_owned(),
            index: i + 1,
            reason: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Renders one manifest, assuming Backups default to snapshots.
pub fn render(
    source_name: &str,
    index: usize,
    manifest: Value,
    library: &Library,
) -> Result<Rendered, RenderError> {
    render_with(
        source_name,
        index,
        manifest,
        library,
        ClusterDefaults::default(),
    )
}

/// Renders one manifest as a webhook run with the Backup `defaults` would leave it.
pub fn render_with(
    source_name: &str,
    index: usize,
    mut manifest: Value,
    library: &Library,
    defaults: ClusterDefaults,
) -> Result<Rendered, RenderError> {
    let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let subject = format!("{kind}/{name}");
    let Some(ptr) = pod_template_pointer(&kind) else {
        return Ok(Rendered::untouched(manifest, subject));
    };
    let manifest_claims_source = manifest
        .pointer("/spec/volumeClaimTemplates")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(template) = manifest.pointer_mut(ptr) else {
        return Ok(Rendered::untouched(manifest, subject));
    };
    // A pod template that is a string, number or list cannot be indexed (cargo fuzz found the
    // panic: fuzz/regressions/render/).
    if !(template.is_object() || template.is_null()) {
        return Err(RenderError::Pod {
            source_name: source_name.to_owned(),
            index,
            kind: kind.clone(),
            name: name.clone(),
            reason: "the pod template is not a mapping".to_owned(),
        });
    }
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    let mut pod_value = json!({"metadata": template["metadata"], "spec": template["spec"]});
    if matches!(kind.as_str(), "Job" | "CronJob") {
        // Pods of Jobs are owned by the Job; the webhook sees that owner reference.
        pod_value["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": ""}]);
    }
    if kind == "StatefulSet" {
        add_claim_template_volumes(
            &mut pod_value,
            &manifest_claims(&manifest_claims_source),
            &name,
        );
    }
    let pod: Pod = serde_json::from_value(pod_value).map_err(|e| RenderError::Pod {
        source_name: source_name.to_owned(),
        index,
        kind: kind.clone(),
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let decision = detect::decide_with(&pod, library, defaults);
    let mut p = patch::add_annotations(pod.metadata.annotations.as_ref(), &decision.add);
    if let Some(dump) = &decision.dump_volume {
        // Against the template's own spec: a StatefulSet's pod above also has the claim
        // templates' volumes, which the template does not list.
        let own: Option<k8s_openapi::api::core::v1::PodSpec> =
            serde_json::from_value(template["spec"].clone()).ok();
        p.0.extend(patch::add_dump_volume(own.as_ref(), dump));
    }
    // The patch only adds under /metadata/annotations (which exists or is created by the patch)
    // and, in dump mode, a volume and a mount.
    let _ = json_patch::patch(template, &p);
    Ok(Rendered {
        manifest,
        patch: p,
        subject,
        outcome: Some(decision.outcome),
        warnings: decision.warnings,
    })
}

pub(crate) fn manifest_claims(claims: &Value) -> Vec<String> {
    claims
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    c.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The StatefulSet controller adds one PVC volume per claim template to every pod it creates;
/// the webhook sees them, so rendering must too.
pub(crate) fn add_claim_template_volumes(pod: &mut Value, claims: &[String], sts: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(list) = volumes.as_array_mut() {
        for claim in claims {
            if !list.iter().any(|v| v["name"] == claim.as_str()) {
                list.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": format!("{claim}-{sts}-0")}}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pg}
spec:
  serviceName: pg
  selector: {matchLabels: {app: pg}}
  template:
    metadata: {labels: {app: pg}}
    spec:
      containers:
        - name: postgres
          image: postgres:16
          volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Service
metadata: {name: pg}
"#;

    #[test]
    fn statefulset_template_is_annotated_and_other_kinds_pass() {
        let lib = Library::builtin().expect("lib");
        let docs = parse_documents("-", STATEFULSET).expect("yaml");
        assert_eq!(docs.len(), 2);
        let r = render("-", 1, docs[0].clone(), &lib).expect("render");
        // The claim template's volume is added to the pod as the StatefulSet controller would.
        assert_eq!(r.outcome, Some(Outcome::Injected));
        let a = &r.manifest["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(a["velero-hook-injector.io/injected"], "postgres/postgres");
        assert!(
            r.manifest["spec"]["template"]["spec"]
                .get("volumes")
                .is_none(),
            "the template itself is not changed beyond annotations"
        );
        let other = render("-", 2, docs[1].clone(), &lib).expect("render");
        assert_eq!(other.outcome, None);
    }
}
