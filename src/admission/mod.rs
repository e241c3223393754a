//! AdmissionReview in, AdmissionReview out: the webhook's decision as a pure function of the body.
//!
//! [`mutate`] is the decision for one pod (the reconciler and `audit --apply` reuse it); the
//! submodules are what it is made of: the namespace mode ([`policy`]), the add-only JSON Patch
//! ([`patch`]), and the offline `render` that applies both to manifests ([`render`]).

pub mod patch;
pub mod policy;
pub mod render;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde::Serialize;
use serde_json::Value;

use std::collections::BTreeMap;

use crate::admission::policy::{Mode, NamespaceLookup, NoNamespaces};
use crate::hooks::detect::{self, Outcome};
use crate::hooks::template::Library;
use crate::pod::backup_method::ClusterDefaults;

/// The only AdmissionReview version served; v1beta1 is refused (see docs/reference.md).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a request body is not an AdmissionReview this webhook can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON at all.
    #[error("request body is not JSON: {0}; send an admission.k8s.io/v1 AdmissionReview")]
    NotJson(serde_json::Error),
    /// Wrong or missing apiVersion.
    #[error(
        "apiVersion {0:?} is not supported: only admission.k8s.io/v1 is served; set admissionReviewVersions: [\"v1\"] in the MutatingWebhookConfiguration"
    )]
    ApiVersion(String),
    /// Wrong or missing kind.
    #[error("kind {0:?} is not AdmissionReview")]
    Kind(String),
    /// No `request`.
    #[error("AdmissionReview has no request; the API server always sends one")]
    MissingRequest,
    /// No or empty `request.uid`.
    #[error("request.uid is missing or empty; the response must echo it")]
    MissingUid,
    /// A CREATE without `request.object`.
    #[error("request.object is missing for a {0} of a Pod")]
    MissingObject(&'static str),
    /// The envelope has the right shape but a field has the wrong type.
    #[error("AdmissionReview is malformed: {0}")]
    Malformed(serde_json::Error),
}

/// What the webhook answered, for logs and metrics.
#[derive(Clone, Debug)]
pub struct Summary {
    /// request.uid.
    pub uid: String,
    /// request.namespace.
    pub namespace: String,
    /// Pod name, or `generateName*` when the name is not yet assigned.
    pub pod: String,
    /// Decision outcome; `None` when the request was passed through unexamined.
    pub outcome: Option<Outcome>,
    /// Template chosen, if any.
    pub template: Option<String>,
    /// request.dryRun.
    pub dry_run: bool,
    /// Mode applied.
    pub mode: Mode,
    /// True when the namespace policy could not be read and the webhook failed open.
    pub degraded: bool,
    /// False when the pod was denied (enforce mode).
    pub allowed: bool,
}

/// A serialized response review plus its summary.
#[derive(Debug)]
pub struct Reviewed {
    /// JSON AdmissionReview with `response` set.
    pub body: Vec<u8>,
    /// What happened.
    pub summary: Summary,
}

/// The response review. Written here rather than with kube's `AdmissionResponse` because that
/// type serialises the patch as an array of numbers; the API contract is a base64 string.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_annotations: Option<&'a BTreeMap<String, String>>,
}

/// `metav1.Status` for a denial.
#[derive(Serialize)]
struct Status {
    code: u16,
    reason: &'static str,
    message: String,
}

impl<'a> Response<'a> {
    fn allow(uid: &'a str) -> Self {
        Self {
            uid,
            allowed: true,
            patch: None,
            patch_type: None,
            status: None,
            warnings: &[],
            audit_annotations: None,
        }
    }

    fn into_vec(self) -> Vec<u8> {
        let review = ResponseReview {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: self,
        };
        // A struct of strings and bools always serialises.
        serde_json::to_vec(&review).unwrap_or_default()
    }
}

/// `bytes` in base64 as a JSON string, written into the response as it is: base64 has nothing
/// to escape, and escaping the patch's ~8 KiB again cost a tenth of an admission (callgrind).
fn base64_json_string(bytes: &[u8]) -> Option<Box<serde_json::value::RawValue>> {
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
    s.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut s);
    s.push('"');
    serde_json::value::RawValue::from_string(s).ok()
}

/// What a review needs besides the body.
pub struct Context<'a> {
    /// Templates in force.
    pub library: &'a Library,
    /// Mode for namespaces that do not set one.
    pub cluster_mode: Mode,
    /// Per-namespace policy.
    pub namespaces: &'a dyn NamespaceLookup,
    /// What the cluster's Backups do with volumes by default.
    pub backup_defaults: ClusterDefaults,
}

/// Answers one AdmissionReview request body in `inject` mode, with no namespace policy.
pub fn review(body: &[u8], library: &Library) -> Result<Reviewed, ReviewError> {
    review_with(
        body,
        &Context {
            library,
            cluster_mode: Mode::Inject,
            namespaces: &NoNamespaces,
            backup_defaults: ClusterDefaults::default(),
        },
    )
}

/// A Pod read for admission with only the fields the decision reads (metadata: annotations,
/// labels, names, owners; spec: each container's name, image, command, args, volume mounts,
/// whether its root filesystem is read-only, its env entries (name, literal value, whether it
/// has a `valueFrom`, whose content is skipped) and whether it has an `envFrom`, and the volumes
/// by type; the deployment assessment reads the env and the argv). The rest is skipped unparsed: `managedFields` alone is up to a third of a request's
/// bytes, every entry a tree of JSON maps, and parsing everything took 37 µs of a typical
/// database pod's 38 µs admission (docs/performance.md). Fields read here are still type-checked.
#[derive(Clone, Debug)]
struct AdmittedPod(Pod);

impl<'de> serde::Deserialize<'de> for AdmittedPod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
        #[derive(serde::Deserialize)]
        struct Object {
            // Required: a patch adds under /metadata, which must exist for it to apply (the API
            // server always sends it; cargo fuzz found the gap: fuzz/regressions/review/).
            metadata: Meta,
            #[serde(default)]
            spec: Option<Spec>,
        }
        #[derive(serde::Deserialize)]
        struct Spec {
            #[serde(default)]
            containers: Vec<Container>,
            #[serde(default)]
            volumes: Option<Vec<LeanVolume>>,
        }
        /// A volume with its name and type. The decision reads the sources of PVC, emptyDir and
        /// hostPath volumes, and of the others only whether they are there: the projected
        /// service-account volume every pod has is a deep tree that is skipped unparsed.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct LeanVolume {
            name: String,
            #[serde(default)]
            persistent_volume_claim:
                Option<k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource>,
            #[serde(default)]
            empty_dir: Option<k8s_openapi::api::core::v1::EmptyDirVolumeSource>,
            #[serde(default)]
            host_path: Option<k8s_openapi::api::core::v1::HostPathVolumeSource>,
            #[serde(default)]
            projected: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            secret: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            config_map: Option<serde::de::IgnoredAny>,
            #[serde(default, rename = "downwardAPI")]
            downward_api: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            image: Option<serde::de::IgnoredAny>,
        }
        impl From<LeanVolume> for k8s_openapi::api::core::v1::Volume {
            fn from(v: LeanVolume) -> Self {
                Self {
                    name: v.name,
                    persistent_volume_claim: v.persistent_volume_claim,
                    empty_dir: v.empty_dir,
                    host_path: v.host_path,
                    projected: v.projected.map(|_| Default::default()),
                    secret: v.secret.map(|_| Default::default()),
                    config_map: v.config_map.map(|_| Default::default()),
                    downward_api: v.downward_api.map(|_| Default::default()),
                    image: v.image.map(|_| Default::default()),
                    ..Default::default()
                }
            }
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Container {
            name: String,
            #[serde(default)]
            image: Option<String>,
            #[serde(default)]
            command: Option<Vec<String>>,
            #[serde(default)]
            args: Option<Vec<String>>,
            #[serde(default)]
            volume_mounts: Option<Vec<k8s_openapi::api::core::v1::VolumeMount>>,
            #[serde(default)]
            security_context: Option<SecurityContext>,
            #[serde(default)]
            env: Option<Vec<LeanEnv>>,
            #[serde(default)]
            env_from: Option<Vec<serde::de::IgnoredAny>>,
        }
        /// Of a container's security context, whether its root filesystem is read-only (the
        /// hooks' $TMPDIR must be writable).
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SecurityContext {
            #[serde(default)]
            read_only_root_filesystem: Option<bool>,
        }
        /// An env entry: its name and literal value, and whether it takes its value from
        /// elsewhere (a Secret, a ConfigMap, a field), whose content is skipped unparsed.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct LeanEnv {
            name: String,
            #[serde(default)]
            value: Option<String>,
            #[serde(default)]
            value_from: Option<serde::de::IgnoredAny>,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Meta {
            annotations: Option<BTreeMap<String, String>>,
            labels: Option<BTreeMap<String, String>>,
            name: Option<String>,
            generate_name: Option<String>,
            namespace: Option<String>,
            uid: Option<String>,
            owner_references: Option<Vec<OwnerReference>>,
        }
        let o = Object::deserialize(d)?;
        let m = o.metadata;
        Ok(Self(Pod {
            metadata: ObjectMeta {
                annotations: m.annotations,
                labels: m.labels,
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                uid: m.uid,
                owner_references: m.owner_references,
                ..ObjectMeta::default()
            },
            spec: o.spec.map(|s| k8s_openapi::api::core::v1::PodSpec {
                containers: s
                    .containers
                    .into_iter()
                    .map(|c| k8s_openapi::api::core::v1::Container {
                        name: c.name,
                        image: c.image,
                        command: c.command,
                        volume_mounts: c.volume_mounts,
                        security_context: c.security_context.map(|sc| {
                            k8s_openapi::api::core::v1::SecurityContext {
                                read_only_root_filesystem: sc.read_only_root_filesystem,
                                ..Default::default()
                            }
                        }),
                        env: c.env.map(|env| {
                            env.into_iter()
                                .map(|e| k8s_openapi::api::core::v1::EnvVar {
                                    name: e.name,
                                    value: e.value,
                                    value_from: e.value_from.map(|_| Default::default()),
                                })
                                .collect()
                        }),
                        env_from: c
                            .env_from
                            .map(|f| f.into_iter().map(|_| Default::default()).collect()),
                        args: c.args,
                        ..Default::default()
                    })
                    .collect(),
                volumes: s.volumes.map(|v| v.into_iter().map(Into::into).collect()),
                ..Default::default()
            }),
            status: None,
        }))
    }
}

/// Answers one AdmissionReview request body.
pub fn review_with(body: &[u8], ctx: &Context<'_>) -> Result<Reviewed, ReviewError> {
    // Fields skipped unparsed are not UTF-8-checked by serde_json, so the whole body is checked
    // here (cargo fuzz found a body with a bad byte in managedFields being answered).
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ReviewError::NotJson(serde::de::Error::custom(
            format_args!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )));
    }
    match serde_json::from_slice::<PodReview>(body) {
        Ok(review) => {
            check_envelope(&review.api_version, &review.kind)?;
            let req = review.request.ok_or(ReviewError::MissingRequest)?;
            if req.uid.is_empty() {
                return Err(ReviewError::MissingUid);
            }
            if req.operation == Operation::Create && req.object.is_none() {
                return Err(ReviewError::MissingObject("CREATE"));
            }
            Ok(answer_pod(&req, ctx))
        }
        Err(typed_err) => diagnose(body, typed_err),
    }
}

fn check_envelope(api_version: &str, kind: &str) -> Result<(), ReviewError> {
    if api_version != API_VERSION {
        return Err(ReviewError::ApiVersion(api_version.to_owned()));
    }
    if kind != "AdmissionReview" {
        return Err(ReviewError::Kind(kind.to_owned()));
    }
    Ok(())
}

/// The typed parse failed: find out why, and pass non-Pod objects through unexamined.
fn diagnose(body: &[u8], typed_err: serde_json::Error) -> Result<Reviewed, ReviewError> {
    let value: Value = serde_json::from_slice(body).map_err(ReviewError::NotJson)?;
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    check_envelope(&text("apiVersion"), &text("kind"))?;
    let request = value
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(ReviewError::MissingRequest)?;
    if request
        .get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ReviewError::MissingUid);
    }
    let is_pod = request.pointer("/kind/kind").and_then(Value::as_str) == Some("Pod");
    if is_pod {
        return Err(ReviewError::Malformed(typed_err));
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(ReviewError::Malformed)?;
    let req: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| ReviewError::MissingRequest)?;
    let summary = Summary {
        uid: req.uid.clone(),
        namespace: req.namespace.clone().unwrap_or_default(),
        pod: req.name.clone(),
        outcome: None,
        template: None,
        dry_run: req.dry_run,
        mode: Mode::Inject,
        degraded: false,
        allowed: true,
    };
    Ok(Reviewed {
        body: Response::allow(&req.uid).into_vec(),
        summary,
    })
}

/// An AdmissionReview of a Pod with only what the answer reads: kube's `AdmissionReview` also
/// parses `userInfo`, `options` (into a JSON tree), `oldObject` and the request's kinds, which
/// nothing here uses. Skipped fields are still scanned as JSON.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodReview {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    request: Option<PodRequest>,
}

/// The fields of `request` the answer reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodRequest {
    uid: String,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    object: Option<AdmittedPod>,
    #[serde(default)]
    dry_run: bool,
}

/// Of `request.resource`, the resource name (`pods`).
#[derive(serde::Deserialize)]
struct GroupVersionResource {
    #[serde(default)]
    resource: String,
}

fn answer_pod(req: &PodRequest, ctx: &Context<'_>) -> Reviewed {
    let namespace = req.namespace.clone().unwrap_or_default();
    let mut summary = Summary {
        uid: req.uid.clone(),
        namespace,
        pod: pod_name(req),
        outcome: None,
        template: None,
        dry_run: req.dry_run,
        mode: ctx.cluster_mode,
        degraded: false,
        allowed: true,
    };
    let mut response = Response::allow(&req.uid);
    let examine = req.operation == Operation::Create
        && req.sub_resource.is_none()
        && req.resource.resource == "pods";
    let Some(AdmittedPod(pod)) = req.object.as_ref().filter(|_| examine) else {
        return Reviewed {
            body: response.into_vec(),
            summary,
        };
    };
    let m = mutate(pod, &summary.namespace, ctx);
    summary.outcome = Some(m.outcome);
    summary.template = m.template.clone();
    summary.mode = m.mode;
    summary.degraded = m.degraded;
    let verdict = &m.verdict;
    summary.allowed = verdict.allowed;
    response.allowed = verdict.allowed;
    response.warnings = &verdict.warnings;
    if !verdict.audit.is_empty() {
        response.audit_annotations = Some(&verdict.audit);
    }
    if let Some(message) = verdict.denial.clone() {
        response.status = Some(Status {
            code: 403,
            reason: "Forbidden",
            message,
        });
    } else if let Some(bytes) = m.json_patch_bytes(pod, ctx.library) {
        if let Some(b64) = base64_json_string(&bytes) {
            response.patch = Some(b64);
            response.patch_type = Some("JSONPatch");
        }
    }
    Reviewed {
        body: response.into_vec(),
        summary,
    }
}

/// What admission does with one pod: the decision, the mode it was made in, and the verdict.
///
/// This is the webhook's whole decision as one pure function. Admission turns it into a JSON
/// Patch at CREATE; the reconciler and `audit --apply` patch live pods with the same
/// [`Mutation::add`] (see `reconcile::decide`), so there is no second copy of the rules.
#[derive(Clone, Debug)]
pub struct Mutation {
    /// Decision outcome.
    pub outcome: Outcome,
    /// Template chosen, if any.
    pub template: Option<String>,
    /// Container chosen, if any.
    pub container: Option<String>,
    /// Mode applied.
    pub mode: Mode,
    /// True when the namespace policy could not be read and the mode failed open.
    pub degraded: bool,
    /// Annotations to add, warnings, audit annotations, denial.
    pub verdict: policy::Verdict,
}

impl Mutation {
    /// The annotations this mutation adds (empty when it changes nothing or denies).
    pub fn add(&self) -> &BTreeMap<String, String> {
        &self.verdict.add
    }

    /// The add-only RFC 6902 patch admission returns for `pod` (its annotations, and in dump
    /// mode the dump volume and mount), `None` when nothing is added.
    pub fn json_patch(&self, pod: &Pod) -> Option<json_patch::Patch> {
        if self.verdict.denial.is_some() || self.verdict.add.is_empty() {
            return None;
        }
        let mut p = patch::add_annotations(pod.metadata.annotations.as_ref(), &self.verdict.add);
        if let Some(dump) = &self.verdict.dump_volume {
            p.0.extend(patch::add_dump_volume(pod.spec.as_ref(), dump));
        }
        Some(p)
    }

    /// [`Mutation::json_patch`] as JSON text, written with the template's cached command
    /// encodings from `library` (what admission sends; the same operations).
    pub fn json_patch_bytes(&self, pod: &Pod, library: &Library) -> Option<Vec<u8>> {
        if self.verdict.denial.is_some() || self.verdict.add.is_empty() {
            return None;
        }
        let template = self.template.as_deref().and_then(|t| library.get(t));
        let more = match &self.verdict.dump_volume {
            Some(dump) => patch::add_dump_volume(pod.spec.as_ref(), dump),
            None => Vec::new(),
        };
        Some(patch::write_add_annotations(
            pod.metadata.annotations.as_ref(),
            &self.verdict.add,
            |v| template.and_then(|t| t.command_literal(v)),
            &more,
        ))
    }
}

/// Decides what admission does with `pod` in `namespace`. Pure apart from the namespace lookup.
pub fn mutate(pod: &Pod, namespace: &str, ctx: &Context<'_>) -> Mutation {
    let decision = detect::decide_with(pod, ctx.library, ctx.backup_defaults);
    // The namespace is looked up only for pods that matter, keeping the common path cheap.
    let effective = if decision.outcome == Outcome::NoDatabase {
        policy::effective_mode(ctx.cluster_mode, &policy::NamespaceView::Known(None))
    } else {
        policy::effective_mode(ctx.cluster_mode, &ctx.namespaces.lookup(namespace))
    };
    let (outcome, template, container) = (
        decision.outcome,
        decision.template.clone(),
        decision.container.clone(),
    );
    let mut verdict = policy::apply(effective.mode, decision, pod.metadata.annotations.as_ref());
    if let Some(w) = effective.warning {
        verdict.warnings.push(w);
    }
    Mutation {
        outcome,
        template,
        container,
        mode: effective.mode,
        degraded: effective.degraded,
        verdict,
    }
}

fn pod_name(req: &PodRequest) -> String {
    if !req.name.is_empty() {
        return req.name.clone();
    }
    req.object
        .as_ref()
        .and_then(|o| o.0.metadata.generate_name.clone())
        .map(|g| format!("{g}*"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lib() -> Library {
        Library::builtin().expect("builtin")
    }

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
    }

    /// The real `kubectl run` request, turned into a database pod with a data volume.
    fn postgres_review() -> Value {
        let mut r = fixture("pod-create-simple.json");
        let obj = &mut r["request"]["object"];
        obj["spec"]["containers"][0]["image"] = json!("postgres:16");
        obj["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/var/lib/postgresql/data"}]);
        obj["spec"]["volumes"] =
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "pg"}}]);
        r
    }

    fn answer(v: &Value) -> Value {
        let out = review(&serde_json::to_vec(v).expect("ser"), &lib()).expect("reviewed");
        serde_json::from_slice(&out.body).expect("response json")
    }

    fn patched(review_v: &Value, resp: &Value) -> Value {
        let mut obj = review_v["request"]["object"].clone();
        if let Some(p) = resp["response"]["patch"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .expect("base64");
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
            json_patch::patch(&mut obj, &patch).expect("applies");
        }
        obj
    }

    #[test]
    fn the_patch_written_from_cached_commands_is_the_same_patch() {
        let library = lib();
        let ctx = Context {
            library: &library,
            cluster_mode: Mode::Inject,
            namespaces: &NoNamespaces,
            backup_defaults: ClusterDefaults::default(),
        };
        let images = [
            "postgres:16",
            "mariadb:11",
            "mysql:8.4",
            "redis:7",
            "mongo:7",
            "bitnami/kafka:3.7",
        ];
        let annotations = [
            None,
            Some(json!({})),
            Some(
                json!({"team/owner~x": "db \"core\"", "velero-hook-injector.io/backup-method": "fs-backup"}),
            ),
            Some(json!({"pre.hook.backup.velero.io/command": "[\"/bin/true\"]"})),
        ];
        let mut patched = 0;
        for image in images {
            for a in &annotations {
                let mut meta = json!({"name": "db-0", "namespace": "shop"});
                if let Some(a) = a {
                    meta["annotations"] = a.clone();
                }
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": meta,
                    // The charts hand MySQL and MariaDB their root password from a Secret.
                    "spec": {"containers": [{"name": "db", "image": image,
                              "env": [{"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "root-password"}}}],
                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}
                }))
                .expect("pod");
                let m = mutate(&pod, "shop", &ctx);
                let bytes = m.json_patch_bytes(&pod, &library);
                let decoded = bytes.as_ref().map(|b| {
                    serde_json::from_slice::<json_patch::Patch>(b).unwrap_or_else(|e| {
                        panic!("{image} {a:?}: {e}: {}", String::from_utf8_lossy(b))
                    })
                });
                assert_eq!(decoded, m.json_patch(&pod), "{image} {a:?}");
                patched += usize::from(decoded.is_some());
            }
        }
        assert!(patched >= 18, "only {patched} pods got a patch");
    }

    #[test]
    fn database_pod_gets_a_patch_with_uid_echoed() {
        let r = postgres_review();
        let resp = answer(&r);
        assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(resp["response"]["uid"], r["request"]["uid"]);
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        let pod = patched(&r, &resp);
        let a = &pod["metadata"]["annotations"];
        assert_eq!(a["velero-hook-injector.io/injected"], "postgres/simple");
        assert_eq!(a["pre.hook.backup.velero.io/container"], "simple");
        // Idempotent: the patched pod sent again gets no patch.
        let mut again = r.clone();
        again["request"]["object"] = pod;
        assert!(answer(&again)["response"]["patch"].is_null());
    }

    #[test]
    fn non_database_fixtures_pass_without_patch() {
        for f in [
            "pod-create-simple.json",
            "pod-create-multi-container-init.json",
            "pod-create-generatename-serviceaccount.json",
            "pod-update-annotate.json",
            "pod-create-dryrun-server.json",
        ] {
            let resp = answer(&fixture(f));
            assert_eq!(resp["response"]["allowed"], true, "{f}");
            assert!(resp["response"]["patch"].is_null(), "{f}");
        }
    }

    #[test]
    fn dry_run_is_answered_identically() {
        let mut r = fixture("pod-create-dryrun-server.json");
        r["request"]["object"]["spec"]["containers"][0]["image"] = json!("redis:7.2");
        r["request"]["object"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "d", "mountPath": "/data"}]);
        r["request"]["object"]["spec"]["volumes"] =
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]);
        let resp = answer(&r);
        assert_eq!(r["request"]["dryRun"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn other_kinds_and_operations_pass_through() {
        let mut r = postgres_review();
        r["request"]["operation"] = json!("DELETE");
        assert!(answer(&r)["response"]["patch"].is_null());
        let mut r = postgres_review();
        r["request"]["subResource"] = json!("status");
        assert!(answer(&r)["response"]["patch"].is_null());
        let mut r = postgres_review();
        r["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        r["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
        let resp = answer(&r);
        assert_eq!(resp["response"]["allowed"], true);
        assert!(resp["response"]["patch"].is_null());
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let lib = lib();
        let err = |b: &[u8]| review(b, &lib).expect_err("must fail").to_string();
        assert!(err(b"{not json").contains("not JSON"));
        let mut r = postgres_review();
        r["apiVersion"] = json!("admission.k8s.io/v1beta1");
        assert!(err(&serde_json::to_vec(&r).expect("ser")).contains("admissionReviewVersions"));
        let mut r = postgres_review();
        r["request"].as_object_mut().expect("obj").remove("uid");
        assert!(err(&serde_json::to_vec(&r).expect("ser")).contains("uid"));
        let mut r = postgres_review();
        r.as_object_mut().expect("obj").remove("request");
        assert!(err(&serde_json::to_vec(&r).expect("ser")).contains("no request"));
        let mut r = postgres_review();
        r["request"]["object"] = Value::Null;
        assert!(err(&serde_json::to_vec(&r).expect("ser")).contains("request.object"));
        let mut r = postgres_review();
        r["request"]["object"]["spec"]["containers"] = json!("nope");
        assert!(err(&serde_json::to_vec(&r).expect("ser")).contains("malformed"));
    }

    struct Fixed(policy::NamespaceView);
    impl NamespaceLookup for Fixed {
        fn lookup(&self, _: &str) -> policy::NamespaceView {
            self.0.clone()
        }
    }

    fn answer_in(v: &Value, cluster_mode: Mode, view: policy::NamespaceView) -> Value {
        let lib = lib();
        let ctx = Context {
            library: &lib,
            cluster_mode,
            namespaces: &Fixed(view),
            backup_defaults: ClusterDefaults::default(),
        };
        let out = review_with(&serde_json::to_vec(v).expect("ser"), &ctx).expect("reviewed");
        serde_json::from_slice(&out.body).expect("json")
    }

    #[test]
    fn warn_mode_namespace_gets_warnings_and_audit_but_no_patch() {
        let resp = answer_in(
            &postgres_review(),
            Mode::Inject,
            policy::NamespaceView::Known(Some("warn".into())),
        );
        assert!(resp["response"]["patch"].is_null());
        assert_eq!(
            resp["response"]["auditAnnotations"]["would-inject"],
            "postgres/simple"
        );
        assert!(
            resp["response"]["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("would inject"))
        );
    }

    #[test]
    fn enforce_denies_an_unsupported_database_and_explains_the_fix() {
        let mut r = postgres_review();
        r["request"]["object"]["spec"]["containers"][0]["image"] = json!("mariadb:10.3");
        let resp = answer_in(&r, Mode::Enforce, policy::NamespaceView::Known(None));
        assert_eq!(resp["response"]["allowed"], false);
        assert_eq!(resp["response"]["status"]["code"], 403);
        let msg = resp["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            msg.contains("10.3") && msg.contains(policy::EXCEPTION_ANNOTATION),
            "{msg}"
        );
        // Unknown namespace policy: fail open, never deny, and say so.
        let resp = answer_in(
            &r,
            Mode::Enforce,
            policy::NamespaceView::Unknown("namespace cache not synced".into()),
        );
        assert_eq!(resp["response"]["allowed"], true);
        assert!(
            resp["response"]["warnings"]
                .to_string()
                .contains("failed open")
        );
    }

    /// The response's warnings, as kubectl prints them.
    fn warnings(resp: &Value) -> String {
        resp["response"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_container_security_context_and_tmpdir_reach_the_decision() {
        // Read by the lean pod parser: a redis container with a read-only root filesystem and
        // nothing at /tmp is warned about; one with TMPDIR set (among other env) is not.
        let mut r = postgres_review();
        let c = &mut r["request"]["object"]["spec"]["containers"][0];
        c["image"] = json!("valkey/valkey:8.0");
        c["securityContext"] = json!({"readOnlyRootFilesystem": true, "runAsUser": 999, "capabilities": {"drop": ["ALL"]}});
        let w = warnings(&answer(&r));
        assert!(w.contains("read-only root filesystem"), "{w}");
        r["request"]["object"]["spec"]["containers"][0]["env"] = json!([
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "TMPDIR", "value": "/data/tmp"}
        ]);
        let w = warnings(&answer(&r));
        assert!(!w.contains("read-only root filesystem"), "{w}");
        // The captured file-system-backup pod mounts an emptyDir at /tmp: no warning.
        let w = warnings(&answer(&fixture(
            "pod-create-generatename-ephemeral-fsb.json",
        )));
        assert!(w.contains("injected redis hooks"), "{w}");
        assert!(!w.contains("read-only root filesystem"), "{w}");
    }

    fn with_inject(value: &str) -> Value {
        let mut r = postgres_review();
        r["request"]["object"]["metadata"]["annotations"] =
            json!({"velero-hook-injector.io/inject": value});
        r
    }

    #[test]
    fn inject_annotation_reads_go_booleans() {
        for no in ["false", "False", "FALSE", "f", "F", "0"] {
            let resp = answer(&with_inject(no));
            assert!(resp["response"]["patch"].is_null(), "{no:?} injected");
            assert!(resp["response"]["warnings"].is_null(), "{no:?}: {resp}");
        }
        for yes in ["true", "True", "TRUE", "t", "T", "1"] {
            let r = with_inject(yes);
            let pod = patched(&r, &answer(&r));
            assert_eq!(
                pod["metadata"]["annotations"]["velero-hook-injector.io/injected"],
                "postgres/simple",
                "{yes:?}"
            );
        }
    }

    #[test]
    fn unrecognised_inject_value_injects_nothing_and_says_how_to_fix_it() {
        for odd in ["no", "yes", "off", "on", " false", "false ", "disabled", ""] {
            let resp = answer(&with_inject(odd));
            assert_eq!(resp["response"]["allowed"], true, "{odd:?}");
            assert!(
                resp["response"]["patch"].is_null(),
                "{odd:?} injected: {resp}"
            );
            let warnings = warnings(&resp);
            assert!(
                warnings.contains(&format!("{odd:?} is neither true nor false"))
                    && warnings.contains("no hooks are injected")
                    && warnings.contains("Fix: write \"false\" to opt the pod out")
                    && warnings.contains("FALSE"),
                "{odd:?}: {warnings}"
            );
        }
        // Enforce mode does not let a typo through silently either: the pod is denied with the
        // same explanation (a deliberate opt-out, "false", is admitted as before).
        let resp = answer_in(
            &with_inject("no"),
            Mode::Enforce,
            policy::NamespaceView::Known(None),
        );
        assert_eq!(resp["response"]["allowed"], false, "{resp}");
        let msg = resp["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(msg.contains("is neither true nor false"), "{msg}");
        let resp = answer_in(
            &with_inject("false"),
            Mode::Enforce,
            policy::NamespaceView::Known(None),
        );
        assert_eq!(resp["response"]["allowed"], true, "{resp}");
    }

    #[test]
    fn exclude_label_other_than_exactly_true_is_backed_up_and_warned_about() {
        let mut r = postgres_review();
        r["request"]["object"]["metadata"]["labels"] =
            json!({"velero.io/exclude-from-backup": "True"});
        let resp = answer(&r);
        let pod = patched(&r, &resp);
        // Velero backs the pod up (it honours only "true"), so its hooks are injected.
        assert_eq!(
            pod["metadata"]["annotations"]["velero-hook-injector.io/injected"],
            "postgres/simple"
        );
        let warnings = warnings(&resp);
        assert!(
            warnings.contains("is not exactly \"true\"")
                && warnings.contains("Fix: write \"true\""),
            "{warnings}"
        );
        r["request"]["object"]["metadata"]["labels"] =
            json!({"velero.io/exclude-from-backup": "true"});
        let resp = answer(&r);
        assert!(
            resp["response"]["patch"].is_null() && resp["response"]["warnings"].is_null(),
            "{resp}"
        );
    }
}

#[cfg(test)]
mod lean_tests {
    //! The lean parse of an admitted pod leads to the same decision as the full parse.
    use super::*;
    use serde_json::json;

    /// Every pod of the deployment table (tests/deployments/*.yaml), as the charts render them.
    fn deployment_pods() -> Vec<(String, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deployments");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("tests/deployments") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let mut v: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
            v.apply_merge().expect("merge");
            let cases = match v {
                serde_yaml::Value::Mapping(mut m) => m.remove("cases").expect("cases"),
                v => v,
            };
            let cases: Vec<Value> = serde_yaml::from_value(cases).expect("cases");
            for c in cases {
                let name = c["name"].as_str().unwrap_or_default().to_owned();
                out.push((name, c["pod"].clone()));
            }
        }
        out
    }

    /// Pods whose containers carry every field the lean parse reads or skips.
    fn shaped_pods() -> Vec<(String, Value)> {
        let container = json!({
            "name": "db", "image": "bitnami/postgresql:16.4.0",
            "command": ["/opt/bitnami/scripts/postgresql/entrypoint.sh"],
            "args": ["/opt/bitnami/scripts/postgresql/run.sh", "--port", "5433"],
            "env": [
                {"name": "POSTGRES_REPLICATION_MODE", "value": "slave"},
                {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "EMPTY"},
                {"name": "TMPDIR", "value": "/data/tmp"}
            ],
            "envFrom": [{"secretRef": {"name": "extra"}}, {"configMapRef": {"name": "cfg"}}],
            "ports": [{"containerPort": 5432}],
            "securityContext": {"readOnlyRootFilesystem": true, "runAsUser": 1001},
            "volumeMounts": [{"name": "data", "mountPath": "/bitnami/postgresql"}]
        });
        let pod = |c: Value| {
            json!({
                "metadata": {"name": "pg-0", "labels": {"app.kubernetes.io/name": "postgresql"}},
                "spec": {"containers": [c], "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}
            })
        };
        let mut no_env_from = container.clone();
        no_env_from["envFrom"] = Value::Null;
        vec![
            ("every container field".to_owned(), pod(container)),
            ("no envFrom".to_owned(), pod(no_env_from)),
        ]
    }

    #[test]
    fn the_lean_parse_decides_as_the_full_parse() {
        let library = Library::builtin().expect("builtin");
        let pods: Vec<(String, Value)> =
            deployment_pods().into_iter().chain(shaped_pods()).collect();
        assert!(pods.len() > 2);
        for (name, value) in pods {
            let full: Pod = serde_json::from_value(value.clone()).expect("full parse");
            let AdmittedPod(lean) = serde_json::from_value(value).expect("lean parse");
            // What the deployment assessment reads of each container is the same.
            let containers = |p: &Pod| p.spec.clone().unwrap_or_default().containers;
            for (f, l) in containers(&full).iter().zip(containers(&lean).iter()) {
                let env = |c| format!("{:?}", crate::pod::deployment::Env::of(c));
                assert_eq!(env(f), env(l), "{name}: env of {}", f.name);
                assert_eq!((&f.command, &f.args), (&l.command, &l.args), "{name}");
            }
            for fs in [false, true] {
                let defaults = ClusterDefaults {
                    default_volumes_to_fs_backup: fs,
                };
                let a = detect::decide_with(&full, &library, defaults);
                let b = detect::decide_with(&lean, &library, defaults);
                assert_eq!(
                    format!("{a:?}"),
                    format!("{b:?}"),
                    "{name} (fs default {fs})"
                );
                let ctx = Context {
                    library: &library,
                    cluster_mode: Mode::Inject,
                    namespaces: &NoNamespaces,
                    backup_defaults: defaults,
                };
                let (ma, mb) = (mutate(&full, "ns", &ctx), mutate(&lean, "ns", &ctx));
                assert_eq!(ma.json_patch(&full), mb.json_patch(&lean), "{name}");
            }
        }
    }
}
