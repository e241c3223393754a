//! Patching one live pod safely, and `audit --apply` over the pods an audit reported.
//!
//! A patch carries the resourceVersion the decision was made on ([`patch::merge_add_annotations`]),
//! so a pod changed in between is never overwritten: the API server answers 409, the pod is read
//! again and decided again (which, after another writer added the hooks, is "leave it"). At most
//! [`MAX_ATTEMPTS`] patches are sent per pod.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;

use crate::admission::patch;
use crate::admission::policy::{MODE_ANNOTATION, Mode, NamespaceLookup, NamespaceView};
use crate::cluster::audit::Report;
use crate::hooks::detect::Outcome;
use crate::hooks::rules::{self, rule};
use crate::hooks::template::Library;
use crate::keys;
use crate::pod::backup_method::ClusterDefaults;
use crate::reconcile::decide::{self, Action, Inputs, Leave, Namespaces, Plan};

/// fieldManager of every patch: `kubectl get pod -o yaml --show-managed-fields` names us.
pub const FIELD_MANAGER: &str = "velero-hook-injector";
/// Patches sent per pod before a run of conflicts is reported as a failure.
pub const MAX_ATTEMPTS: u32 = 3;

/// What happened to one pod.
#[derive(Clone, Debug)]
pub enum PodResult {
    /// The patch was applied (or, in a dry run, accepted by the API server).
    Patched {
        /// What was set.
        plan: Plan,
        /// The pod as the API server returned it after the patch.
        pod: Box<Pod>,
        /// 409s met on the way.
        conflicts: u32,
    },
    /// Nothing was sent, or a conflict was re-decided to nothing.
    Unchanged {
        /// The decision on the pod as last read.
        action: Action,
        /// 409s met on the way.
        conflicts: u32,
    },
    /// The pod was deleted before it could be patched (404).
    Gone,
    /// The API server refused or could not be reached.
    Failed {
        /// What went wrong and how to fix it.
        error: String,
        /// HTTP status, when the API server answered.
        code: Option<u16>,
    },
}

fn pod_label(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A kube error as one line with a fix for the common causes.
pub fn describe(error: &kube::Error, verb: &str, namespace: &str) -> (String, Option<u16>) {
    match error {
        kube::Error::Api(status) if status.code == 403 => (
            format!(
                "forbidden: {} (fix: grant {verb} on pods in namespace {namespace}; check with: kubectl auth can-i {verb} pods -n {namespace}; the chart grants it with reconciler.enabled=true)",
                status.message
            ),
            Some(403),
        ),
        kube::Error::Api(status) => (
            format!(
                "the API server answered {}: {}",
                status.code, status.message
            ),
            Some(status.code),
        ),
        other => {
            let mut text = other.to_string();
            let mut next = std::error::Error::source(other);
            while let Some(e) = next {
                let part = e.to_string();
                if !text.contains(&part) {
                    let _ = write!(text, ": {part}");
                }
                next = e.source();
            }
            (format!("the API server could not be reached: {text}"), None)
        }
    }
}

fn is_code(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == code)
}

/// Decides on `pod` and, if that says patch, patches it with a resourceVersion precondition; on
/// 409 reads the pod again and decides again, up to [`MAX_ATTEMPTS`] patches.
pub async fn patch_pod(
    api: &Api<Pod>,
    mut pod: Pod,
    decide: impl Fn(&Pod) -> Action,
    dry_run: bool,
) -> PodResult {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params = PatchParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let mut conflicts = 0;
    loop {
        let plan = match decide(&pod) {
            Action::Patch(plan) => plan,
            action => return PodResult::Unchanged { action, conflicts },
        };
        let Some(rv) = pod.metadata.resource_version.as_deref() else {
            return PodResult::Failed {
                error: "the pod has no resourceVersion, so it cannot be patched safely".into(),
                code: None,
            };
        };
        let body = patch::merge_add_annotations(&plan.set, rv);
        match api.patch(&name, &params, &Patch::Merge(&body)).await {
            Ok(patched) => {
                return PodResult::Patched {
                    plan,
                    pod: Box::new(patched),
                    conflicts,
                };
            }
            Err(e) if is_code(&e, 404) => return PodResult::Gone,
            Err(e) if is_code(&e, 409) => {
                conflicts += 1;
                if conflicts >= MAX_ATTEMPTS {
                    return PodResult::Failed {
                        error: format!(
                            "the pod changed {conflicts} times while being patched (409 Conflict each time); it is retried later"
                        ),
                        code: Some(409),
                    };
                }
                match api.get(&name).await {
                    Ok(fresh) => pod = fresh,
                    Err(e) if is_code(&e, 404) => return PodResult::Gone,
                    Err(e) => {
                        let (error, code) = describe(&e, "get", &namespace);
                        return PodResult::Failed { error, code };
                    }
                }
            }
            Err(e) => {
                let (error, code) = describe(&e, "patch", &namespace);
                return PodResult::Failed { error, code };
            }
        }
    }
}

/// Why a pod is left unchanged, in words.
pub fn explain(action: &Action) -> String {
    match action {
        Action::Patch(p) => format!("would set {} annotation(s)", p.set.len()),
        Action::Report(why) | Action::Wait(why) => why.clone(),
        Action::Leave(Leave::NotRunning) => {
            "finished or being deleted; Velero runs no hooks in it".to_owned()
        }
        Action::Leave(Leave::NotOptedIn) => format!(
            "its namespace has not opted in (label {}={}) or is excluded, so the webhook would not inject either",
            keys::NAMESPACE_OPT_IN,
            decide::OPT_IN_VALUE
        ),
        Action::Leave(Leave::Outcome(Outcome::AlreadyProcessed)) => format!(
            "it carries {} or {}: hooks were injected or deliberately skipped before (remove that annotation to have them added again)",
            keys::INJECTED,
            keys::SKIPPED
        ),
        Action::Leave(Leave::Outcome(o)) => {
            format!("the webhook would not inject at creation either ({o})")
        }
    }
}

/// A namespace as `audit --apply` needs it: opted in, and its mode annotation.
type NamespaceFacts = (bool, Option<String>);

/// Namespaces read once per `audit --apply` run (metadata only).
#[derive(Default)]
pub struct FetchedNamespaces {
    found: BTreeMap<String, Result<Option<NamespaceFacts>, String>>,
}

impl FetchedNamespaces {
    /// Reads each of `names` with a GET (needs `get` on namespaces).
    pub async fn fetch(client: &kube::Client, names: impl IntoIterator<Item = String>) -> Self {
        let api: Api<Namespace> = Api::all(client.clone());
        let mut found = BTreeMap::new();
        for name in names {
            let entry = match api.get_metadata_opt(&name).await {
                Ok(Some(ns)) => Ok(Some((
                    ns.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(keys::NAMESPACE_OPT_IN))
                        .is_some_and(|v| v == decide::OPT_IN_VALUE),
                    ns.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(MODE_ANNOTATION))
                        .cloned(),
                ))),
                Ok(None) => Ok(None),
                Err(e) => {
                    let (why, _) = describe(&e, "get", &name);
                    Err(format!(
                        "namespace {name:?} could not be read ({}); the audit needs get on namespaces to honour the opt-in label and mode",
                        why.replace(" on pods in namespace", " on namespaces, e.g. in namespace")
                    ))
                }
            };
            found.insert(name, entry);
        }
        Self { found }
    }
}

impl NamespaceLookup for FetchedNamespaces {
    fn lookup(&self, namespace: &str) -> NamespaceView {
        match self.found.get(namespace) {
            Some(Ok(Some((_, mode)))) => NamespaceView::Known(mode.clone()),
            Some(Err(why)) => NamespaceView::Unknown(why.clone()),
            _ => NamespaceView::Unknown(format!("namespace {namespace:?} not found")),
        }
    }
}

impl Namespaces for FetchedNamespaces {
    fn opted_in(&self, namespace: &str) -> Result<bool, String> {
        match self.found.get(namespace) {
            Some(Ok(Some((opted_in, _)))) => Ok(*opted_in),
            Some(Err(why)) => Err(why.clone()),
            _ => Err(format!("namespace {namespace:?} not found")),
        }
    }
}

/// How `audit --apply` runs.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Send every patch with dryRun=All: the API server validates and answers, nothing is stored.
    pub dry_run: bool,
    /// Also update `template-drift` pods to the current template.
    pub include_drift: bool,
    /// The server's `--mode`, for namespaces that set none.
    pub cluster_mode: Mode,
    /// Namespaces the webhook never sees (its own, kube-system, excludeNamespaces).
    pub excluded: Vec<String>,
    /// The server's `--default-volumes-to-fs-backup`.
    pub backup_defaults: ClusterDefaults,
}

/// One pod's line in the apply output.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyLine {
    /// `namespace/name`.
    pub pod: String,
    /// `patched`, `would-patch`, `unchanged`, `gone` or `failed`.
    pub result: &'static str,
    /// What was done or why not.
    pub detail: String,
    /// Keys set (or that would be set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Counts over an apply run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplySummary {
    /// Pods selected (missing-hooks, and template-drift with --include-drift).
    pub selected: usize,
    /// Patched, or accepted by a dry run.
    pub patched: usize,
    /// Left unchanged.
    pub unchanged: usize,
    /// Deleted in between.
    pub gone: usize,
    /// Failed patches.
    pub failed: usize,
    /// Pods of the report that still have findings afterwards.
    pub remaining: usize,
}

/// The result of `audit --apply`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyRun {
    /// True for --dry-run.
    pub dry_run: bool,
    /// One line per selected pod.
    pub pods: Vec<ApplyLine>,
    /// Counts.
    pub summary: ApplySummary,
}

impl ApplyRun {
    /// Lines for people, then a summary line.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let w = self.pods.iter().map(|l| l.pod.len()).max().unwrap_or(3);
        for l in &self.pods {
            let _ = writeln!(out, "{:<11}  {:<w$}  {}", l.result, l.pod, l.detail);
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\nApply{}: {} pod{} selected: {} {}, {} unchanged, {} gone, {} failed; {} pod{} still with findings.",
            if self.dry_run { " (dry run)" } else { "" },
            s.selected,
            if s.selected == 1 { "" } else { "s" },
            s.patched,
            if self.dry_run {
                "would be patched"
            } else {
                "patched"
            },
            s.unchanged,
            s.gone,
            s.failed,
            s.remaining,
            if s.remaining == 1 { "" } else { "s" },
        );
        out
    }
}

/// The pods of `report` that `--apply` acts on: `missing-hooks`, and `template-drift` when asked.
pub fn selected<'a>(pods: &'a [Pod], report: &Report, include_drift: bool) -> Vec<&'a Pod> {
    let wanted: BTreeSet<(Option<&str>, &str)> = report
        .pods
        .iter()
        .filter(|p| {
            p.findings.iter().any(|f| {
                f.rule_id == rule::MISSING_HOOKS
                    || (include_drift && f.rule_id == rule::TEMPLATE_DRIFT)
            })
        })
        .map(|p| (p.namespace.as_deref(), p.name.as_str()))
        .collect();
    pods.iter()
        .filter(|p| {
            wanted.contains(&(
                p.metadata.namespace.as_deref(),
                p.metadata.name.as_deref().unwrap_or_default(),
            ))
        })
        .collect()
}

/// `audit --apply`: patches the selected pods of `report` one at a time and says what happened
/// to each.
pub async fn apply_report(
    client: &kube::Client,
    pods: &[Pod],
    report: &Report,
    library: &Library,
    opts: &ApplyOptions,
) -> ApplyRun {
    let targets = selected(pods, report, opts.include_drift);
    let names: BTreeSet<String> = targets
        .iter()
        .filter_map(|p| p.metadata.namespace.clone())
        .collect();
    let namespaces = FetchedNamespaces::fetch(client, names).await;
    let inputs = Inputs {
        library,
        cluster_mode: opts.cluster_mode,
        namespaces: &namespaces,
        excluded: &opts.excluded,
        include_drift: opts.include_drift,
        backup_defaults: opts.backup_defaults,
    };
    let mut lines = Vec::new();
    let mut summary = ApplySummary {
        selected: targets.len(),
        ..ApplySummary::default()
    };
    let mut fixed = BTreeSet::new();
    for pod in targets {
        let label = pod_label(pod);
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let result = patch_pod(
            &api,
            pod.clone(),
            |p| decide::decide(p, &inputs),
            opts.dry_run,
        )
        .await;
        let line = match result {
            PodResult::Patched {
                plan,
                pod: after,
                conflicts,
            } => {
                summary.patched += 1;
                if !opts.dry_run
                    && rules::check_pod_with(&after, library, opts.backup_defaults).is_empty()
                {
                    fixed.insert(label.clone());
                }
                let verb = match (opts.dry_run, plan.drift) {
                    (true, false) => "would add",
                    (true, true) => "would update",
                    (false, false) => "added",
                    (false, true) => "updated",
                };
                let mut detail = format!(
                    "{verb} the {} hooks ({} annotation{})",
                    plan.target,
                    plan.set.len(),
                    if plan.set.len() == 1 { "" } else { "s" }
                );
                if opts.dry_run {
                    detail.push_str("; the API server accepted the dry run");
                }
                if conflicts > 0 {
                    let _ = write!(detail, "; re-read after {conflicts} conflict(s)");
                }
                ApplyLine {
                    pod: label,
                    result: if opts.dry_run {
                        "would-patch"
                    } else {
                        "patched"
                    },
                    detail,
                    keys: plan.set.into_keys().collect(),
                }
            }
            PodResult::Unchanged { action, conflicts } => {
                summary.unchanged += 1;
                let mut detail = explain(&action);
                if conflicts > 0 {
                    detail = format!(
                        "changed by someone else while being patched (409), re-read: {detail}"
                    );
                }
                ApplyLine {
                    pod: label,
                    result: "unchanged",
                    detail,
                    keys: Vec::new(),
                }
            }
            PodResult::Gone => {
                summary.gone += 1;
                fixed.insert(label.clone());
                ApplyLine {
                    pod: label,
                    result: "gone",
                    detail: "deleted before it could be patched".to_owned(),
                    keys: Vec::new(),
                }
            }
            PodResult::Failed { error, .. } => {
                summary.failed += 1;
                ApplyLine {
                    pod: label,
                    result: "failed",
                    detail: error,
                    keys: Vec::new(),
                }
            }
        };
        lines.push(line);
    }
    summary.remaining = report
        .pods
        .iter()
        .filter(|p| {
            let label = format!("{}/{}", p.namespace.as_deref().unwrap_or_default(), p.name);
            !fixed.contains(&label)
        })
        .count();
    ApplyRun {
        dry_run: opts.dry_run,
        pods: lines,
        summary,
    }
}
