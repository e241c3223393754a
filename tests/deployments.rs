//! Pod shapes of real deployments, table-driven: every case in `tests/deployments/*.yaml` is a
//! pod as a chart or an operator renders it, run through the real admission decision
//! (`admission::mutate`, `detect::decide_with`) and the real rules of `render --check` and
//! `audit` (`rules::check_pod_with` on the pod as admission leaves it).
//!
//! # Schema
//!
//! Each file (one per engine family, plus `operators.yaml`) is a YAML list of cases, or a
//! mapping whose `cases:` holds that list and whose other keys (e.g. `shapes:`) hold anchored
//! fragments. Anchors, aliases and `<<` merge keys may be used to share a pod's common parts
//! (a merge is shallow: a merged `spec` replaces the whole `spec`). Unknown keys are errors,
//! so a misspelt expectation cannot pass silently.
//!
//! ```yaml
//! - name: bitnami-postgresql-read-replica    # unique across all files
//!   source: "bitnami/postgresql 16.x architecture=replication, read replica"  # chart/operator and variant
//!   defaults: {defaultVolumesToFsBackup: true}  # optional: the webhook's --default-volumes-to-fs-backup
//!   mode: enforce                   # optional: inject (default), warn or enforce
//!   pod:                            # the Pod as the chart renders it: metadata (labels,
//!     metadata: {...}               # annotations) and spec (containers with env, args,
//!     spec: {...}                   # volumeMounts; volumes with their types)
//!   expect:                         # every key is optional; an absent key is not checked
//!     outcome: injected             # the outcome's metrics label (injected, operator_managed, ...)
//!     template: postgres            # the template chosen (null: none)
//!     container: postgresql         # the container chosen (null: none)
//!     hooks: [pre, post, restore]   # exactly the phases whose command admission adds:
//!                                   #   pre = pre.hook.backup, post = post.hook.backup,
//!                                   #   restore = post.hook.restore; [] for none
//!     method: snapshot              # the backup method decided: snapshot or fs-backup
//!     dump: false                   # dump mode (a dump volume added and the dump hooks)
//!     role: replica                 # the role assessed: primary, replica or member
//!     warnings: ["read replica"]    # substrings each found in some admission warning
//!     no_warnings: ["cannot"]       # substrings found in no admission warning
//!     findings: [hooks-cannot-work] # rule ids `render --check` reports on the admitted pod
//!     no_findings: [missing-hooks]  # rule ids it must not report
//!     denied: "no credentials"      # enforce mode: a substring of the denial; false: admitted
//!     skipped: "operator-managed: MOCO"  # the velero-hook-injector.io/skipped marker (substring)
//! ```
//!
//! `VHI_CASE=<substring>` runs only the cases whose name contains it. All failures are reported
//! together, each with its file and case name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use velero_hook_injector::admission::policy::{Mode, NoNamespaces};
use velero_hook_injector::admission::{self, Context};
use velero_hook_injector::hooks::detect;
use velero_hook_injector::hooks::rules;
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::hooks::velero;
use velero_hook_injector::keys;
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::pod::deployment::Role;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    mode: Option<String>,
    pod: serde_json::Value,
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Defaults {
    #[serde(default)]
    default_volumes_to_fs_backup: bool,
}

/// A key that may be absent (not checked), null (none) or a value.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default, deserialize_with = "present")]
    template: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    container: Option<Option<String>>,
    #[serde(default)]
    hooks: Option<Vec<String>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    dump: Option<bool>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    no_warnings: Vec<String>,
    #[serde(default)]
    findings: Vec<String>,
    #[serde(default)]
    no_findings: Vec<String>,
    #[serde(default)]
    denied: Option<Denied>,
    #[serde(default)]
    skipped: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Denied {
    No(bool),
    With(String),
}

/// `key: null` is `Some(None)`; an absent key stays `None` through `#[serde(default)]`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deployments");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

fn load(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
    let cases = match value {
        serde_yaml::Value::Mapping(mut m) => m
            .remove("cases")
            .unwrap_or_else(|| panic!("{}: a mapping needs `cases:`", path.display())),
        v => v,
    };
    serde_yaml::from_value(cases).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Primary => "primary",
        Role::Replica { .. } => "replica",
        Role::Member { .. } => "member",
    }
}

fn phases(add: &BTreeMap<String, String>) -> Vec<String> {
    [
        ("pre", format!("{}command", velero::PRE_BACKUP)),
        ("post", format!("{}command", velero::POST_BACKUP)),
        ("restore", format!("{}command", velero::POST_RESTORE)),
    ]
    .into_iter()
    .filter(|(_, k)| add.contains_key(k))
    .map(|(p, _)| p.to_owned())
    .collect()
}

/// Runs one case; returns what differs from its expectations.
fn run(case: &Case, library: &Library) -> Vec<String> {
    let mut errs = Vec::new();
    let pod: Pod = match serde_json::from_value(case.pod.clone()) {
        Ok(p) => p,
        Err(e) => return vec![format!("pod does not parse as a Pod: {e}")],
    };
    let defaults = ClusterDefaults {
        default_volumes_to_fs_backup: case.defaults.default_volumes_to_fs_backup,
    };
    let mode = match case.mode.as_deref().unwrap_or("inject") {
        "inject" => Mode::Inject,
        "warn" => Mode::Warn,
        "enforce" => Mode::Enforce,
        other => return vec![format!("mode {other:?} is not inject, warn or enforce")],
    };
    let decision = detect::decide_with(&pod, library, defaults);
    let ctx = Context {
        library,
        cluster_mode: mode,
        namespaces: &NoNamespaces,
        backup_defaults: defaults,
    };
    let m = admission::mutate(&pod, "default", &ctx);
    let warnings = &m.verdict.warnings;
    let e = &case.expect;

    // The pod as admission leaves it, which `render --check` and `audit` then check.
    let mut admitted = case.pod.clone();
    if let Some(patch) = m.json_patch(&pod) {
        if let Err(err) = json_patch::patch(&mut admitted, &patch) {
            errs.push(format!("the admission patch does not apply: {err}"));
        }
    }
    let findings = match serde_json::from_value::<Pod>(admitted) {
        Ok(p) => rules::check_pod_with(&p, library, defaults),
        Err(err) => {
            errs.push(format!("the admitted pod does not parse: {err}"));
            Vec::new()
        }
    };
    let rule_ids: Vec<&str> = findings.iter().map(|f| f.rule_id).collect();

    if let Some(want) = &e.outcome {
        if m.outcome.as_str() != want {
            errs.push(format!("outcome {} (want {want})", m.outcome));
        }
    }
    if let Some(want) = &e.template {
        if &m.template != want {
            errs.push(format!("template {:?} (want {want:?})", m.template));
        }
    }
    if let Some(want) = &e.container {
        if &m.container != want {
            errs.push(format!("container {:?} (want {want:?})", m.container));
        }
    }
    if let Some(want) = &e.hooks {
        let mut want = want.clone();
        want.sort();
        let mut got = phases(m.add());
        got.sort();
        if got != want {
            errs.push(format!("hooks {got:?} (want {want:?})"));
        }
    }
    if let Some(want) = &e.method {
        let got = decision.backup.as_ref().map(|b| b.method.as_str());
        if got != Some(want.as_str()) {
            errs.push(format!("method {got:?} (want {want})"));
        }
    }
    if let Some(want) = e.dump {
        let got = m.verdict.dump_volume.is_some();
        if got != want {
            errs.push(format!(
                "dump mode {got} (want {want}); refused because: {:?}",
                decision.dump_refused
            ));
        }
    }
    if let Some(want) = &e.role {
        let got = decision.deployment.as_ref().map(|d| role_name(d.role));
        if got != Some(want.as_str()) {
            errs.push(format!("role {got:?} (want {want})"));
        }
    }
    for w in &e.warnings {
        if !warnings.iter().any(|g| g.contains(w.as_str())) {
            errs.push(format!("no warning contains {w:?}"));
        }
    }
    for w in &e.no_warnings {
        if let Some(g) = warnings.iter().find(|g| g.contains(w.as_str())) {
            errs.push(format!("a warning contains {w:?}: {g}"));
        }
    }
    for r in &e.findings {
        if !rule_ids.contains(&r.as_str()) {
            errs.push(format!("no {r} finding"));
        }
    }
    for r in &e.no_findings {
        if let Some(f) = findings.iter().find(|f| f.rule_id == r) {
            errs.push(format!("unwanted finding {f}"));
        }
    }
    match (&e.denied, &m.verdict.denial) {
        (Some(Denied::No(false)), Some(d)) => errs.push(format!("denied: {d}")),
        (Some(Denied::No(true)), None) => errs.push("admitted (want denied)".to_owned()),
        (Some(Denied::With(s)), Some(d)) if !d.contains(s.as_str()) => {
            errs.push(format!("the denial lacks {s:?}: {d}"))
        }
        (Some(Denied::With(s)), None) => errs.push(format!("admitted (want denied with {s:?})")),
        _ => {}
    }
    if let Some(want) = &e.skipped {
        match m.add().get(keys::SKIPPED) {
            Some(got) if got.contains(want.as_str()) => {}
            got => errs.push(format!("skipped marker {got:?} (want {want:?})")),
        }
    }
    if !errs.is_empty() {
        errs.push(format!("  warnings: {warnings:#?}"));
        errs.push(format!("  findings: {rule_ids:?}"));
    }
    errs
}

#[test]
fn every_deployment_case_gets_what_it_expects() {
    let library = Library::builtin().expect("builtin templates");
    let only = std::env::var("VHI_CASE").ok();
    let mut names = BTreeMap::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in files() {
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
        let file = file.unwrap_or_default();
        let cases = load(&path);
        assert!(!cases.is_empty(), "{file}: no cases");
        for case in &cases {
            if let Some(previous) = names.insert(case.name.clone(), file.clone()) {
                failures.push(format!(
                    "{file}: {}: name also used in {previous}",
                    case.name
                ));
            }
            assert!(
                !case.source.trim().is_empty(),
                "{file}: {}: empty source",
                case.name
            );
            if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
                continue;
            }
            ran += 1;
            let errs = run(case, &library);
            if !errs.is_empty() {
                failures.push(format!(
                    "{file}: {} ({}):\n  {}",
                    case.name,
                    case.source,
                    errs.join("\n  ")
                ));
            }
        }
    }
    assert!(ran > 0, "no case ran (VHI_CASE={only:?})");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{ran} deployment cases passed");
}
