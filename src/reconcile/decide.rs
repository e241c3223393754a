//! What to do with one live pod: patch it, report it, wait, or leave it. Pure.
//!
//! The decision is admission's ([`admission::mutate`]), made on the pod as it is now; only the
//! mode's meaning for a pod that already runs differs: `warn` reports instead of changing, and
//! `enforce` cannot deny a running pod, so what admission would deny is reported.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::admission::policy::{Mode, NamespaceLookup};
use crate::admission::{self, Context};
use crate::hooks::detect::Outcome;
use crate::hooks::rules;
use crate::hooks::template::Library;
use crate::hooks::velero;
use crate::keys;
use crate::pod::backup_method::ClusterDefaults;

/// Value of the namespace label [`keys::NAMESPACE_OPT_IN`] that opts a namespace in.
pub const OPT_IN_VALUE: &str = "enabled";

/// What is known about namespaces besides their mode: whether they opted in.
pub trait Namespaces: NamespaceLookup {
    /// Whether `namespace` carries the opt-in label; `Err(why)` when that cannot be known now.
    fn opted_in(&self, namespace: &str) -> Result<bool, String>;
}

impl Namespaces for crate::cluster::namespaces::NamespaceCache {
    fn opted_in(&self, namespace: &str) -> Result<bool, String> {
        self.has_label(namespace, keys::NAMESPACE_OPT_IN, OPT_IN_VALUE)
            .ok_or_else(|| format!("namespace {namespace:?} is not in the namespace cache yet"))
    }
}

/// Everything a decision reads besides the pod.
pub struct Inputs<'a> {
    /// Templates in force (`--templates` honoured).
    pub library: &'a Library,
    /// Mode for namespaces that do not set one.
    pub cluster_mode: Mode,
    /// Namespace policy and opt-in.
    pub namespaces: &'a dyn Namespaces,
    /// Namespaces never touched, as the webhook's namespaceSelector excludes them.
    pub excluded: &'a [String],
    /// Also bring `template-drift` pods up to the current template (`--include-drift`).
    pub include_drift: bool,
    /// The cluster's Backup defaults (`--default-volumes-to-fs-backup`), as admission has them.
    pub backup_defaults: ClusterDefaults,
}

/// Why a pod is left as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Admission would not change it either (its outcome: no database, opted out, …).
    Outcome(Outcome),
    /// Being deleted, or finished (Velero runs no hooks in Succeeded/Failed pods).
    NotRunning,
    /// The namespace has not opted in, or is excluded.
    NotOptedIn,
}

/// A patch to send: the annotations admission would add (or, for drift, set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Keys and values to set.
    pub set: BTreeMap<String, String>,
    /// `template/container` the hooks come from.
    pub target: String,
    /// True for a template-drift update (existing values replaced), false for a missing-hooks add.
    pub drift: bool,
}

/// The decision for one live pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Patch the pod.
    Patch(Plan),
    /// The pod should carry hooks but the mode forbids changing it (warn), or admission would
    /// have denied it (enforce): say so, change nothing.
    Report(String),
    /// Not decidable yet (namespace not in the cache, policy unreadable): try again later.
    Wait(String),
    /// Nothing to do.
    Leave(Leave),
}

impl Action {
    /// True for pods that should carry hooks and do not (the `unhooked_pods` gauge).
    pub fn is_unhooked(&self) -> bool {
        matches!(self, Action::Patch(p) if !p.drift) || matches!(self, Action::Report(_))
    }
}

fn running(pod: &Pod) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    pod.metadata.deletion_timestamp.is_none() && !finished
}

/// Decides what to do with live `pod`.
pub fn decide(pod: &Pod, inputs: &Inputs<'_>) -> Action {
    if !running(pod) {
        return Action::Leave(Leave::NotRunning);
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    if inputs.excluded.iter().any(|n| n == namespace) {
        return Action::Leave(Leave::NotOptedIn);
    }
    match inputs.namespaces.opted_in(namespace) {
        Err(why) => return Action::Wait(why),
        Ok(false) => return Action::Leave(Leave::NotOptedIn),
        Ok(true) => {}
    }
    let ctx = Context {
        library: inputs.library,
        cluster_mode: inputs.cluster_mode,
        namespaces: inputs.namespaces,
        backup_defaults: inputs.backup_defaults,
    };
    let m = admission::mutate(pod, namespace, &ctx);
    if m.degraded {
        // Admission fails open because a pod start cannot wait; a running pod can, and guessing
        // the mode could patch a namespace that asked for warn.
        return Action::Wait(format!(
            "the mode of namespace {namespace:?} cannot be read: {}",
            m.verdict.warnings.last().cloned().unwrap_or_default()
        ));
    }
    let target = format!(
        "{}/{}",
        m.template.as_deref().unwrap_or_default(),
        m.container.as_deref().unwrap_or_default()
    );
    if let Some(denial) = &m.verdict.denial {
        return Action::Report(format!(
            "enforce mode would deny this pod at creation, but a running pod cannot be denied: {denial}"
        ));
    }
    if m.verdict.dump_volume.is_some() {
        // Dump mode also adds a volume and its mount, which a running pod cannot get: only
        // admission can, when the pod is created again.
        return Action::Report(format!(
            "would add the {target} hooks in dump mode (file-system backup), which needs the {} volume that only a new pod can get; nothing changed. Restart the pod (its workload, e.g. kubectl rollout restart) so the webhook injects them at creation",
            crate::pod::backup_method::DUMP_VOLUME
        ));
    }
    match (m.outcome, m.mode) {
        (Outcome::Injected, Mode::Warn) => Action::Report(format!(
            "warn mode: would add the {target} hooks; nothing changed (set the namespace annotation velero-hook-injector.io/mode to inject to apply them)"
        )),
        (Outcome::Injected, _) if !m.add().is_empty() => Action::Patch(Plan {
            set: m.add().clone(),
            target,
            drift: false,
        }),
        (Outcome::AlreadyProcessed, Mode::Inject | Mode::Enforce) if inputs.include_drift => {
            drift(pod, inputs.library)
        }
        (outcome, _) => Action::Leave(Leave::Outcome(outcome)),
    }
}

/// The update that brings hooks injected from an older template to the current one: every key
/// of the template's current annotations, in each hook family (backup, restore) the pod already
/// carries, whose value differs or is missing. Keys are never removed.
fn drift(pod: &Pod, library: &Library) -> Action {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let Some(finding) = rules::template_drift(annotations, library) else {
        return Action::Leave(Leave::Outcome(Outcome::AlreadyProcessed));
    };
    let template = annotations
        .get(keys::INJECTED)
        .and_then(|v| v.split_once('/'))
        .and_then(|(t, c)| library.get(t).map(|t| (t, c)));
    let Some((template, container)) = template else {
        return Action::Report(format!(
            "template drift cannot be updated in place: {}",
            finding.message
        ));
    };
    let has_backup = annotations.keys().any(|k| velero::is_backup_hook_key(k));
    let has_restore = annotations.keys().any(|k| velero::is_restore_hook_key(k));
    let set: BTreeMap<String, String> = template
        .annotations(container)
        .into_iter()
        .filter(|(k, _)| {
            (has_backup && velero::is_backup_hook_key(k))
                || (has_restore && velero::is_restore_hook_key(k))
        })
        .filter(|(k, v)| annotations.get(k) != Some(v))
        .collect();
    if set.is_empty() {
        return Action::Leave(Leave::Outcome(Outcome::AlreadyProcessed));
    }
    Action::Patch(Plan {
        set,
        target: format!("{}/{container}", template.name),
        drift: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::policy::NamespaceView;
    use serde_json::{Value, json};

    /// Namespaces with fixed opt-in and mode.
    struct Fixed {
        opted_in: Option<bool>,
        view: NamespaceView,
    }
    impl NamespaceLookup for Fixed {
        fn lookup(&self, _: &str) -> NamespaceView {
            self.view.clone()
        }
    }
    impl Namespaces for Fixed {
        fn opted_in(&self, _: &str) -> Result<bool, String> {
            self.opted_in.ok_or_else(|| "not cached".to_owned())
        }
    }

    fn lib() -> Library {
        Library::builtin().expect("builtin")
    }

    fn pod_json(image: &str, annotations: Value, labels: Value) -> Value {
        json!({
            "metadata": {"name": "db-0", "namespace": "shop", "resourceVersion": "7",
                         "annotations": annotations, "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u"}]},
            "spec": {"containers": [{"name": "db", "image": image,
                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]},
            "status": {"phase": "Running"}
        })
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn decide_in(p: &Pod, opted_in: Option<bool>, view: NamespaceView, mode: Mode) -> Action {
        let lib = lib();
        let ns = Fixed { opted_in, view };
        decide(
            p,
            &Inputs {
                library: &lib,
                cluster_mode: mode,
                namespaces: &ns,
                excluded: &[],
                include_drift: false,
                backup_defaults: ClusterDefaults::default(),
            },
        )
    }

    fn known() -> NamespaceView {
        NamespaceView::Known(None)
    }

    #[test]
    fn a_pod_that_would_get_dump_mode_is_reported_not_patched() {
        let p = pod(pod_json(
            "postgres:16",
            json!({"velero-hook-injector.io/backup-method": "fs-backup"}),
            json!({}),
        ));
        match decide_in(&p, Some(true), known(), Mode::Inject) {
            Action::Report(m) => assert!(m.contains("dump mode"), "{m}"),
            other => panic!("dump mode cannot be patched onto a running pod: {other:?}"),
        }
    }

    #[test]
    fn the_cluster_default_to_file_system_backup_is_honoured() {
        // An unhooked pod with no Velero lists: with snapshots by default it gets the CHECKPOINT
        // hooks; when Backups default to file-system backup those would protect nothing, so it
        // is reported for a restart (dump mode), as admission would decide.
        let p = pod(pod_json("postgres:16", json!({}), json!({})));
        let lib = lib();
        let ns = Fixed {
            opted_in: Some(true),
            view: known(),
        };
        let inputs = |fsb| Inputs {
            library: &lib,
            cluster_mode: Mode::Inject,
            namespaces: &ns,
            excluded: &[],
            include_drift: false,
            backup_defaults: ClusterDefaults {
                default_volumes_to_fs_backup: fsb,
            },
        };
        assert!(matches!(decide(&p, &inputs(false)), Action::Patch(_)));
        match decide(&p, &inputs(true)) {
            Action::Report(m) => assert!(m.contains("dump mode"), "{m}"),
            other => panic!("expected a restart report: {other:?}"),
        }
    }

    #[test]
    fn an_unhooked_database_pod_gets_what_admission_adds() {
        let p = pod(pod_json("postgres:16", json!({}), json!({})));
        let Action::Patch(plan) = decide_in(&p, Some(true), known(), Mode::Inject) else {
            panic!("expected a patch");
        };
        let lib = lib();
        let mut want = lib.get("postgres").expect("pg").annotations("db");
        want.insert(keys::INJECTED.into(), "postgres/db".into());
        assert_eq!(plan.set, want);
        assert_eq!(plan.target, "postgres/db");
    }

    #[test]
    fn every_rule_of_how_it_decides_is_followed() {
        let cases = [
            (
                json!({"velero-hook-injector.io/inject": "false"}),
                json!({}),
                "postgres:16",
                Outcome::OptedOut,
            ),
            (
                json!({"pre.hook.backup.velero.io/command": "[\"true\"]", "post.hook.restore.velero.io/command": "[\"true\"]"}),
                json!({}),
                "postgres:16",
                Outcome::UserHooks,
            ),
            (
                json!({}),
                json!({"velero.io/restore-name": "r1"}),
                "postgres:16",
                Outcome::Restored,
            ),
            (
                json!({}),
                json!({"cnpg.io/cluster": "c"}),
                "postgres:16",
                Outcome::OperatorManaged,
            ),
            (json!({}), json!({}), "nginx:1.27", Outcome::NoDatabase),
        ];
        for (annotations, labels, image, want) in cases {
            let p = pod(pod_json(image, annotations, labels));
            assert_eq!(
                decide_in(&p, Some(true), known(), Mode::Inject),
                Action::Leave(Leave::Outcome(want)),
                "{want:?}"
            );
        }
        let mut job = pod_json("postgres:16", json!({}), json!({}));
        job["metadata"]["ownerReferences"][0]["kind"] = json!("Job");
        assert_eq!(
            decide_in(&pod(job), Some(true), known(), Mode::Inject),
            Action::Leave(Leave::Outcome(Outcome::JobPod))
        );
        let mut no_volume = pod_json("postgres:16", json!({}), json!({}));
        no_volume["spec"]["volumes"][0] = json!({"name": "data", "emptyDir": {}});
        assert_eq!(
            decide_in(&pod(no_volume), Some(true), known(), Mode::Inject),
            Action::Leave(Leave::Outcome(Outcome::NoDataVolume))
        );
    }

    #[test]
    fn namespace_opt_in_and_exclusions_are_honoured() {
        let p = pod(pod_json("postgres:16", json!({}), json!({})));
        assert_eq!(
            decide_in(&p, Some(false), known(), Mode::Inject),
            Action::Leave(Leave::NotOptedIn)
        );
        assert!(matches!(
            decide_in(&p, None, known(), Mode::Inject),
            Action::Wait(_)
        ));
        let lib = lib();
        let ns = Fixed {
            opted_in: Some(true),
            view: known(),
        };
        let excluded = ["shop".to_owned()];
        let inputs = Inputs {
            library: &lib,
            cluster_mode: Mode::Inject,
            namespaces: &ns,
            excluded: &excluded,
            include_drift: false,
            backup_defaults: ClusterDefaults::default(),
        };
        assert_eq!(decide(&p, &inputs), Action::Leave(Leave::NotOptedIn));
    }

    #[test]
    fn an_unreadable_namespace_policy_waits_instead_of_failing_open() {
        let p = pod(pod_json("postgres:16", json!({}), json!({})));
        let a = decide_in(
            &p,
            Some(true),
            NamespaceView::Unknown("cache not synced".into()),
            Mode::Inject,
        );
        assert!(
            matches!(&a, Action::Wait(r) if r.contains("cache not synced")),
            "{a:?}"
        );
    }

    #[test]
    fn warn_reports_and_enforce_reports_what_it_would_deny() {
        let p = pod(pod_json("postgres:16", json!({}), json!({})));
        let a = decide_in(
            &p,
            Some(true),
            NamespaceView::Known(Some("warn".into())),
            Mode::Inject,
        );
        assert!(
            matches!(&a, Action::Report(r) if r.contains("would add the postgres/db")),
            "{a:?}"
        );
        assert!(a.is_unhooked());
        // Enforce injects what it can...
        assert!(matches!(
            decide_in(&p, Some(true), known(), Mode::Enforce),
            Action::Patch(_)
        ));
        // ...and cannot deny a running pod it would have refused.
        let old = pod(pod_json("mariadb:10.3", json!({}), json!({})));
        let a = decide_in(&old, Some(true), known(), Mode::Enforce);
        assert!(
            matches!(&a, Action::Report(r) if r.contains("cannot be denied")),
            "{a:?}"
        );
    }

    #[test]
    fn finished_and_terminating_pods_are_left() {
        let mut done = pod_json("postgres:16", json!({}), json!({}));
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(
            decide_in(&pod(done), Some(true), known(), Mode::Inject),
            Action::Leave(Leave::NotRunning)
        );
        let mut going = pod_json("postgres:16", json!({}), json!({}));
        going["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
        assert_eq!(
            decide_in(&pod(going), Some(true), known(), Mode::Inject),
            Action::Leave(Leave::NotRunning)
        );
    }

    #[test]
    fn drift_is_updated_only_when_asked_and_never_removes_keys() {
        let lib = lib();
        let mut a = lib.get("postgres").expect("pg").annotations("db");
        a.insert(keys::INJECTED.into(), "postgres/db".into());
        a.insert(
            "pre.hook.backup.velero.io/command".into(),
            "[\"/bin/sh\",\"-c\",\"old\"]".into(),
        );
        a.insert("team".into(), "a".into());
        let p = pod(pod_json(
            "postgres:16",
            serde_json::to_value(&a).expect("map"),
            json!({}),
        ));
        assert_eq!(
            decide_in(&p, Some(true), known(), Mode::Inject),
            Action::Leave(Leave::Outcome(Outcome::AlreadyProcessed))
        );
        let ns = Fixed {
            opted_in: Some(true),
            view: known(),
        };
        let inputs = Inputs {
            library: &lib,
            cluster_mode: Mode::Inject,
            namespaces: &ns,
            excluded: &[],
            include_drift: true,
            backup_defaults: ClusterDefaults::default(),
        };
        let Action::Patch(plan) = decide(&p, &inputs) else {
            panic!("expected a drift patch");
        };
        let current = lib.get("postgres").expect("pg").annotations("db");
        assert_eq!(
            plan.set,
            BTreeMap::from([(
                "pre.hook.backup.velero.io/command".to_owned(),
                current["pre.hook.backup.velero.io/command"].clone()
            )])
        );
        assert!(plan.drift && !Action::Patch(plan).is_unhooked());
    }

    /// Issue 12, point 4: a pod patched by the reconciler and then admitted again (a re-created
    /// pod of the same StatefulSet, or the patched pod itself) ends identical to one only ever
    /// admitted.
    #[test]
    fn reconciled_then_admitted_equals_only_admitted() {
        use base64::Engine;
        let lib = lib();
        let admit = |obj: &Value| -> Value {
            let review = json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "shop", "operation": "CREATE", "name": "db-0",
                    "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
                    "object": obj, "dryRun": false}
            });
            let out = admission::review(&serde_json::to_vec(&review).expect("ser"), &lib)
                .expect("reviewed");
            let resp: Value = serde_json::from_slice(&out.body).expect("json");
            let mut obj = obj.clone();
            if let Some(p) = resp["response"]["patch"].as_str() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(p)
                    .expect("b64");
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
                json_patch::patch(&mut obj, &patch).expect("applies");
            }
            obj
        };
        for annotations in [
            json!(null),
            json!({"team": "a"}),
            json!({"post.hook.restore.velero.io/command": "[\"true\"]"}),
        ] {
            let template = pod_json("postgres:16", annotations, json!({}));
            let only_admitted = admit(&template);
            // The webhook was down: the pod ran unhooked, then the reconciler patched it.
            let Action::Patch(plan) =
                decide_in(&pod(template.clone()), Some(true), known(), Mode::Inject)
            else {
                panic!("expected a patch");
            };
            let mut reconciled = template.clone();
            json_patch::merge(
                &mut reconciled,
                &crate::admission::patch::merge_add_annotations(&plan.set, "7"),
            );
            assert_eq!(reconciled, only_admitted, "reconciled pod differs");
            // Admitted again (reinvocation, or the same object re-created): unchanged.
            assert_eq!(admit(&reconciled), only_admitted);
            // The StatefulSet re-creates the pod from its template: admission alone, same result.
            assert_eq!(admit(&template), only_admitted);
            // And the reconciler leaves the re-created, admitted pod alone.
            assert_eq!(
                decide_in(&pod(only_admitted), Some(true), known(), Mode::Inject),
                Action::Leave(Leave::Outcome(Outcome::AlreadyProcessed))
            );
        }
    }
}
