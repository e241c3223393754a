//! Velero hook annotation rules: what Velero would silently mishandle, and how to fix it.
//!
//! Pure: no I/O. [`check`] looks at one pod's annotations and spec (and, when known, the
//! database engine and version of the container the hooks run in) and returns findings. The
//! facts behind each rule come from Velero's source; the case numbers in the comments below (B2,
//! E5, I2…) are those of the developers' Velero hooks notes. Messages never quote them: a user
//! has the rule id, the rule table in docs/policy.md, and where one exists the upstream Velero
//! issue.
//! [`check_pod`] adds the two checks that need the
//! template library: database pods without hooks, and injected hooks that differ from the
//! template as it is now.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use regex::Regex;
use serde::Serialize;

use crate::hooks::detect::{self, Assess, Outcome};
use crate::hooks::template::Library;
use crate::hooks::velero::{self, MAX_HOOK_TIMEOUT};
use crate::keys;
use crate::pod::backup_method::{self, ClusterDefaults, Method};
use crate::pod::deployment::{self, Blocked, Subject};
use crate::pod::image::ImageRef;
use crate::pod::version::{self, Version};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Velero will not do what the annotation intends: the hook fails, is ignored, hangs the
    /// restore or crashes it.
    Error,
    /// Risky, or found by a heuristic: worth a look, may be intended.
    Warning,
}

impl Severity {
    /// Lowercase name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with a pod's hook annotations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The annotation the finding is about (for a missing key, the key that should be set).
    pub key: String,
    /// Stable identifier of the rule, one of the constants in [`rule`].
    #[serde(rename = "rule")]
    pub rule_id: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {}: {}",
            self.severity, self.rule_id, self.key, self.message
        )
    }
}

/// Rule identifiers (stable: CI filters and documentation refer to them).
pub mod rule {
    /// A plain-string command with whitespace: Velero runs it as one program name (B2).
    pub const COMMAND_PLAIN_STRING: &str = "command-plain-string";
    /// A value starting with `[` that is not a JSON array of strings (B4, B6).
    pub const COMMAND_NOT_JSON_ARRAY: &str = "command-not-json-array";
    /// Whitespace before the command (B5).
    pub const COMMAND_LEADING_WHITESPACE: &str = "command-leading-whitespace";
    /// `[]` or an empty program name (B7).
    pub const COMMAND_EMPTY: &str = "command-empty";
    /// A JSON array whose program (first element) contains whitespace.
    pub const COMMAND_PROGRAM_WITH_SPACES: &str = "command-program-with-spaces";
    /// Shell syntax (`|`, `&&`, `>`, `$VAR`) in an argv that does not start a shell.
    pub const COMMAND_SHELL_SYNTAX: &str = "command-shell-syntax-without-shell";
    /// A duration that is only a number (B9, E4).
    pub const DURATION_NO_UNIT: &str = "duration-no-unit";
    /// A duration Go cannot parse (B10).
    pub const DURATION_UNPARSEABLE: &str = "duration-unparseable";
    /// A zero or negative duration (B11, B12, E15).
    pub const DURATION_NOT_POSITIVE: &str = "duration-not-positive";
    /// A duration above Velero's 4h cap (B13).
    pub const DURATION_TOO_LONG: &str = "duration-too-long";
    /// `on-error` in the wrong case, e.g. `fail` (B14).
    pub const ON_ERROR_CASE: &str = "on-error-case";
    /// `on-error` that is neither `Fail` nor `Continue` (B15).
    pub const ON_ERROR_UNKNOWN: &str = "on-error-unknown";
    /// A restore exec hook without `wait-timeout` (E6).
    pub const RESTORE_WAIT_TIMEOUT_MISSING: &str = "restore-wait-timeout-missing";
    /// `post.hook.restore.velero.io/timeout`, which Velero never reads (E5).
    pub const RESTORE_TIMEOUT_KEY: &str = "restore-timeout-wrong-key";
    /// `wait-for-ready` that Go's `strconv.ParseBool` rejects (E3).
    pub const WAIT_FOR_READY_INVALID: &str = "wait-for-ready-invalid";
    /// An init restore hook image without a command: Velero panics (I2, I3).
    pub const INIT_COMMAND_MISSING: &str = "init-command-missing";
    /// An init restore hook container name Kubernetes will reject (I6).
    pub const INIT_CONTAINER_NAME_INVALID: &str = "init-container-name-invalid";
    /// `…/container` naming a container that is not in `spec.containers` (B18, B19, E7).
    pub const CONTAINER_NOT_FOUND: &str = "container-not-found";
    /// No `…/container`: the hook runs in the first container (B17, E8).
    pub const CONTAINER_MISSING: &str = "container-missing";
    /// `pg_start_backup`/`pg_stop_backup`, removed in PostgreSQL 15.
    pub const PG_EXCLUSIVE_BACKUP: &str = "pg-exclusive-backup-removed";
    /// A session-scoped lock taken in a hook and released when the hook exits (heuristic).
    pub const SESSION_LOCK: &str = "session-lock-ends-with-hook";
    /// A key in a Velero hook family that Velero does not read (B27, E12, I8).
    pub const UNKNOWN_KEY: &str = "unknown-key";
    /// A hook key whose case differs from the one Velero reads.
    pub const KEY_CASE: &str = "key-case";
    /// Hook keys that have no effect because the phase has no command (B8, I4).
    pub const KEYS_WITHOUT_COMMAND: &str = "keys-without-command";
    /// Legacy `hook.backup.velero.io/*` keys shadowed by `pre.…` or vice versa (B21, B22).
    pub const LEGACY_KEYS_IGNORED: &str = "legacy-keys-ignored";
    /// A database pod without Velero backup hooks.
    pub const MISSING_HOOKS: &str = "missing-hooks";
    /// Injected hooks that differ from the current template.
    pub const TEMPLATE_DRIFT: &str = "template-drift";
    /// The webhook's snapshot hooks on a pod whose data Velero copies file by file.
    pub const FS_BACKUP_SNAPSHOT_HOOKS: &str = "fs-backup-snapshot-hooks";
    /// A velero-hook-injector control annotation, or Velero's exclude label, with a value that
    /// does not mean what it seems to (e.g. `inject: "no"`, `exclude-from-backup: "True"`).
    pub const CONTROL_VALUE_INVALID: &str = "control-value-invalid";
    /// A hook that cannot work in the pod as it is deployed (no credentials in its env, TLS
    /// without client material, a role that rules dump mode out): it fails on every run, or the
    /// webhook left it out.
    pub const HOOKS_CANNOT_WORK: &str = "hooks-cannot-work";
    /// A hook that may fail in the pod as it is deployed (its credentials may come from an
    /// `envFrom` the spec does not show, …).
    pub const HOOKS_MAY_FAIL: &str = "hooks-may-fail";
    /// A restore exec hook whose exec-timeout is longer than Velero's bound on the restore
    /// finalizer's wait for hooks (`--resource-timeout`, 10m by default, velero-io/velero#10280).
    pub const RESTORE_HOOK_EXCEEDS_VELERO_WAIT: &str = "restore-hook-exceeds-velero-wait";
    /// A Schedule whose spec hooks select the pod, for a phase in which the pod has (or the
    /// webhook would give it) an annotation hook: Velero skips the spec hooks (audit only).
    pub const SPEC_HOOKS_SHADOWED: &str = "spec-hooks-shadowed";
    /// A Schedule that would snapshot the data PVC of a file-system-backup pod the webhook
    /// hooked (no `snapshotVolumes: false`, no volume policy) (audit only).
    pub const DUMP_DATA_VOLUME_SNAPSHOTTED: &str = "dump-data-volume-snapshotted";

    /// Every rule, in the order of the rule table in docs/policy.md.
    pub const ALL: &[&str] = &[
        COMMAND_PLAIN_STRING,
        COMMAND_NOT_JSON_ARRAY,
        COMMAND_LEADING_WHITESPACE,
        COMMAND_EMPTY,
        COMMAND_PROGRAM_WITH_SPACES,
        COMMAND_SHELL_SYNTAX,
        DURATION_NO_UNIT,
        DURATION_UNPARSEABLE,
        DURATION_NOT_POSITIVE,
        DURATION_TOO_LONG,
        ON_ERROR_CASE,
        ON_ERROR_UNKNOWN,
        CONTAINER_NOT_FOUND,
        CONTAINER_MISSING,
        RESTORE_WAIT_TIMEOUT_MISSING,
        RESTORE_TIMEOUT_KEY,
        WAIT_FOR_READY_INVALID,
        INIT_COMMAND_MISSING,
        INIT_CONTAINER_NAME_INVALID,
        PG_EXCLUSIVE_BACKUP,
        SESSION_LOCK,
        UNKNOWN_KEY,
        KEY_CASE,
        KEYS_WITHOUT_COMMAND,
        LEGACY_KEYS_IGNORED,
        MISSING_HOOKS,
        TEMPLATE_DRIFT,
        FS_BACKUP_SNAPSHOT_HOOKS,
        CONTROL_VALUE_INVALID,
        HOOKS_CANNOT_WORK,
        HOOKS_MAY_FAIL,
        RESTORE_HOOK_EXCEEDS_VELERO_WAIT,
        SPEC_HOOKS_SHADOWED,
        DUMP_DATA_VOLUME_SNAPSHOTTED,
    ];
}

/// The database in the container the hooks run in, as far as the image tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    /// Template engine name, e.g. `postgresql`, `mysql`.
    pub engine: String,
    /// Version read from the image tag; `None` for `latest` and the like.
    pub version: Option<Version>,
}

/// Which kind of duration a key holds; decides what Velero falls back to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DurationKind {
    /// Backup `timeout` or restore `exec-timeout`: falls back to 30s.
    Exec,
    /// Restore `wait-timeout`: falls back to waiting forever.
    Wait,
}

/// An exec hook phase and the keys Velero reads for it.
struct ExecPhase {
    prefix: &'static str,
    what: &'static str,
    durations: &'static [(&'static str, DurationKind)],
    restore: bool,
}

const BACKUP_DURATIONS: &[(&str, DurationKind)] = &[("timeout", DurationKind::Exec)];
const RESTORE_DURATIONS: &[(&str, DurationKind)] = &[
    ("exec-timeout", DurationKind::Exec),
    ("wait-timeout", DurationKind::Wait),
];

const PRE: ExecPhase = ExecPhase {
    prefix: velero::PRE_BACKUP,
    what: "pre-backup hook",
    durations: BACKUP_DURATIONS,
    restore: false,
};
const POST: ExecPhase = ExecPhase {
    prefix: velero::POST_BACKUP,
    what: "post-backup hook",
    durations: BACKUP_DURATIONS,
    restore: false,
};
const LEGACY: ExecPhase = ExecPhase {
    prefix: velero::LEGACY_BACKUP,
    what: "legacy (pre-backup) hook",
    durations: BACKUP_DURATIONS,
    restore: false,
};
const RESTORE: ExecPhase = ExecPhase {
    prefix: velero::POST_RESTORE,
    what: "restore exec hook",
    durations: RESTORE_DURATIONS,
    restore: true,
};

const BACKUP_SUFFIXES: &[&str] = &["command", "container", "on-error", "timeout"];
const RESTORE_SUFFIXES: &[&str] = &[
    "command",
    "container",
    "on-error",
    "exec-timeout",
    "wait-timeout",
    "wait-for-ready",
];
const INIT_SUFFIXES: &[&str] = &["container-image", "container-name", "command"];

/// Every hook key Velero reads.
fn known_keys() -> Vec<String> {
    let mut out = Vec::new();
    for (prefix, suffixes) in [
        (velero::PRE_BACKUP, BACKUP_SUFFIXES),
        (velero::POST_BACKUP, BACKUP_SUFFIXES),
        (velero::LEGACY_BACKUP, BACKUP_SUFFIXES),
        (velero::POST_RESTORE, RESTORE_SUFFIXES),
        (velero::INIT_RESTORE, INIT_SUFFIXES),
    ] {
        out.extend(suffixes.iter().map(|s| format!("{prefix}{s}")));
    }
    out
}

type Annotations = BTreeMap<String, String>;

fn finding(
    severity: Severity,
    key: impl Into<String>,
    rule_id: &'static str,
    message: String,
) -> Finding {
    Finding {
        severity,
        key: key.into(),
        rule_id,
        message,
    }
}

/// Checks one pod's hook annotations against Velero's rules.
///
/// `engine` is the database of the container the hooks target, when known; it only matters for
/// the PostgreSQL version rule (unknown version: a warning instead of an error).
pub fn check(annotations: &Annotations, spec: &PodSpec, engine: Option<&Engine>) -> Vec<Finding> {
    let mut out = Vec::new();
    let get = |k: String| annotations.get(&k).map(String::as_str);
    let pre_active = get(format!("{}command", velero::PRE_BACKUP)).is_some_and(|v| !v.is_empty());
    let legacy_active = !pre_active
        && get(format!("{}command", velero::LEGACY_BACKUP)).is_some_and(|v| !v.is_empty());

    check_keys(annotations, &mut out);
    for phase in [&PRE, &POST, &LEGACY, &RESTORE] {
        let active = annotations
            .get(&format!("{}command", phase.prefix))
            .is_some_and(|v| !v.is_empty());
        if active {
            check_exec_phase(phase, annotations, spec, engine, &mut out);
        }
    }
    check_inactive_phases(annotations, pre_active, legacy_active, &mut out);
    check_init(annotations, spec, &mut out);
    out
}

/// Unknown, misspelt and wrong-case keys in the Velero hook families.
fn check_keys(annotations: &Annotations, out: &mut Vec<Finding>) {
    let known = known_keys();
    for key in annotations.keys() {
        if known.iter().any(|k| k == key) {
            continue;
        }
        let lower = key.to_ascii_lowercase();
        if let Some(right) = known.iter().find(|k| **k == lower) {
            out.push(finding(
                Severity::Error,
                key,
                rule::KEY_CASE,
                format!(
                    "Velero matches hook keys case-sensitively and ignores {key}. Fix: rename it to {right}."
                ),
            ));
            continue;
        }
        if key == &format!("{}timeout", velero::POST_RESTORE) {
            out.push(finding(
                Severity::Error,
                key,
                rule::RESTORE_TIMEOUT_KEY,
                format!(
                    "Velero never reads {key}: the restore hook runs with the default 30s exec timeout (velero-io/velero#6764). Fix: rename it to {}exec-timeout (and set {}wait-timeout for the wait until the container is up).",
                    velero::POST_RESTORE,
                    velero::POST_RESTORE
                ),
            ));
            continue;
        }
        if key == &format!("{}timeout", velero::INIT_RESTORE) {
            out.push(finding(
                Severity::Warning,
                key,
                rule::UNKNOWN_KEY,
                format!(
                    "Velero declares {key} but never reads it: it has no effect. Fix: remove it; an init container runs until its command exits."
                ),
            ));
            continue;
        }
        if key.starts_with("pre.hook.restore.velero.io/") {
            out.push(finding(
                Severity::Error,
                key,
                rule::UNKNOWN_KEY,
                format!(
                    "Velero has no pre-restore exec hooks and ignores {key}. Fix: use {}container-image/command for work before the pod starts, or {}command for work once it runs.",
                    velero::INIT_RESTORE,
                    velero::POST_RESTORE
                ),
            ));
            continue;
        }
        let family = [
            velero::PRE_BACKUP,
            velero::POST_BACKUP,
            velero::LEGACY_BACKUP,
            velero::POST_RESTORE,
            velero::INIT_RESTORE,
        ]
        .into_iter()
        .find(|p| key.starts_with(p));
        if let Some(prefix) = family {
            let suffix = &key[prefix.len()..];
            let message = if suffix.contains('.') {
                format!(
                    "Velero does not read named multi-hook keys such as {key}: no hook runs. Velero runs one annotation hook per phase per pod (named hooks are requested in velero-io/velero#3572). Fix: use {prefix}{} and chain the steps in one [\"/bin/sh\",\"-c\",\"step1 && step2\"], or use Backup/Restore spec hooks.",
                    suffix.rsplit('.').next().unwrap_or(suffix)
                )
            } else {
                let fix = match closest(key, &known) {
                    Some(k) => format!("rename it to {k}"),
                    None => format!(
                        "use the keys Velero reads: {}",
                        known
                            .iter()
                            .filter(|k| k.starts_with(prefix))
                            .map(|k| &k[prefix.len()..])
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                format!("Velero does not read {key}; it has no effect. Fix: {fix}.")
            };
            out.push(finding(Severity::Error, key, rule::UNKNOWN_KEY, message));
            continue;
        }
        if lower.contains("velero.io/") && lower.contains("hook") {
            if let Some(k) = closest(key, &known) {
                out.push(finding(
                    Severity::Error,
                    key,
                    rule::UNKNOWN_KEY,
                    format!("Velero does not read {key}; it has no effect. Fix: did you mean {k}?"),
                ));
            }
        }
    }
}

/// The known key within a small edit distance of `key`, if any.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_exec_phase(
    phase: &ExecPhase,
    annotations: &Annotations,
    spec: &PodSpec,
    engine: Option<&Engine>,
    out: &mut Vec<Finding>,
) {
    let p = phase.prefix;
    let command_key = format!("{p}command");
    if let Some(command) = annotations.get(&command_key) {
        check_command(&command_key, command, false, out);
        check_postgres_backup_mode(&command_key, command, engine, out);
        if !phase.restore {
            check_session_lock(&command_key, command, out);
        }
    }

    let container_key = format!("{p}container");
    match annotations
        .get(&container_key)
        .filter(|v| !v.is_empty())
        .map(String::as_str)
    {
        Some(name) => check_container(phase, &container_key, name, spec, out),
        None => {
            let first = spec
                .containers
                .first()
                .map(|c| c.name.as_str())
                .unwrap_or("");
            let mut message = format!(
                "the {} has no {container_key}, so Velero runs it in the first container, {first:?}.",
                phase.what,
            );
            if spec.containers.len() > 1 {
                message.push_str(&format!(
                    " This pod has {} containers; if a sidecar (istio-proxy, linkerd-proxy, a log shipper) is injected first, the hook runs there and fails.",
                    spec.containers.len()
                ));
            }
            if let Some(default) = annotations.get("kubectl.kubernetes.io/default-container") {
                message.push_str(&format!(
                    " Velero ignores kubectl.kubernetes.io/default-container ({default:?})."
                ));
            }
            let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
            message.push_str(&match names.as_slice() {
                [only] => format!(" Fix: set {container_key} to {only:?}."),
                _ => format!(
                    " Fix: set {container_key} to the container the hook is for (one of: {}).",
                    names.join(", ")
                ),
            });
            out.push(finding(
                Severity::Warning,
                container_key,
                rule::CONTAINER_MISSING,
                message,
            ));
        }
    }

    let on_error_key = format!("{p}on-error");
    if let Some(v) = annotations.get(&on_error_key) {
        check_on_error(phase, &on_error_key, v, out);
    }

    for (suffix, kind) in phase.durations {
        let key = format!("{p}{suffix}");
        if let Some(v) = annotations.get(&key) {
            check_duration(&key, v, *kind, out);
        }
    }

    if phase.restore {
        let wait_key = format!("{p}wait-timeout");
        if !annotations.contains_key(&wait_key) {
            out.push(finding(
                Severity::Warning,
                wait_key.clone(),
                rule::RESTORE_WAIT_TIMEOUT_MISSING,
                format!(
                    "the restore exec hook has no {wait_key}: if its container never starts, Velero waits forever and on v1.18.x the restore stays in Finalizing, blocking later restores (velero-io/velero#9744). Fix: set {wait_key} to a bound that covers image pull and data restore, e.g. \"10m\"."
                ),
            ));
        }
        let ready_key = format!("{p}wait-for-ready");
        if let Some(v) = annotations.get(&ready_key) {
            if velero::parse_go_bool(v).is_none() {
                out.push(finding(
                    Severity::Error,
                    ready_key,
                    rule::WAIT_FOR_READY_INVALID,
                    format!(
                        "{v:?} is not a value Go's strconv.ParseBool accepts: Velero logs a warning and treats it as false, so the hook runs as soon as the container is running, possibly before the database accepts connections. Fix: write {}.",
                        velero::go_bool_spellings()
                    ),
                ));
            }
        }
    }
}

fn check_container(
    phase: &ExecPhase,
    key: &str,
    name: &str,
    spec: &PodSpec,
    out: &mut Vec<Finding>,
) {
    if spec.containers.iter().any(|c| c.name == name) {
        return;
    }
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let is_init = spec
        .init_containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| c.name == name);
    let trimmed = name.trim();
    let what_happens = if phase.restore {
        "Velero drops the hook with a warning, but its hook tracker still waits for it: on v1.18.x the restore stays in Finalizing forever (velero-io/velero#9749)"
    } else {
        "the hook fails with `no such container` and on-error applies"
    };
    let why = if is_init {
        format!(
            "{name:?} is an init container (a native sidecar?); Velero v1.18 only execs into spec.containers (sidecar support: velero-io/velero#9393)"
        )
    } else if trimmed != name && spec.containers.iter().any(|c| c.name == trimmed) {
        format!("{name:?} has surrounding whitespace, which Velero does not trim")
    } else {
        format!("{name:?} is not in spec.containers")
    };
    let fix = if trimmed != name && spec.containers.iter().any(|c| c.name == trimmed) {
        format!("set it to {trimmed:?}")
    } else {
        format!("set it to one of: {}", names.join(", "))
    };
    out.push(finding(
        Severity::Error,
        key,
        rule::CONTAINER_NOT_FOUND,
        format!("{why}: {what_happens}. Fix: {fix}."),
    ));
}

fn check_on_error(phase: &ExecPhase, key: &str, value: &str, out: &mut Vec<Finding>) {
    if value == "Fail" || value == "Continue" {
        return;
    }
    let effect = if phase.restore {
        "Velero silently treats it as unset"
    } else {
        "Velero silently treats it as unset, which behaves like Continue: a failing pre hook does not stop the pod from being backed up"
    };
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("fail") || trimmed.eq_ignore_ascii_case("continue") {
        let right = if trimmed.eq_ignore_ascii_case("fail") {
            "Fail"
        } else {
            "Continue"
        };
        out.push(finding(
            Severity::Error,
            key,
            rule::ON_ERROR_CASE,
            format!(
                "{value:?} is not an exact match: Velero only honours \"Fail\" and \"Continue\" (case-sensitive, no whitespace); {effect}. Fix: write \"{right}\"."
            ),
        ));
    } else {
        out.push(finding(
            Severity::Error,
            key,
            rule::ON_ERROR_UNKNOWN,
            format!(
                "{value:?} is not an on-error mode Velero knows (only \"Fail\" and \"Continue\"; FailBlock, velero-io/velero#10177, is not released); {effect}. Fix: write \"Fail\" or \"Continue\"."
            ),
        ));
    }
}

/// Checks a duration value the way Go's `time.ParseDuration` and Velero read it.
fn check_duration(key: &str, value: &str, kind: DurationKind, out: &mut Vec<Finding>) {
    if value.is_empty() {
        return;
    }
    let fallback = match kind {
        DurationKind::Exec => "the default 30s",
        DurationKind::Wait => "no limit (it waits forever for the container)",
    };
    let (rule_id, severity, message) = if let Some(rest) = value.strip_prefix('-') {
        match velero::parse_go_duration(rest) {
            Some(d) if !d.is_zero() => {
                let effect = match kind {
                    DurationKind::Exec => {
                        "Velero v1.18.x then runs the hook with no time limit at all, main with 30s (velero-io/velero#10125)"
                    }
                    DurationKind::Wait => {
                        "Velero then waits without a deadline and marks the hook expired before running it"
                    }
                };
                (
                    rule::DURATION_NOT_POSITIVE,
                    Severity::Error,
                    format!(
                        "{value:?} is negative: {effect}. Fix: a positive duration such as \"60s\"."
                    ),
                )
            }
            _ => unparseable(value, fallback),
        }
    } else {
        match velero::parse_go_duration(value) {
            Some(d) if d.is_zero() => (
                rule::DURATION_NOT_POSITIVE,
                Severity::Error,
                format!(
                    "{value:?} is zero, which Velero treats as unset: {fallback}. Fix: a positive duration such as \"60s\"."
                ),
            ),
            Some(d) if d > MAX_HOOK_TIMEOUT => (
                rule::DURATION_TOO_LONG,
                Severity::Warning,
                format!(
                    "{value:?} is more than 4h: Velero main caps hook timeouts at 4h (velero-io/velero#10125) while v1.18.x honours it, and a hook this long holds up the backup. Fix: at most \"4h\"."
                ),
            ),
            Some(_) => return,
            None if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => (
                rule::DURATION_NO_UNIT,
                Severity::Error,
                format!(
                    "{value:?} has no unit: Go's ParseDuration rejects it and Velero silently uses {fallback} (velero-io/velero#2599). Fix: write \"{value}s\"."
                ),
            ),
            None => unparseable(value, fallback),
        }
    };
    out.push(finding(severity, key, rule_id, message));
}

fn unparseable(value: &str, fallback: &str) -> (&'static str, Severity, String) {
    let trimmed = value.trim();
    let fix = if trimmed != value && velero::parse_go_duration(trimmed).is_some() {
        format!("remove the whitespace: \"{trimmed}\"")
    } else if let Some(days) = trimmed
        .strip_suffix('d')
        .and_then(|n| n.parse::<u64>().ok())
    {
        format!(
            "Go has no day unit; write \"{}h\" (hook timeouts above 4h are capped)",
            days * 24
        )
    } else {
        "write a number with a unit (ns, us, ms, s, m, h) and no spaces, e.g. \"90s\", \"5m\", \"1h30m\"".to_owned()
    };
    (
        rule::DURATION_UNPARSEABLE,
        Severity::Error,
        format!(
            "{value:?} is not a Go duration: Velero logs a warning and uses {fallback}. Fix: {fix}."
        ),
    )
}

/// Shells that interpret the rest of argv as a script.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "busybox"];
/// argv elements that only mean something to a shell.
const SHELL_OPERATORS: &[&str] = &[
    "|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&>", "&", "$(", "`",
];
static SHELL_VARIABLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$(\{[A-Za-z_]|[A-Za-z_])").expect("static regex"));

/// Checks a command value as Velero's `parseStringToCommand` reads it.
fn check_command(key: &str, value: &str, init: bool, out: &mut Vec<Finding>) {
    let effect = if init {
        "the init container's command is that one string, which is no program, so it fails to start and the restored pod never runs"
    } else {
        "Velero runs the whole value as one program name, which does not exist, and the hook fails"
    };
    if value.starts_with(char::is_whitespace) {
        out.push(finding(
            Severity::Error,
            key,
            rule::COMMAND_LEADING_WHITESPACE,
            format!(
                "the value starts with whitespace, so it is not read as a JSON array: {effect}. Fix: remove the leading whitespace so the value starts with \"[\"."
            ),
        ));
        return;
    }
    if value.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(value) {
            Ok(argv) => check_argv(key, &argv, init, out),
            Err(_) => out.push(finding(
                Severity::Error,
                key,
                rule::COMMAND_NOT_JSON_ARRAY,
                format!(
                    "the value starts with \"[\" but is not a JSON array of strings ({}), so {effect}{}. Fix: {}.",
                    json_problem(value),
                    if value.contains(['\'', '\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}']) {
                        " (velero-io/velero#4718)"
                    } else {
                        ""
                    },
                    json_fix(value)
                ),
            )),
        }
        return;
    }
    if value.contains(char::is_whitespace) {
        let suggestion = if value.contains(|c: char| "$|&;<>*?`~(){}'\"\\".contains(c)) {
            serde_json::to_string(&["/bin/sh", "-c", value])
        } else {
            serde_json::to_string(&value.split_whitespace().collect::<Vec<_>>())
        }
        .unwrap_or_default();
        out.push(finding(
            Severity::Error,
            key,
            rule::COMMAND_PLAIN_STRING,
            format!(
                "a plain string with spaces is one argv element (Velero neither splits it nor runs a shell): {effect}. Fix: write it as a JSON array: {suggestion}"
            ),
        ));
    }
}

fn json_problem(value: &str) -> String {
    if value.contains(['\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}']) {
        return "typographic quotes; JSON needs straight double quotes".to_owned();
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Array(items)) => items
            .iter()
            .position(|v| !v.is_string())
            .map(|i| format!("element {i} is {}, not a string", items[i]))
            .unwrap_or_else(|| "not an array of strings".to_owned()),
        Ok(_) => "not an array".to_owned(),
        Err(e) if value.contains('\'') => format!("single quotes are not JSON: {e}"),
        Err(e) => format!("invalid JSON: {e}"),
    }
}

fn json_fix(value: &str) -> String {
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(value) {
        let strings: Vec<String> = items
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        if let Ok(s) = serde_json::to_string(&strings) {
            return format!("quote every element: {s}");
        }
    }
    let straightened: String = value
        .chars()
        .map(|c| match c {
            '\'' | '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}' => '"',
            c => c,
        })
        .collect();
    if serde_json::from_str::<Vec<String>>(&straightened).is_ok() {
        format!("use straight double quotes: {straightened}")
    } else {
        "write a JSON array of strings with straight double quotes, e.g. [\"/bin/sh\",\"-c\",\"…\"]"
            .to_owned()
    }
}

fn check_argv(key: &str, argv: &[String], init: bool, out: &mut Vec<Finding>) {
    let Some(program) = argv.first() else {
        // For an init hook an empty argv keeps the image ENTRYPOINT: legal, if unusual.
        if !init {
            out.push(finding(
                Severity::Error,
                key,
                rule::COMMAND_EMPTY,
                "the command is an empty array: Velero attempts the hook and fails it with `command is required`. Fix: give the program and its arguments, e.g. [\"/bin/sh\",\"-c\",\"sync\"], or remove the hook's keys.".to_owned(),
            ));
        }
        return;
    };
    if program.trim().is_empty() {
        out.push(finding(
            Severity::Error,
            key,
            rule::COMMAND_EMPTY,
            format!(
                "the program (first element) is {program:?}: there is nothing to execute and the hook fails. Fix: put the program first, e.g. [\"/bin/sh\",\"-c\",\"sync\"]."
            ),
        ));
        return;
    }
    if program.contains(char::is_whitespace) {
        let mut fixed: Vec<&str> = program.split_whitespace().collect();
        fixed.extend(argv[1..].iter().map(String::as_str));
        out.push(finding(
            Severity::Error,
            key,
            rule::COMMAND_PROGRAM_WITH_SPACES,
            format!(
                "the program {program:?} contains spaces: there is no shell to split it, so no such executable exists and the hook fails. Fix: one argument per element: {}",
                serde_json::to_string(&fixed).unwrap_or_default()
            ),
        ));
        return;
    }
    let base = program.rsplit('/').next().unwrap_or(program);
    if SHELLS.contains(&base) {
        return;
    }
    let operator = argv[1..]
        .iter()
        .find(|a| SHELL_OPERATORS.contains(&a.as_str()))
        .map(|a| format!("the shell operator {a:?}"))
        .or_else(|| {
            argv[1..]
                .iter()
                .find(|a| SHELL_VARIABLE.is_match(a))
                .map(|a| format!("the variable reference in {a:?}"))
        });
    if let Some(what) = operator {
        let script = argv
            .iter()
            .map(|a| shell_quote_if_needed(a))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(finding(
            Severity::Error,
            key,
            rule::COMMAND_SHELL_SYNTAX,
            format!(
                "{what} is passed literally to {program:?}: Velero execs argv without a shell (velero-io/velero#4901). Fix: run it in a shell the image has: {}",
                serde_json::to_string(&["/bin/sh", "-c", script.as_str()]).unwrap_or_default()
            ),
        ));
    }
}

fn shell_quote_if_needed(arg: &str) -> String {
    let plain = !arg.is_empty()
        && (SHELL_OPERATORS.contains(&arg)
            || arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+$".contains(c)));
    if plain {
        arg.to_owned()
    } else {
        let mut quoted = String::from("\"");
        for c in arg.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    }
}

static PG_EXCLUSIVE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bpg_(start|stop)_backup\b").expect("static regex"));

fn check_postgres_backup_mode(
    key: &str,
    command: &str,
    engine: Option<&Engine>,
    out: &mut Vec<Finding>,
) {
    let Some(m) = PG_EXCLUSIVE.find(command) else {
        return;
    };
    let function = m.as_str();
    let is_pg = engine.is_some_and(|e| e.engine == "postgresql");
    let version = engine.filter(|_| is_pg).and_then(|e| e.version.as_ref());
    let fix = "Fix: use CHECKPOINT before a volume snapshot (velero-hook-injector.io/template: postgres) or dump to a backed-up volume; pg_backup_start is no replacement in a hook, it ends with the hook's session";
    match version {
        Some(v) if Version::parse("15").is_some_and(|v15| *v >= v15) => out.push(finding(
            Severity::Error,
            key,
            rule::PG_EXCLUSIVE_BACKUP,
            format!(
                "{function} was removed in PostgreSQL 15 and the image runs {v}: the hook fails with `function {function}(...) does not exist`. {fix}."
            ),
        )),
        Some(_) => {}
        None => out.push(finding(
            Severity::Warning,
            key,
            rule::PG_EXCLUSIVE_BACKUP,
            format!(
                "{function} was removed in PostgreSQL 15 and the server version is unknown (no version in the image tag): on 15 or later this hook fails. Pin the image to a versioned tag to let this check decide. {fix}."
            ),
        )),
    }
}

static SESSION_LOCKS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"(?i)\bFLUSH\s+TABLES\b[^;]*?\bWITH\s+READ\s+LOCK\b",
            "FLUSH TABLES WITH READ LOCK",
        ),
        (
            r"(?i)\bLOCK\s+INSTANCE\s+FOR\s+BACKUP\b",
            "LOCK INSTANCE FOR BACKUP",
        ),
        (r"(?i)\bBACKUP\s+STAGE\b", "BACKUP STAGE"),
        (r"(?i)\bpg_backup_start\b", "pg_backup_start"),
    ]
    .into_iter()
    .map(|(re, name)| (Regex::new(re).expect("static regex"), name))
    .collect()
});
/// Signs that a command leaves a process (and so its database session) running after it exits.
static DETACHES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(setsid|nohup|disown|start-stop-daemon|daemonize)\b|(^|[^&>|<])&([^&>]|$)")
        .expect("static regex")
});

fn check_session_lock(key: &str, command: &str, out: &mut Vec<Finding>) {
    let Some(name) = SESSION_LOCKS
        .iter()
        .find(|(re, _)| re.is_match(command))
        .map(|(_, name)| *name)
    else {
        return;
    };
    if DETACHES.is_match(command) {
        return;
    }
    let fix = if name == "pg_backup_start" {
        "Fix: use CHECKPOINT before a volume snapshot (velero-hook-injector.io/template: postgres)"
    } else {
        "Fix: hold the lock in a detached client session (setsid … &) that the post hook ends, as the mysql and mariadb templates do (velero-hook-injector.io/template: mysql or mariadb)"
    };
    out.push(finding(
        Severity::Warning,
        key,
        rule::SESSION_LOCK,
        format!(
            "{name} is tied to the database session, and Velero runs each hook in its own exec session: the lock ends when this command exits, before the snapshot is taken, and the post hook has nothing left to release. Heuristic: the command shows no setsid, nohup or & that would keep a holder session alive. {fix}."
        ),
    ));
}

fn check_inactive_phases(
    annotations: &Annotations,
    pre_active: bool,
    legacy_active: bool,
    out: &mut Vec<Finding>,
) {
    let known = known_keys();
    if pre_active {
        let legacy: Vec<&str> = annotations
            .keys()
            .filter(|k| k.starts_with(velero::LEGACY_BACKUP))
            .map(String::as_str)
            .collect();
        if let Some(first) = legacy.first() {
            out.push(finding(
                Severity::Warning,
                *first,
                rule::LEGACY_KEYS_IGNORED,
                format!(
                    "{}command is set, so Velero ignores every legacy {}* key ({}). Fix: remove them, or move their values to the {}* keys.",
                    velero::PRE_BACKUP,
                    velero::LEGACY_BACKUP,
                    legacy.join(", "),
                    velero::PRE_BACKUP
                ),
            ));
        }
    }
    for (prefix, what) in [
        (velero::PRE_BACKUP, "pre-backup"),
        (velero::POST_BACKUP, "post-backup"),
        (velero::LEGACY_BACKUP, "legacy pre-backup"),
        (velero::POST_RESTORE, "restore exec"),
    ] {
        let command_key = format!("{prefix}command");
        if annotations.get(&command_key).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        if prefix == velero::LEGACY_BACKUP && pre_active {
            continue; // reported above
        }
        let orphans: Vec<&str> = annotations
            .keys()
            .filter(|k| k.starts_with(prefix) && **k != command_key && known.contains(k))
            .map(String::as_str)
            .collect();
        let Some(first) = orphans.first() else {
            continue;
        };
        let message = if prefix == velero::PRE_BACKUP && legacy_active {
            format!(
                "Velero takes the pre hook from the legacy {}* keys because {command_key} is empty or absent, and ignores {}. Fix: move the whole hook to the {prefix}* keys and remove the legacy ones.",
                velero::LEGACY_BACKUP,
                orphans.join(", ")
            )
        } else {
            format!(
                "there is no {what} hook because {command_key} is {}, so {} {} no effect. Fix: set {command_key} to a JSON array, or remove the keys.",
                if annotations.contains_key(&command_key) {
                    "empty"
                } else {
                    "absent"
                },
                orphans.join(", "),
                if orphans.len() == 1 { "has" } else { "have" }
            )
        };
        out.push(finding(
            Severity::Warning,
            *first,
            if legacy_active && prefix == velero::PRE_BACKUP {
                rule::LEGACY_KEYS_IGNORED
            } else {
                rule::KEYS_WITHOUT_COMMAND
            },
            message,
        ));
    }
}

fn check_init(annotations: &Annotations, spec: &PodSpec, out: &mut Vec<Finding>) {
    let p = velero::INIT_RESTORE;
    let image_key = format!("{p}container-image");
    let command_key = format!("{p}command");
    let name_key = format!("{p}container-name");
    let image = annotations
        .get(&image_key)
        .map(String::as_str)
        .unwrap_or("");
    if image.is_empty() {
        let orphans: Vec<&str> = [&command_key, &name_key]
            .into_iter()
            .filter(|k| annotations.contains_key(*k))
            .map(String::as_str)
            .collect();
        if let Some(first) = orphans.first() {
            out.push(finding(
                Severity::Warning,
                *first,
                rule::KEYS_WITHOUT_COMMAND,
                format!(
                    "{image_key} is {}, so Velero adds no init container and {} {} no effect. Fix: set {image_key}, or remove the keys.",
                    if annotations.contains_key(&image_key) { "empty" } else { "absent" },
                    orphans.join(", "),
                    if orphans.len() == 1 { "has" } else { "have" }
                ),
            ));
        }
        return;
    }
    match annotations.get(&command_key).map(String::as_str) {
        None | Some("") => out.push(finding(
            Severity::Error,
            command_key.clone(),
            rule::INIT_COMMAND_MISSING,
            format!(
                "{image_key} is set but {command_key} is {}: Velero ≤ v1.18.2 panics reading it, and the pod is not restored (`error preparing … plugin panicked`; fixed after v1.18.2 by velero-io/velero#10371). Fix: set {command_key} to a non-empty JSON array, e.g. [\"/bin/sh\",\"-c\",\"echo restore-init\"].",
                if annotations.contains_key(&command_key) { "empty" } else { "absent" }
            ),
        )),
        Some(command) => check_command(&command_key, command, true, out),
    }
    if let Some(name) = annotations.get(&name_key).filter(|n| !n.is_empty()) {
        let problem = if !is_dns1123_label(name) {
            Some(format!(
                "{name:?} is not a valid container name (DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
            ))
        } else if spec
            .containers
            .iter()
            .chain(spec.init_containers.as_deref().unwrap_or_default())
            .any(|c| &c.name == name)
        {
            Some(format!(
                "{name:?} is already the name of a container in this pod"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            out.push(finding(
                Severity::Error,
                name_key,
                rule::INIT_CONTAINER_NAME_INVALID,
                format!(
                    "{problem}: Velero adds the init container anyway and the API server rejects the restored pod. Fix: a unique lowercase name such as \"restore-init\"."
                ),
            ));
        }
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The engine of the container the backup hooks target (the explicit `…/container`, else the
/// first container), or else of the first container whose image a template matches.
pub fn detect_engine(
    annotations: &Annotations,
    spec: &PodSpec,
    library: &Library,
) -> Option<Engine> {
    let target = [
        velero::PRE_BACKUP,
        velero::LEGACY_BACKUP,
        velero::POST_BACKUP,
        velero::POST_RESTORE,
    ]
    .iter()
    .find_map(|p| {
        annotations
            .get(&format!("{p}container"))
            .filter(|v| !v.is_empty())
    })
    .and_then(|name| spec.containers.iter().find(|c| &c.name == name))
    .or_else(|| spec.containers.first());
    let engine_of = |c: &k8s_openapi::api::core::v1::Container| {
        let image = ImageRef::parse(c.image.as_deref()?).ok()?;
        let template = library.find_for_image(&image)?;
        Some(Engine {
            engine: template.engine.clone(),
            version: version::from_image(&image),
        })
    };
    target
        .and_then(engine_of)
        .or_else(|| spec.containers.iter().find_map(engine_of))
}

/// All findings for one pod: Velero rule violations, a database without backup hooks, and
/// injected hooks that differ from the current template. Sorted errors first.
pub fn check_pod(pod: &Pod, library: &Library) -> Vec<Finding> {
    check_pod_with(pod, library, ClusterDefaults::default())
}

/// [`check_pod`] under the cluster's Backup `defaults` (`--default-volumes-to-fs-backup`).
pub fn check_pod_with(pod: &Pod, library: &Library, defaults: ClusterDefaults) -> Vec<Finding> {
    check_pod_assessed(pod, library, defaults, deployment::assess)
}

/// [`check_pod_with`] with deployments assessed by `assess`.
pub(crate) fn check_pod_assessed(
    pod: &Pod,
    library: &Library,
    defaults: ClusterDefaults,
    assess: Assess,
) -> Vec<Finding> {
    let empty = Annotations::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let engine = detect_engine(annotations, spec, library);
    let mut out = check(annotations, spec, engine.as_ref());
    out.extend(missing_hooks_assessed(pod, library, defaults, assess));
    out.extend(deployment_problems(pod, library, defaults, assess));
    out.extend(template_drift(annotations, library));
    out.extend(restore_hook_exceeds_velero_wait(annotations, library));
    out.extend(snapshot_hooks_on_fs_backup(pod, library, defaults));
    out.extend(detect::control_problems(pod).into_iter().map(|p| {
        let text = p.message.strip_prefix("velero-hook-injector: ");
        let message = format!("{}.", text.unwrap_or(&p.message));
        finding(Severity::Error, p.key, rule::CONTROL_VALUE_INVALID, message)
    }));
    out.sort_by_key(|f| f.severity);
    out
}

/// Hooks that cannot work, or may fail, in the pod as it is deployed: one finding per problem
/// the deployment assessment finds in the container the webhook's hooks run in (those the pod
/// carries, `velero-hook-injector.io/injected: T/C`) or would run in (a pod the webhook would
/// inject into, or leaves without hooks because none can work).
fn deployment_problems(
    pod: &Pod,
    library: &Library,
    defaults: ClusterDefaults,
    assess: Assess,
) -> Vec<Finding> {
    let empty = Annotations::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let (template, container) = match annotations.get(keys::INJECTED) {
        Some(injected) => {
            let Some((t, c)) = injected.split_once('/') else {
                return Vec::new(); // template-drift says the marker is malformed
            };
            (library.get(t), c.to_owned())
        }
        None => {
            let d = detect::decide_assessed(pod, library, defaults, assess);
            if !matches!(d.outcome, Outcome::Injected | Outcome::HooksCannotWork) {
                return Vec::new();
            }
            let t = d.template.as_deref().and_then(|t| library.get(t));
            (t, d.container.unwrap_or_default())
        }
    };
    let Some(template) = template else {
        return Vec::new();
    };
    let Some(c) = spec.containers.iter().find(|c| c.name == container) else {
        return Vec::new(); // container-not-found says so
    };
    let image = c.image.as_deref().and_then(|i| ImageRef::parse(i).ok());
    let assessed = assess(&Subject {
        engine: &template.engine,
        image: image.as_ref(),
        container: c,
        labels,
    });
    // Which of the pod's hook commands are the webhook's (snapshot or dump-mode set): a
    // command of the user's own is not judged here.
    let snapshot = template.annotations(&container);
    let dump = template.dump_annotations(&container).unwrap_or_default();
    let ours = |key: &str| {
        annotations
            .get(key)
            .is_some_and(|v| snapshot.get(key) == Some(v) || dump.get(key) == Some(v))
    };
    let theirs = |key: &str| annotations.contains_key(key) && !ours(key);
    let carries_dump = !dump.is_empty()
        && dump
            .iter()
            .filter(|(k, _)| velero::is_backup_hook_key(k))
            .all(|(k, v)| annotations.get(k) == Some(v));
    let command = |phase: &str| format!("{phase}command");
    let mut out = Vec::new();
    for p in &assessed.problems {
        let text = p.message.trim_end_matches('.');
        let mut phases: Vec<(&str, String)> = Vec::new();
        let backup = command(velero::PRE_BACKUP);
        let restore = command(velero::POST_RESTORE);
        if p.blocks.contains(&Blocked::Backup) && !theirs(&backup) {
            phases.push(("backup hooks", backup));
        }
        if p.blocks.contains(&Blocked::Restore) && !theirs(&restore) {
            phases.push(("restore hook", restore));
        }
        if p.blocks.contains(&Blocked::DumpMode) && carries_dump {
            phases.push(("dump-mode hooks", keys::INJECTED.to_owned()));
        }
        if p.advice {
            // Said at admission; the pod spec cannot show it followed, so a finding here could
            // never be cleared (a PVC label, say, is not on the pod).
            continue;
        }
        if p.blocks.is_empty() {
            out.push(finding(
                Severity::Warning,
                keys::INJECTED,
                rule::HOOKS_MAY_FAIL,
                format!(
                    "the {} hooks in container {container:?} may fail: {text}. Fix: make sure it does not apply to this pod, or change the pod as said and restart its workload.",
                    template.name
                ),
            ));
            continue;
        }
        let Some((_, key)) = phases.first() else {
            continue; // only dump mode is ruled out and the pod is not in it, or the hooks are the user's
        };
        let names: Vec<&str> = phases.iter().map(|(n, _)| *n).collect();
        let carried = carries_dump && p.blocks.contains(&Blocked::DumpMode)
            || phases.iter().any(|(_, k)| ours(k));
        let message = if carried {
            format!(
                "the {} {} in container {container:?} cannot work as the pod is deployed, and fail on every run: {text}. Fix: change the pod as said, then restart its workload (kubectl rollout restart …) so the webhook injects hooks that work.",
                template.name,
                names.join(" and ")
            )
        } else {
            format!(
                "container {container:?} gets no {} {} from the webhook because they cannot work as the pod is deployed, so its backups are crash-consistent at best: {text}. Fix: change the pod as said, then restart its workload (kubectl rollout restart …) so the webhook injects them.",
                template.name,
                names.join(" and ")
            )
        };
        out.push(finding(
            Severity::Error,
            key.clone(),
            rule::HOOKS_CANNOT_WORK,
            message,
        ));
    }
    out
}

/// A restore exec hook whose `exec-timeout` outlasts Velero's bound on the restore finalizer's
/// wait for hooks (`--resource-timeout`, 10m by default; velero-io/velero#10280, after v1.18.2).
/// The hook may then still run when Velero gives up and marks the restore PartiallyFailed.
/// `wait-timeout` is not compared: it counts from the pod's creation, which comes before the
/// finalizer starts its clock (image pull and file-system restore happen before it). The
/// webhook's own dump-mode load is left out: a large dump may need longer, and its admission
/// warning says to raise `--resource-timeout` (a finding here could never be cleared, as the
/// server's flag is not visible from a pod).
pub fn restore_hook_exceeds_velero_wait(
    annotations: &Annotations,
    library: &Library,
) -> Option<Finding> {
    let command_key = format!("{}command", velero::POST_RESTORE);
    let command = annotations.get(&command_key).filter(|v| !v.is_empty())?;
    let key = format!("{}exec-timeout", velero::POST_RESTORE);
    let value = annotations.get(&key)?;
    let exec = velero::parse_go_duration(value)?;
    if exec <= velero::RESOURCE_TIMEOUT || exec > MAX_HOOK_TIMEOUT {
        return None; // over 4h: duration-too-long says so
    }
    let dump_load = annotations
        .get(keys::INJECTED)
        .and_then(|i| i.split_once('/'))
        .and_then(|(t, c)| library.get(t)?.dump_annotations(c))
        .is_some_and(|dump| dump.get(&command_key) == Some(command));
    if dump_load {
        return None;
    }
    Some(finding(
        Severity::Warning,
        key,
        rule::RESTORE_HOOK_EXCEEDS_VELERO_WAIT,
        format!(
            "{value:?} lets the restore hook run longer than 10 minutes, but Velero after v1.18.2 (velero-io/velero#10280) stops waiting for restore hooks after its --resource-timeout (10m by default) and marks the restore PartiallyFailed while the hook still runs. Fix: an exec-timeout of at most \"10m\" with the hook's own deadline inside it, or raise the Velero server's --resource-timeout above {value:?} (an argument of the velero server container in the velero Deployment, e.g. --resource-timeout=1h)."
        ),
    ))
}

/// A pod the webhook would inject backup hooks into but which has none.
pub fn missing_hooks(pod: &Pod, library: &Library, defaults: ClusterDefaults) -> Option<Finding> {
    missing_hooks_assessed(pod, library, defaults, deployment::assess)
}

fn missing_hooks_assessed(
    pod: &Pod,
    library: &Library,
    defaults: ClusterDefaults,
    assess: Assess,
) -> Option<Finding> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.keys().any(|k| velero::is_backup_hook_key(k)) {
        return None;
    }
    let mut stripped = pod.clone();
    if let Some(a) = stripped.metadata.annotations.as_mut() {
        if let Some(injected) = a.remove(keys::INJECTED) {
            // Decide the pod as it was before the webhook wrote to it: without the hooks it
            // added (else they count as the user's own) and Velero's volume lists it may have
            // added (a replica under file-system backup gets its data volumes excluded and no
            // backup hooks; decided again with the list, it would look like a pod for
            // snapshots). Whatever the lists, a pod the webhook gives backup hooks gets them.
            if let Some((t, c)) = injected.split_once('/') {
                if let Some(t) = library.get(t) {
                    let snapshot = t.annotations(c);
                    let dump = t.dump_annotations(c).unwrap_or_default();
                    a.retain(|k, v| snapshot.get(k) != Some(v) && dump.get(k) != Some(v));
                }
            }
            a.remove(backup_method::BACKUP_VOLUMES_EXCLUDES);
            a.remove(backup_method::BACKUP_VOLUMES);
        }
        a.remove(keys::SKIPPED);
    }
    let decision = detect::decide_assessed(&stripped, library, defaults, assess);
    if decision.outcome != Outcome::Injected
        || !decision.add.keys().any(|k| velero::is_backup_hook_key(k))
    {
        return None;
    }
    let template = decision.template.unwrap_or_default();
    let container = decision.container.unwrap_or_default();
    Some(finding(
        Severity::Warning,
        format!("{}command", velero::PRE_BACKUP),
        rule::MISSING_HOOKS,
        format!(
            "container {container:?} runs a database the {template:?} template covers, but the pod has no Velero backup hooks: its backups are crash-consistent at best. The pod was created before the webhook was installed, while it was down, or outside an opted-in namespace. Fix: label the namespace {}=enabled, then run `velero-hook-injector audit --apply` (or serve --reconcile) to add the hooks to the running pod, or restart the workload (kubectl rollout restart …).",
            keys::NAMESPACE_OPT_IN
        ),
    ))
}

/// The webhook's snapshot hooks (e.g. CHECKPOINT) on a pod whose data volume Velero now copies
/// file by file, for a template whose snapshot hooks do not make such a copy consistent (it has
/// a dump mode). Happens when the pod was admitted before its `backup.velero.io/*` annotations,
/// `--default-volumes-to-fs-backup` or dump mode existed, or when its own settings rule dump
/// mode out (then admission warned, and this keeps saying so).
pub fn snapshot_hooks_on_fs_backup(
    pod: &Pod,
    library: &Library,
    defaults: ClusterDefaults,
) -> Option<Finding> {
    let annotations = pod.metadata.annotations.as_ref()?;
    let (name, container) = annotations.get(keys::INJECTED)?.split_once('/')?;
    let template = library.get(name)?;
    template.fs_backup.as_ref()?.dump.as_ref()?;
    let snapshot = template.annotations(container);
    let mut ours = snapshot
        .iter()
        .filter(|(k, _)| velero::is_backup_hook_key(k))
        .peekable();
    ours.peek()?;
    if !ours.all(|(k, v)| annotations.get(k) == Some(v)) {
        return None;
    }
    // Decide the pod as it was before the webhook wrote to it, under today's settings.
    let mut before = pod.clone();
    if let Some(a) = before.metadata.annotations.as_mut() {
        a.retain(|k, v| k != keys::INJECTED && snapshot.get(k) != Some(v));
    }
    let decision = detect::decide_with(&before, library, defaults);
    let method = decision.backup.as_ref()?;
    if method.method != Method::FsBackup {
        return None;
    }
    let fix = match (&decision.dump_volume, &decision.dump_refused) {
        (Some(_), _) => format!(
            "restart the pod (its workload, e.g. kubectl rollout restart) so the webhook injects dump mode: a logical dump into a {:?} volume that Velero copies instead of the live data (a running pod cannot get a volume, so audit --apply cannot do it)",
            backup_method::DUMP_VOLUME
        ),
        (None, Some(why)) => format!(
            "dump mode is ruled out because {why}; give the data volume a CSI snapshot (and set {} to snapshot), or change that and restart the pod",
            keys::BACKUP_METHOD
        ),
        (None, None) => "restart the pod so the webhook decides again".to_owned(),
    };
    Some(finding(
        Severity::Warning,
        keys::INJECTED,
        rule::FS_BACKUP_SNAPSHOT_HOOKS,
        format!(
            "container {container:?} carries the {name:?} hooks for volume snapshots, but Velero copies its data file by file ({}), and those hooks do not make that copy consistent: a restore can lose or tear rows or not start. Fix: {fix}.",
            method.reason
        ),
    ))
}

/// Injected hooks (`velero-hook-injector.io/injected: T/C`) that differ from template `T` as it is now.
pub fn template_drift(annotations: &Annotations, library: &Library) -> Option<Finding> {
    let injected = annotations.get(keys::INJECTED)?;
    let Some((name, container)) = injected.split_once('/') else {
        return Some(finding(
            Severity::Warning,
            keys::INJECTED,
            rule::TEMPLATE_DRIFT,
            format!(
                "{injected:?} is not TEMPLATE/CONTAINER, so the hooks cannot be compared with a template. Fix: remove {} and restart the pod so the webhook injects again.",
                keys::INJECTED
            ),
        ));
    };
    let Some(template) = library.get(name) else {
        return Some(finding(
            Severity::Warning,
            keys::INJECTED,
            rule::TEMPLATE_DRIFT,
            format!(
                "the hooks were injected from template {name:?}, which no longer exists (known: {}). Fix: remove the pod's Velero hook keys and {} and restart it, or set {} to a current template.",
                library.names().join(", "),
                keys::INJECTED,
                keys::TEMPLATE
            ),
        ));
    };
    // A pod in dump mode (file-system backup) carries the template's other hook set; the pod
    // drifted only if it matches neither.
    let mut first = None;
    for expected in
        std::iter::once(template.annotations(container)).chain(template.dump_annotations(container))
    {
        match drift_from(annotations, name, &expected) {
            None => return None,
            Some(f) => {
                first.get_or_insert(f);
            }
        }
    }
    first
}

/// The drift finding of `annotations` against one hook set `expected` of template `name`.
fn drift_from(
    annotations: &Annotations,
    name: &str,
    expected: &BTreeMap<String, String>,
) -> Option<Finding> {
    let in_family = |k: &str, backup: bool| {
        if backup {
            velero::is_backup_hook_key(k)
        } else {
            velero::is_restore_hook_key(k)
        }
    };
    let both_families = [true, false]
        .iter()
        .all(|b| expected.keys().any(|k| in_family(k, *b)));
    // Which families (backup, restore) the webhook wrote. It writes a family whole and skips a
    // family the user had set. With a template of both families, a family counts as injected
    // only if every key the template writes is there, names the injected container, and at least
    // one other value still matches (a template update rarely changes everything at once).
    let injected_family = |backup: bool| {
        if !annotations.keys().any(|k| in_family(k, backup)) {
            return false; // absent: reported as missing hooks, not as drift
        }
        if !both_families {
            return true;
        }
        let family: Vec<(&String, &String)> = expected
            .iter()
            .filter(|(k, _)| in_family(k, backup))
            .collect();
        let complete = family.iter().all(|(k, v)| {
            annotations
                .get(*k)
                .is_some_and(|have| !k.ends_with("/container") || have == *v)
        });
        let some_value_matches = family
            .iter()
            .any(|(k, v)| !k.ends_with("/container") && annotations.get(*k) == Some(*v));
        complete && some_value_matches
    };
    let compare = [injected_family(true), injected_family(false)];
    let differing: Vec<&str> = expected
        .iter()
        .filter(|(k, v)| {
            let family = if velero::is_backup_hook_key(k) { 0 } else { 1 };
            compare[family] && annotations.get(*k) != Some(*v)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if differing.is_empty() {
        return None;
    }
    Some(finding(
        Severity::Warning,
        keys::INJECTED,
        rule::TEMPLATE_DRIFT,
        format!(
            "the hooks differ from template {name:?} as it is now ({}): the template changed after this pod was created, and Velero runs the old hooks. Fix: `velero-hook-injector audit --apply --include-drift` updates the running pod, or restart it (its workload, e.g. kubectl rollout restart) so the webhook injects the current ones.",
            differing.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("command", "commands"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("restore-init"));
        assert!(!is_dns1123_label("Restore_Init"));
        assert!(!is_dns1123_label("-x"));
    }

    #[test]
    fn builtin_templates_pass_every_rule() {
        let lib = Library::builtin().expect("builtin");
        let spec: PodSpec = serde_json::from_value(
            serde_json::json!({"containers": [{"name": "db", "image": "postgres:16"}]}),
        )
        .expect("spec");
        for t in lib.iter() {
            let findings = check(&t.annotations("db"), &spec, None);
            assert!(findings.is_empty(), "template {}: {findings:#?}", t.name);
        }
    }

    mod deployment_findings {
        //! Findings from the deployment assessment, with stand-in assessments.
        use super::*;
        use crate::pod::deployment::{Deployment, Problem};
        use serde_json::json;

        fn no_login(_: &Subject<'_>) -> Deployment {
            Deployment {
                problems: vec![Problem::blocking(
                    &[Blocked::Backup, Blocked::Restore],
                    "no password in the env. Fix: set POSTGRES_PASSWORD",
                )],
                ..Deployment::default()
            }
        }
        fn caution(_: &Subject<'_>) -> Deployment {
            Deployment {
                problems: vec![Problem::caution("the password may come from envFrom")],
                ..Deployment::default()
            }
        }
        fn no_dump(_: &Subject<'_>) -> Deployment {
            Deployment {
                problems: vec![Problem::blocking(&[Blocked::DumpMode], "cannot dump")],
                ..Deployment::default()
            }
        }
        fn fine(_: &Subject<'_>) -> Deployment {
            Deployment::default()
        }

        fn pod(annotations: Annotations) -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "pg-0", "annotations": annotations},
                "spec": {
                    "containers": [{"name": "db", "image": "postgres:16",
                        "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]
                }
            }))
            .expect("pod")
        }

        fn injected(hooks: BTreeMap<String, String>) -> Annotations {
            let mut a = hooks;
            a.insert(keys::INJECTED.into(), "postgres/db".into());
            a
        }

        fn rules_of(f: &[Finding]) -> Vec<&str> {
            f.iter().map(|f| f.rule_id).collect()
        }

        #[test]
        fn a_pod_that_would_get_hooks_that_cannot_work_is_an_error() {
            let lib = Library::builtin().expect("builtin");
            let f = check_pod_assessed(
                &pod(Annotations::new()),
                &lib,
                ClusterDefaults::default(),
                no_login,
            );
            assert_eq!(rules_of(&f), [rule::HOOKS_CANNOT_WORK], "{f:#?}");
            assert_eq!(f[0].severity, Severity::Error);
            assert_eq!(f[0].key, "pre.hook.backup.velero.io/command");
            assert!(
                f[0].message
                    .contains("gets no postgres backup hooks and restore hook"),
                "{}",
                f[0].message
            );
            assert!(
                f[0].message.contains("Fix: set POSTGRES_PASSWORD"),
                "{}",
                f[0].message
            );
            // Without the problem the same pod is only missing its hooks.
            let f = check_pod_assessed(
                &pod(Annotations::new()),
                &lib,
                ClusterDefaults::default(),
                fine,
            );
            assert_eq!(rules_of(&f), [rule::MISSING_HOOKS]);
        }

        #[test]
        fn hooks_a_pod_carries_that_cannot_work_are_an_error() {
            let lib = Library::builtin().expect("builtin");
            let t = lib.get("postgres").expect("postgres");
            let p = pod(injected(t.annotations("db")));
            let f = check_pod_assessed(&p, &lib, ClusterDefaults::default(), no_login);
            assert_eq!(rules_of(&f), [rule::HOOKS_CANNOT_WORK], "{f:#?}");
            assert!(
                f[0].message.contains("fail on every run"),
                "{}",
                f[0].message
            );
            let f = check_pod_assessed(&p, &lib, ClusterDefaults::default(), caution);
            assert_eq!(rules_of(&f), [rule::HOOKS_MAY_FAIL], "{f:#?}");
            assert_eq!(f[0].severity, Severity::Warning);
            assert!(check_pod_assessed(&p, &lib, ClusterDefaults::default(), fine).is_empty());
        }

        fn replica(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: crate::pod::deployment::Role::Replica {
                    how: "POSTGRES_REPLICATION_MODE=slave",
                },
                ..Deployment::default()
            }
        }

        /// render --check on what admission makes of a replica under file-system backup: only
        /// the restore hook, by design, is not "missing hooks".
        #[test]
        fn a_replica_given_only_its_restore_hook_is_clean() {
            let lib = Library::builtin().expect("builtin");
            let fs = ClusterDefaults {
                default_volumes_to_fs_backup: true,
            };
            let d = detect::decide_assessed(&pod(Annotations::new()), &lib, fs, replica);
            assert!(d.add.contains_key(backup_method::BACKUP_VOLUMES_EXCLUDES));
            let f = check_pod_assessed(&pod(d.add.clone()), &lib, fs, replica);
            assert!(f.is_empty(), "{f:#?}");
            // With the backup hook keys of a primary gone, it is missing them.
            let mut primary = detect::decide_assessed(&pod(Annotations::new()), &lib, fs, fine).add;
            primary.retain(|k, _| !velero::is_backup_hook_key(k));
            let f = check_pod_assessed(&pod(primary), &lib, fs, fine);
            assert!(rules_of(&f).contains(&rule::MISSING_HOOKS), "{f:#?}");
        }

        #[test]
        fn the_users_own_hooks_are_not_judged() {
            let lib = Library::builtin().expect("builtin");
            let t = lib.get("postgres").expect("postgres");
            let mut a = injected(t.annotations("db"));
            a.insert(
                "pre.hook.backup.velero.io/command".into(),
                r#"["/bin/sh","-c","my own"]"#.into(),
            );
            let f = check_pod_assessed(&pod(a), &lib, ClusterDefaults::default(), no_login);
            let ours: Vec<&Finding> = f
                .iter()
                .filter(|f| f.rule_id == rule::HOOKS_CANNOT_WORK)
                .collect();
            assert_eq!(ours.len(), 1, "{f:#?}");
            assert_eq!(ours[0].key, "post.hook.restore.velero.io/command");
            assert!(
                ours[0].message.contains("the postgres restore hook in"),
                "{}",
                ours[0].message
            );
            assert!(ours[0].message.contains("Fix:"), "{}", ours[0].message);
        }

        #[test]
        fn a_dump_mode_problem_is_a_finding_only_on_a_pod_in_dump_mode() {
            let lib = Library::builtin().expect("builtin");
            let t = lib.get("postgres").expect("postgres");
            let snapshot = pod(injected(t.annotations("db")));
            let f = check_pod_assessed(&snapshot, &lib, ClusterDefaults::default(), no_dump);
            assert!(f.is_empty(), "{f:#?}");
            let dump = pod(injected(t.dump_annotations("db").expect("dump mode")));
            let f = check_pod_assessed(&dump, &lib, ClusterDefaults::default(), no_dump);
            assert!(rules_of(&f).contains(&rule::HOOKS_CANNOT_WORK), "{f:#?}");
        }
    }
}
