//! Velero Schedules (`velero.io/v1`): the fields that decide which pods a scheduled backup
//! takes and which of its `spec.hooks` run in them, read the way Velero reads them.
//!
//! Pure core: [`Schedule`] and friends are serde structs of only what is needed (unknown fields
//! are ignored), [`ScheduleView::selects`] and [`ScheduleView::hooks_for`] mirror Velero's pod selection and
//! hook selectors, and [`findings`] turns them into the `spec-hooks-shadowed` and
//! `dump-data-volume-snapshotted` rule findings. The thin edge is [`list_schedules`].
//!
//! What Velero does, from its source (`internal/hook/item_hook_handler.go` `HandleHooks` and
//! `ResourceHookSelector.applicableTo`, `pkg/backup/backup.go` `getResourceHook`,
//! `pkg/util/collections/includes_excludes.go`, `internal/volumehelper/volume_policy_helper.go`
//! `ShouldPerformSnapshot`): a hook resource applies to a pod when the pod's namespace is not
//! excluded and is included (empty list or `*`: every namespace; entries are globs), its
//! resources include pods, and its label selector matches. For one phase, an annotation hook
//! on the pod makes Velero skip every spec hook of that phase for that pod, without a log line.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::hooks::detect::{self, Outcome};
use crate::hooks::rules::{Finding, Severity, rule};
use crate::hooks::template::Library;
use crate::hooks::velero;
use crate::keys;
use crate::pod::backup_method::{BACKUP_VOLUMES, BACKUP_VOLUMES_EXCLUDES, ClusterDefaults};

/// A Velero Schedule, as much of it as the rules read.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Schedule {
    /// Name and namespace.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the Schedule backs up, and when.
    #[serde(default)]
    pub spec: ScheduleSpec,
}

/// `Schedule.spec`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// The Backup each run creates.
    #[serde(default)]
    pub template: BackupSpec,
    /// A paused Schedule creates no Backups.
    #[serde(default)]
    pub paused: bool,
}

/// `Backup.spec` (a Schedule's `spec.template`), the fields that select pods and volumes.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Namespace globs to back up (empty or `*`: all).
    #[serde(default)]
    pub included_namespaces: Vec<String>,
    /// Namespace globs never backed up.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
    /// Resources to back up (old style; empty or `*`: all).
    #[serde(default)]
    pub included_resources: Vec<String>,
    /// Resources never backed up (old style).
    #[serde(default)]
    pub excluded_resources: Vec<String>,
    /// Namespaced resources to back up (new style).
    #[serde(default)]
    pub included_namespace_scoped_resources: Vec<String>,
    /// Namespaced resources never backed up (new style).
    #[serde(default)]
    pub excluded_namespace_scoped_resources: Vec<String>,
    /// Only objects with these labels.
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    /// Objects matching any of these (when `labelSelector` is unset).
    #[serde(default)]
    pub or_label_selectors: Vec<LabelSelector>,
    /// `false`: no volume snapshots at all.
    #[serde(default)]
    pub snapshot_volumes: Option<bool>,
    /// File-system backup for every pod volume unless excluded; unset: the server's default.
    #[serde(default)]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// A ConfigMap of volume policies (not read here).
    #[serde(default)]
    pub resource_policy: Option<serde_json::Value>,
    /// Backup hooks run in the selected pods.
    #[serde(default)]
    pub hooks: BackupHooks,
}

/// `Backup.spec.hooks`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct BackupHooks {
    /// Hook sets, each with its own selector.
    #[serde(default)]
    pub resources: Vec<BackupResourceHookSpec>,
}

/// One `spec.hooks.resources[]` entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupResourceHookSpec {
    /// Its name (Velero logs it).
    #[serde(default)]
    pub name: String,
    /// Namespace globs (empty or `*`: all).
    #[serde(default)]
    pub included_namespaces: Vec<String>,
    /// Namespace globs excluded.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
    /// Resources (empty or `*`: all).
    #[serde(default)]
    pub included_resources: Vec<String>,
    /// Resources excluded.
    #[serde(default)]
    pub excluded_resources: Vec<String>,
    /// Pods with these labels.
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    /// Hooks run before the pod is backed up.
    #[serde(default)]
    pub pre: Vec<BackupResourceHook>,
    /// Hooks run after.
    #[serde(default)]
    pub post: Vec<BackupResourceHook>,
}

/// One pre or post entry; Velero runs only those with `exec`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct BackupResourceHook {
    /// The exec hook, if any.
    #[serde(default)]
    pub exec: Option<serde_json::Value>,
}

impl kube::Resource for Schedule {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Schedule".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "velero.io".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "schedules".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Why Schedules could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The API refused or failed the list.
    #[error("listing Velero Schedules in namespace {namespace}: {error}{hint}")]
    List {
        /// Velero's namespace.
        namespace: String,
        /// The API error.
        error: kube::Error,
        /// A fix for common causes.
        hint: String,
    },
}

/// Lists the Schedules in Velero's `namespace`. `Ok(None)` when the API has no Schedule
/// resource (Velero's CRDs are not installed): nothing to compare with.
pub async fn list_schedules(
    client: &kube::Client,
    namespace: &str,
) -> Result<Option<Vec<Schedule>>, ScheduleError> {
    let api: Api<Schedule> = Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => {
            let hint = match &error {
                kube::Error::Api(status) if status.code == 403 => format!(
                    " (fix: allow list on schedules.velero.io in namespace {namespace}: kubectl auth can-i list schedules.velero.io -n {namespace}; or point --velero-namespace at Velero's namespace)"
                ),
                _ => String::new(),
            };
            Err(ScheduleError::List {
                namespace: namespace.to_owned(),
                error,
                hint,
            })
        }
    }
}

/// Velero's glob match (gobwas/glob: `*`, `?`, `[...]`, `[!...]`, `{a,b}`, `\` escapes); a
/// pattern that does not compile matches nothing, as in Velero.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars();
    let mut braces = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '\\' => match chars.next() {
                Some(n) => re.push_str(&regex::escape(&n.to_string())),
                None => return false,
            },
            '[' => {
                re.push('[');
                let mut first = true;
                let mut closed = false;
                for n in chars.by_ref() {
                    match n {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '!' if first => re.push('^'),
                        '\\' | '[' | '^' | '&' | '~' => {
                            re.push('\\');
                            re.push(n);
                        }
                        _ => re.push(n),
                    }
                    first = false;
                }
                if !closed {
                    return false;
                }
                re.push(']');
            }
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            ',' if braces > 0 => re.push('|'),
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            _ => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if braces > 0 {
        return false;
    }
    re.push('$');
    Regex::new(&re).is_ok_and(|r| r.is_match(text))
}

/// Velero's `IncludesExcludes.ShouldInclude`: excludes win; an empty include list or `*`
/// includes everything.
fn includes(included: &[String], excluded: &[String], name: &str) -> bool {
    if excluded.iter().any(|p| glob_matches(p, name)) {
        return false;
    }
    included.is_empty() || included.iter().any(|p| p == "*" || glob_matches(p, name))
}

/// Whether a resource list entry names pods (Velero resolves names through discovery: the
/// plural, the singular and the short name all resolve to `pods`).
fn names_pods(entry: &str) -> bool {
    matches!(
        entry.to_ascii_lowercase().as_str(),
        "*" | "pods" | "pod" | "po" | "pods." | "pods.core"
    )
}

fn includes_pods(included: &[String], excluded: &[String]) -> bool {
    !excluded.iter().any(|e| names_pods(e))
        && (included.is_empty() || included.iter().any(|e| names_pods(e)))
}

/// `metav1.LabelSelectorAsSelector(...).Matches`: every matchLabels pair and every expression
/// must hold; an empty selector matches everything; an unknown operator matches nothing (Velero
/// rejects the selector).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

/// A backup phase of exec hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Before the pod is backed up.
    Pre,
    /// After.
    Post,
}

impl Phase {
    fn word(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }

    /// The annotation that carries this phase's hook (pre: also the legacy key).
    fn command_key(self) -> String {
        match self {
            Phase::Pre => format!("{}command", velero::PRE_BACKUP),
            Phase::Post => format!("{}command", velero::POST_BACKUP),
        }
    }
}

/// A Schedule as it applies to pods, with its name for messages.
pub struct ScheduleView<'a> {
    schedule: &'a Schedule,
}

impl<'a> ScheduleView<'a> {
    /// Wraps `schedule`.
    pub fn new(schedule: &'a Schedule) -> Self {
        Self { schedule }
    }

    /// `namespace/name`.
    pub fn name(&self) -> String {
        format!(
            "{}/{}",
            self.schedule.metadata.namespace.as_deref().unwrap_or(""),
            self.schedule.metadata.name.as_deref().unwrap_or("")
        )
    }

    /// Whether a Backup of this Schedule takes the pod at all (namespaces, resources, label
    /// selectors, Velero's exclude label). A paused Schedule takes nothing.
    pub fn selects(&self, pod: &Pod) -> bool {
        let spec = &self.schedule.spec;
        if spec.paused {
            return false;
        }
        let t = &spec.template;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        if labels
            .get(velero::EXCLUDE_LABEL)
            .is_some_and(|v| v == "true")
        {
            return false;
        }
        if !includes(&t.included_namespaces, &t.excluded_namespaces, ns) {
            return false;
        }
        let new_style = !t.included_namespace_scoped_resources.is_empty()
            || !t.excluded_namespace_scoped_resources.is_empty();
        let resources = if new_style {
            includes_pods(
                &t.included_namespace_scoped_resources,
                &t.excluded_namespace_scoped_resources,
            )
        } else {
            includes_pods(&t.included_resources, &t.excluded_resources)
        };
        if !resources {
            return false;
        }
        match (&t.label_selector, t.or_label_selectors.as_slice()) {
            (Some(s), _) => selector_matches(s, labels),
            (None, []) => true,
            (None, any) => any.iter().any(|s| selector_matches(s, labels)),
        }
    }

    /// The spec hook resources (by name) with exec hooks of `phase` that Velero would run in
    /// `pod`, and how many hooks they hold: nothing when the Schedule does not take the pod.
    pub fn hooks_for(&self, pod: &Pod, phase: Phase) -> (Vec<String>, usize) {
        if !self.selects(pod) {
            return (Vec::new(), 0);
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let mut names = Vec::new();
        let mut count = 0;
        for r in &self.schedule.spec.template.hooks.resources {
            let applies = includes(&r.included_namespaces, &r.excluded_namespaces, ns)
                && includes_pods(&r.included_resources, &r.excluded_resources)
                && r.label_selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, labels));
            let hooks = match phase {
                Phase::Pre => &r.pre,
                Phase::Post => &r.post,
            };
            let n = hooks.iter().filter(|h| h.exec.is_some()).count();
            if applies && n > 0 {
                names.push(r.name.clone());
                count += n;
            }
        }
        (names, count)
    }
}

/// The backup phases for which the pod has an annotation hook Velero would run instead of
/// spec hooks (pre: also the legacy unphased key).
fn annotated_phases(annotations: &BTreeMap<String, String>) -> Vec<Phase> {
    let set = |k: String| annotations.get(&k).is_some_and(|v| !v.is_empty());
    let mut out = Vec::new();
    if set(Phase::Pre.command_key()) || set(format!("{}command", velero::LEGACY_BACKUP)) {
        out.push(Phase::Pre);
    }
    if set(Phase::Post.command_key()) {
        out.push(Phase::Post);
    }
    out
}

/// The pod's annotation-hook phases: those it has, plus those the webhook would add to it
/// (a pod created before the webhook, which `audit --apply` or the reconciler would patch).
/// `true` in the second place when any of them comes from the webhook.
fn hook_phases(pod: &Pod, library: &Library, defaults: ClusterDefaults) -> Vec<(Phase, bool)> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let injected = annotations.contains_key(keys::INJECTED);
    let mut out: Vec<(Phase, bool)> = annotated_phases(annotations)
        .into_iter()
        .map(|p| (p, injected))
        .collect();
    if out.len() < 2 {
        let decision = detect::decide_with(pod, library, defaults);
        if decision.outcome == Outcome::Injected {
            for p in annotated_phases(&decision.add) {
                if !out.iter().any(|(q, _)| *q == p) {
                    out.push((p, true));
                }
            }
        }
    }
    out.sort();
    out
}

/// The pod's PVC volumes mounted by the container the webhook's hooks run in that a Backup with
/// `fs_default` (`defaultVolumesToFsBackup`) leaves to the snapshot path, when the pod is in a
/// file-system-backup world (the default is on, or it opts volumes in); empty otherwise.
fn data_pvcs_left_to_snapshots(pod: &Pod, fs_default: bool) -> Vec<(String, String)> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let Some((_, container)) = annotations
        .get(keys::INJECTED)
        .and_then(|i| i.split_once('/'))
    else {
        return Vec::new();
    };
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let listed = |key: &str| -> Vec<&str> {
        annotations
            .get(key)
            .map(|v| v.split(',').collect())
            .unwrap_or_default()
    };
    let opted_in = listed(BACKUP_VOLUMES);
    if !fs_default && opted_in.iter().all(|v| v.is_empty()) {
        return Vec::new(); // snapshots are the way this pod is meant to be copied
    }
    let excluded = listed(BACKUP_VOLUMES_EXCLUDES);
    let file_copied = |name: &str| {
        if fs_default {
            !excluded.contains(&name)
        } else {
            opted_in.contains(&name)
        }
    };
    let mounted: Vec<&str> = spec
        .containers
        .iter()
        .filter(|c| c.name == container)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.name.as_str())
        .collect();
    spec.volumes
        .iter()
        .flatten()
        .filter(|v| mounted.contains(&v.name.as_str()) && !file_copied(&v.name))
        .filter_map(|v| {
            let claim = v.persistent_volume_claim.as_ref()?;
            Some((v.name.clone(), claim.claim_name.clone()))
        })
        .collect()
}

fn finding(severity: Severity, key: String, rule_id: &'static str, message: String) -> Finding {
    Finding {
        severity,
        key,
        rule_id,
        message,
    }
}

/// Findings for one pod against the cluster's Schedules (pure): `spec-hooks-shadowed` per
/// Schedule and phase whose spec hooks the pod's annotation hooks (its own or the webhook's,
/// present or about to be added) silence, and `dump-data-volume-snapshotted` per Schedule that
/// would snapshot a data PVC of a file-system-backup pod the webhook hooked.
pub fn findings(
    pod: &Pod,
    schedules: &[Schedule],
    library: &Library,
    defaults: ClusterDefaults,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if schedules.is_empty() {
        return out;
    }
    let phases = hook_phases(pod, library, defaults);
    for schedule in schedules {
        let view = ScheduleView::new(schedule);
        if !view.selects(pod) {
            continue;
        }
        for (phase, webhook) in &phases {
            let (names, count) = view.hooks_for(pod, *phase);
            if count == 0 {
                continue;
            }
            let whose = if *webhook {
                "the webhook's"
            } else {
                "the pod's own"
            };
            let fix = if *webhook {
                format!(
                    "opt the pod out of injection (annotation {}: \"false\" on its pod template, then restart the workload) so that the Schedule's hooks run, or move those hooks into a custom template (--templates) so that one annotation hook does both",
                    keys::INJECT
                )
            } else {
                "move the Schedule's hooks into the pod's annotation hook (one command may run several steps through /bin/sh -c), or remove the annotation so that the Schedule's hooks run".to_owned()
            };
            out.push(finding(
                Severity::Error,
                phase.command_key(),
                rule::SPEC_HOOKS_SHADOWED,
                format!(
                    "Schedule {} has {count} {} hook{} for this pod in spec.hooks.resources {}, but Velero runs only {whose} {} annotation hook and silently skips every spec hook of that phase for a pod that has one. Fix: {fix}.",
                    view.name(),
                    phase.word(),
                    if count == 1 { "" } else { "s" },
                    names
                        .iter()
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    phase.word(),
                ),
            ));
        }
        let t = &schedule.spec.template;
        if t.snapshot_volumes == Some(false) || t.resource_policy.is_some() {
            // No snapshots at all; or volume policies decide, which live in a ConfigMap not read here.
            continue;
        }
        let fs_default = t
            .default_volumes_to_fs_backup
            .unwrap_or(defaults.default_volumes_to_fs_backup);
        let pvcs = data_pvcs_left_to_snapshots(pod, fs_default);
        if pvcs.is_empty() {
            continue;
        }
        let listed: Vec<String> = pvcs
            .iter()
            .map(|(v, c)| format!("{v:?} (claim {c})"))
            .collect();
        out.push(finding(
            Severity::Warning,
            keys::INJECTED.to_owned(),
            rule::DUMP_DATA_VOLUME_SNAPSHOTTED,
            format!(
                "Schedule {} copies this pod's data with file-system backup but leaves data volume {} out of it, and it does not set snapshotVolumes: false, so Velero snapshots that PVC as well wherever it can. Where Velero's CSI feature is on and the PVC's CSI driver has no VolumeSnapshotClass (NFS, SMB and other file-system drivers have none), every backup of this Schedule ends PartiallyFailed with \"failed to get VolumeSnapshotClass\"; elsewhere the data is stored twice and a restore brings the snapshot back instead of an empty volume (the VolumeSnapshotClasses are not read here). Fix: set spec.template.snapshotVolumes: false on the Schedule when it needs no snapshots, or give it a volume policy (spec.template.resourcePolicy) with action skip for these PVCs.",
                view.name(),
                listed.join(", ")
            ),
        ));
    }
    out
}

/// How many of `pods` have Schedule hooks that their annotation hooks silence (the
/// reconciler's gauge). Pods not taken by any Schedule, or without hooks, do not count.
pub fn shadowed_pods<'a>(pods: impl IntoIterator<Item = &'a Pod>, schedules: &[Schedule]) -> usize {
    if schedules.is_empty() {
        return 0;
    }
    pods.into_iter()
        .filter(|pod| {
            let empty = BTreeMap::new();
            let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
            let phases = annotated_phases(annotations);
            schedules.iter().any(|s| {
                let view = ScheduleView::new(s);
                phases.iter().any(|p| view.hooks_for(pod, *p).1 > 0)
            })
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_gobwas() {
        assert!(glob_matches("prod-*", "prod-db"));
        assert!(!glob_matches("prod-*", "staging"));
        assert!(glob_matches("db-?", "db-1"));
        assert!(!glob_matches("db-?", "db-10"));
        assert!(glob_matches("{shop,crm}", "crm"));
        assert!(glob_matches("team-[ab]", "team-a"));
        assert!(!glob_matches("team-[!ab]", "team-a"));
        assert!(glob_matches("a.b", "a.b"));
        assert!(!glob_matches("a.b", "axb"), "a dot is literal");
        assert!(
            !glob_matches("[oops", "[oops"),
            "a broken pattern matches nothing"
        );
    }

    #[test]
    fn excludes_win_and_empty_includes_everything() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(includes(&[], &[], "any"));
        assert!(includes(&s(&["*"]), &s(&["kube-*"]), "shop"));
        assert!(!includes(&s(&["*"]), &s(&["kube-*"]), "kube-system"));
        assert!(!includes(&s(&["shop"]), &[], "crm"));
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        let labels = BTreeMap::from([("app".to_owned(), "pg".to_owned())]);
        let sel = |v: serde_json::Value| -> LabelSelector {
            serde_json::from_value(v).expect("selector")
        };
        assert!(selector_matches(&sel(serde_json::json!({})), &labels));
        assert!(selector_matches(
            &sel(serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]})),
            &labels
        ));
        assert!(!selector_matches(
            &sel(
                serde_json::json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})
            ),
            &labels
        ));
        assert!(selector_matches(
            &sel(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]})
            ),
            &labels
        ));
        assert!(!selector_matches(
            &sel(
                serde_json::json!({"matchLabels": {"app": "pg"}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["redis"]}]})
            ),
            &labels
        ));
        assert!(
            !selector_matches(
                &sel(
                    serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]})
                ),
                &labels
            ),
            "an operator Velero rejects"
        );
    }

    #[test]
    fn resource_lists_name_pods_by_any_spelling() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(includes_pods(&[], &[]));
        assert!(includes_pods(&s(&["Pods"]), &[]));
        assert!(!includes_pods(&s(&["deployments"]), &[]));
        assert!(!includes_pods(&[], &s(&["po"])));
    }
}
