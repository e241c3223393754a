//! Policy modes: what the webhook does with a decision (inject, only warn, or enforce).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::hooks::detect::{Decision, Outcome};
use crate::hooks::velero;

/// Namespace annotation that sets the mode for pods in that namespace.
pub const MODE_ANNOTATION: &str = "velero-hook-injector.io/mode";
/// Pod annotation that admits a database pod without hooks in `enforce` mode; the value is the reason.
pub const EXCEPTION_ANNOTATION: &str = "velero-hook-injector.io/exception";

/// How the webhook acts on a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Add hooks (default).
    #[default]
    Inject,
    /// Change nothing; say what would be injected (warnings and audit annotations).
    Warn,
    /// Inject, and deny database pods that would be left without hooks.
    Enforce,
}

impl Mode {
    /// The spelling used in flags, annotations and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Inject => "inject",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown mode name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mode {0:?} is not one of inject, warn, enforce")]
pub struct ModeError(pub String);

impl FromStr for Mode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inject" => Ok(Mode::Inject),
            "warn" => Ok(Mode::Warn),
            "enforce" => Ok(Mode::Enforce),
            other => Err(ModeError(other.to_owned())),
        }
    }
}

/// What is known about a namespace's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceView {
    /// The namespace is known; its mode annotation value, if any.
    Known(Option<String>),
    /// The namespace cache cannot answer (not synced, API unreachable); the reason.
    Unknown(String),
}

/// Answers "what mode does namespace X ask for".
pub trait NamespaceLookup: Send + Sync {
    /// The view of `namespace`.
    fn lookup(&self, namespace: &str) -> NamespaceView;
}

/// A lookup with no Kubernetes API: every namespace follows the cluster mode.
pub struct NoNamespaces;

impl NamespaceLookup for NoNamespaces {
    fn lookup(&self, _namespace: &str) -> NamespaceView {
        NamespaceView::Known(None)
    }
}

/// The mode in force for one request, and what to tell the user about how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Mode applied.
    pub mode: Mode,
    /// True when the namespace policy could not be read and the webhook failed open.
    pub degraded: bool,
    /// Explanation for the response warnings, if any.
    pub warning: Option<String>,
}

/// Combines the cluster mode with the namespace's view. Fails open: when the namespace cannot be
/// read, the cluster mode applies but never denies (enforce is downgraded to inject).
pub fn effective_mode(cluster: Mode, view: &NamespaceView) -> Effective {
    match view {
        NamespaceView::Known(None) => Effective {
            mode: cluster,
            degraded: false,
            warning: None,
        },
        NamespaceView::Known(Some(value)) => match value.parse::<Mode>() {
            Ok(mode) => Effective {
                mode,
                degraded: false,
                warning: None,
            },
            Err(e) => Effective {
                mode: cluster,
                degraded: false,
                warning: Some(format!(
                    "velero-hook-injector: namespace annotation {MODE_ANNOTATION}: {e}; using the cluster mode {cluster}"
                )),
            },
        },
        NamespaceView::Unknown(reason) => {
            let mode = if cluster == Mode::Enforce {
                Mode::Inject
            } else {
                cluster
            };
            Effective {
                mode,
                degraded: true,
                warning: Some(format!(
                    "velero-hook-injector: namespace policy unavailable ({reason}); failed open with mode {mode}"
                )),
            }
        }
    }
}

/// The final answer for one pod.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// False only in enforce mode.
    pub allowed: bool,
    /// Annotations to add (empty in warn mode).
    pub add: BTreeMap<String, String>,
    /// Warnings for the API client.
    pub warnings: Vec<String>,
    /// Audit annotations for the API server's audit log.
    pub audit: BTreeMap<String, String>,
    /// Denial message (enforce only).
    pub denial: Option<String>,
    /// Dump mode's volume and mount to add with `add` (never in warn mode).
    pub dump_volume: Option<crate::pod::backup_method::DumpVolume>,
}

/// Applies `mode` to a detection decision.
pub fn apply(
    mode: Mode,
    decision: Decision,
    pod_annotations: Option<&BTreeMap<String, String>>,
) -> Verdict {
    let mut v = Verdict {
        allowed: true,
        ..Verdict::default()
    };
    match mode {
        Mode::Inject => {
            v.add = decision.add;
            v.dump_volume = decision.dump_volume;
            v.warnings = decision.warnings;
        }
        Mode::Warn => {
            v.warnings = decision
                .warnings
                .into_iter()
                .map(|w| {
                    w.replacen(
                        "velero-hook-injector: injected",
                        "velero-hook-injector (warn mode): would inject",
                        1,
                    )
                })
                .collect();
            if decision.outcome == Outcome::Injected {
                if let (Some(t), Some(c)) = (&decision.template, &decision.container) {
                    v.audit
                        .insert("would-inject".to_owned(), format!("{t}/{c}"));
                }
            } else if decision.outcome != Outcome::NoDatabase {
                v.audit.insert(
                    "would-skip".to_owned(),
                    decision.outcome.as_str().to_owned(),
                );
            }
        }
        Mode::Enforce => {
            let empty = BTreeMap::new();
            let annotations = pod_annotations.unwrap_or(&empty);
            let has_user_hooks = annotations.keys().any(|k| velero::is_backup_hook_key(k));
            let exception = annotations
                .get(EXCEPTION_ANNOTATION)
                .filter(|r| !r.trim().is_empty());
            let unprotected = matches!(
                decision.outcome,
                Outcome::NoTemplate | Outcome::InvalidControl | Outcome::HooksCannotWork
            );
            if unprotected && !has_user_hooks {
                if let Some(reason) = exception {
                    v.warnings = decision.warnings;
                    v.warnings.push(format!(
                        "velero-hook-injector (enforce): admitted without hooks by exception: {reason}"
                    ));
                    v.audit.insert("exception".to_owned(), reason.clone());
                } else {
                    v.allowed = false;
                    let why = decision.warnings.join("; ");
                    v.denial = Some(if decision.outcome == Outcome::HooksCannotWork {
                        format!(
                            "velero-hook-injector (enforce): this pod runs a database whose backup and restore hooks cannot work as the pod is configured, so it would be backed up without application-consistent hooks ({why}). \
                             Fix the pod as those messages say (then the hooks are injected), \
                             or add Velero hook annotations of your own that work in it (pre.hook.backup.velero.io/command as a JSON array, …/container, …/on-error, …/timeout), \
                             or admit it deliberately with the annotation {EXCEPTION_ANNOTATION}: \"<reason>\""
                        )
                    } else {
                        format!(
                            "velero-hook-injector (enforce): this pod runs a database that would be backed up without application-consistent hooks ({why}). \
                             Fix it by adding Velero hook annotations (pre.hook.backup.velero.io/command as a JSON array, …/container, …/on-error, …/timeout), \
                             or by setting velero-hook-injector.io/template to a template that fits, \
                             or admit it deliberately with the annotation {EXCEPTION_ANNOTATION}: \"<reason>\""
                        )
                    });
                    v.audit
                        .insert("denied".to_owned(), decision.outcome.as_str().to_owned());
                }
            } else {
                v.add = decision.add;
                v.dump_volume = decision.dump_volume;
                v.warnings = decision.warnings;
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            template: Some("mariadb".into()),
            container: Some("db".into()),
            add: BTreeMap::from([(
                "velero-hook-injector.io/injected".to_owned(),
                "mariadb/db".to_owned(),
            )]),
            warnings: vec![
                "velero-hook-injector: injected mariadb hooks into container \"db\"".into(),
            ],
            backup: None,
            dump_volume: None,
            dump_refused: None,
            deployment: None,
        }
    }

    #[test]
    fn namespace_annotation_overrides_cluster_mode() {
        let e = effective_mode(Mode::Inject, &NamespaceView::Known(Some("warn".into())));
        assert_eq!((e.mode, e.degraded), (Mode::Warn, false));
        let e = effective_mode(Mode::Warn, &NamespaceView::Known(Some("nonsense".into())));
        assert_eq!(e.mode, Mode::Warn);
        assert!(e.warning.as_deref().is_some_and(|w| w.contains("nonsense")));
    }

    #[test]
    fn unknown_namespace_fails_open_and_never_denies() {
        let e = effective_mode(
            Mode::Enforce,
            &NamespaceView::Unknown("cache not synced".into()),
        );
        assert_eq!((e.mode, e.degraded), (Mode::Inject, true));
        assert!(
            e.warning
                .as_deref()
                .is_some_and(|w| w.contains("cache not synced"))
        );
    }

    #[test]
    fn warn_mode_changes_nothing_and_says_what_it_would_do() {
        let v = apply(Mode::Warn, decision(Outcome::Injected), None);
        assert!(v.allowed && v.add.is_empty());
        assert_eq!(v.audit["would-inject"], "mariadb/db");
        assert!(v.warnings[0].contains("would inject"), "{:?}", v.warnings);
    }

    #[test]
    fn enforce_denies_unprotected_databases_with_a_fix() {
        let v = apply(Mode::Enforce, decision(Outcome::NoTemplate), None);
        assert!(!v.allowed);
        let msg = v.denial.expect("denial");
        assert!(
            msg.contains(EXCEPTION_ANNOTATION) && msg.contains("pre.hook.backup.velero.io/command"),
            "{msg}"
        );
    }

    #[test]
    fn enforce_admits_exceptions_user_hooks_and_injectable_pods() {
        let ex = BTreeMap::from([(
            EXCEPTION_ANNOTATION.to_owned(),
            "replica, backed up elsewhere".to_owned(),
        )]);
        assert!(apply(Mode::Enforce, decision(Outcome::NoTemplate), Some(&ex)).allowed);
        let blank = BTreeMap::from([(EXCEPTION_ANNOTATION.to_owned(), " ".to_owned())]);
        assert!(!apply(Mode::Enforce, decision(Outcome::NoTemplate), Some(&blank)).allowed);
        let hooks = BTreeMap::from([(
            "pre.hook.backup.velero.io/command".to_owned(),
            "[\"true\"]".to_owned(),
        )]);
        assert!(apply(Mode::Enforce, decision(Outcome::NoTemplate), Some(&hooks)).allowed);
        let v = apply(Mode::Enforce, decision(Outcome::Injected), None);
        assert!(v.allowed && !v.add.is_empty());
        assert!(apply(Mode::Enforce, decision(Outcome::NoDatabase), None).allowed);
    }

    #[test]
    fn enforce_denies_a_database_whose_hooks_cannot_work_and_says_why() {
        let mut d = decision(Outcome::HooksCannotWork);
        d.add.clear();
        d.warnings = vec![
            "velero-hook-injector: container \"db\": backup hooks not injected, restore hook not injected: no password in the env".into(),
        ];
        let v = apply(Mode::Enforce, d.clone(), None);
        assert!(!v.allowed && v.add.is_empty());
        let msg = v.denial.expect("denial");
        assert!(
            msg.contains("cannot work as the pod is configured"),
            "{msg}"
        );
        assert!(msg.contains("no password in the env"), "{msg}");
        assert!(msg.contains(EXCEPTION_ANNOTATION), "{msg}");
        assert_eq!(v.audit["denied"], "hooks_cannot_work");
        let v = apply(Mode::Warn, d.clone(), None);
        assert!(v.allowed);
        assert_eq!(v.audit["would-skip"], "hooks_cannot_work");
        assert!(apply(Mode::Inject, d, None).allowed);
    }
}
