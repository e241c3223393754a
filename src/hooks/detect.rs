//! Decide, for one pod, which template to inject into which container, or why not.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};

use crate::hooks::template::{Library, Template};
use crate::hooks::velero;
use crate::keys;
use crate::pod::backup_method::{self, BackupMethod, ClusterDefaults, DumpVolume, Method};
use crate::pod::deployment::{self, Blocked, Deployment, Role, Subject};
use crate::pod::image::ImageRef;
use crate::pod::version;

/// What the webhook did with a pod; also the `outcome` label of the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Hooks were added.
    Injected,
    /// No container runs a known database image.
    NoDatabase,
    /// The pod opted out (`inject` set to a false spelling such as `"false"`, or `template: none`).
    OptedOut,
    /// The pod already carries our marker: a re-admission of a patched pod.
    AlreadyProcessed,
    /// Velero re-created this pod in a restore; it carries the backed-up annotations.
    Restored,
    /// Velero will not back this pod up (exclude label), so hooks would never run.
    Excluded,
    /// The user declared Velero hooks for every phase the template has.
    UserHooks,
    /// The database belongs to an operator with its own backups.
    OperatorManaged,
    /// A database was found but no template applies (version range, unknown forced name).
    NoTemplate,
    /// The database container mounts no data volume, so there is nothing to snapshot.
    NoDataVolume,
    /// A pod of a Job: database images there are clients, not servers.
    JobPod,
    /// A database was found, but none of the template's hooks can work in this pod as it is
    /// configured (no credentials in its env, TLS without client material…): none injected.
    HooksCannotWork,
    /// A control annotation was wrong (unknown container, `inject` neither true nor false).
    InvalidControl,
}

impl Outcome {
    /// Stable snake-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::NoDatabase => "no_database",
            Outcome::OptedOut => "opted_out",
            Outcome::AlreadyProcessed => "already_processed",
            Outcome::Restored => "restored",
            Outcome::Excluded => "excluded",
            Outcome::UserHooks => "user_hooks",
            Outcome::OperatorManaged => "operator_managed",
            Outcome::NoTemplate => "no_template",
            Outcome::NoDataVolume => "no_data_volume",
            Outcome::JobPod => "job_pod",
            Outcome::HooksCannotWork => "hooks_cannot_work",
            Outcome::InvalidControl => "invalid_control",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one pod: what to add, and what to tell the user.
#[derive(Clone, Debug)]
pub struct Decision {
    /// What happened.
    pub outcome: Outcome,
    /// Template chosen (or detected), if any.
    pub template: Option<String>,
    /// Container chosen, if any.
    pub container: Option<String>,
    /// Annotations to add; never contains a key the pod already has.
    pub add: BTreeMap<String, String>,
    /// Messages for the API client (kubectl prints admission warnings).
    pub warnings: Vec<String>,
    /// How Velero copies the chosen container's data, when a container was chosen.
    pub backup: Option<BackupMethod>,
    /// Dump mode: the volume and mount to add to the pod (with `add`'s annotations).
    pub dump_volume: Option<DumpVolume>,
    /// Why dump mode was not used although the data goes to file-system backup and the
    /// template has one (the pod's own settings rule it out).
    pub dump_refused: Option<String>,
    /// How the database in the chosen container is deployed (its role, and what cannot work),
    /// when a container was chosen.
    pub deployment: Option<Deployment>,
}

impl Decision {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            template: None,
            container: None,
            add: BTreeMap::new(),
            warnings: Vec::new(),
            backup: None,
            dump_volume: None,
            dump_refused: None,
            deployment: None,
        }
    }

    fn warn(mut self, msg: impl Into<String>) -> Self {
        self.warnings.push(msg.into());
        self
    }
}

/// A database operator: its name, and what to back its databases up with instead of our hooks.
#[derive(Clone, Copy, Debug)]
struct Operator {
    name: &'static str,
    instead: &'static str,
}

/// Labels set on their pods at creation by database operators that own the database (label,
/// value, operator). `None` as value means any value. `managed-by: Helm` is deliberately absent.
/// A label an operator adds later (MOCO's `moco.cybozu.com/role`) comes too late for admission
/// but is kept for the reconciler and `audit`.
const OPERATOR_LABELS: &[(&str, Option<&str>, Operator)] = &[
    (
        "cnpg.io/cluster",
        None,
        Operator {
            name: "CloudNativePG",
            instead: "its Backup and ScheduledBackup resources (Barman Cloud or volume snapshots)",
        },
    ),
    (
        "application",
        Some("spilo"),
        Operator {
            name: "Zalando postgres-operator",
            instead: "its WAL-G/WAL-E base backups and WAL archive",
        },
    ),
    (
        "postgres-operator.crunchydata.com/cluster",
        None,
        Operator {
            name: "Crunchy/Percona PGO",
            instead: "its pgBackRest backups (spec.backups)",
        },
    ),
    (
        "app.kubernetes.io/managed-by",
        Some("percona-xtradb-cluster-operator"),
        Operator {
            name: "Percona XtraDB Cluster operator",
            instead: "its backups (spec.backup)",
        },
    ),
    (
        "app.kubernetes.io/managed-by",
        Some("percona-server-operator"),
        Operator {
            name: "Percona Server operator",
            instead: "its backups (spec.backup)",
        },
    ),
    (
        "app.kubernetes.io/managed-by",
        Some("percona-server-mongodb-operator"),
        Operator {
            name: "Percona MongoDB operator",
            instead: "its backups (spec.backup, Percona Backup for MongoDB)",
        },
    ),
    (
        "app.kubernetes.io/managed-by",
        Some("kubedb.com"),
        Operator {
            name: "KubeDB",
            instead: "the backups KubeDB documents (KubeStash)",
        },
    ),
    (
        "app.kubernetes.io/managed-by",
        Some("mariadb-operator"),
        Operator {
            name: "mariadb-operator",
            instead: "its Backup resources",
        },
    ),
    (
        "strimzi.io/cluster",
        None,
        Operator {
            name: "Strimzi",
            instead: "Kafka's replication across brokers, and MirrorMaker 2 (Strimzi's KafkaMirrorMaker2 resource) for a copy of the topics in another cluster; the Kafka hooks would only run sync, and Strimzi owns the brokers' storage and rolling restarts",
        },
    ),
    (
        "common.k8s.elastic.co/type",
        None,
        Operator {
            name: "ECK",
            instead: "Elasticsearch snapshots to a snapshot repository",
        },
    ),
    (
        "cassandra.datastax.com/cluster",
        None,
        Operator {
            name: "K8ssandra/cass-operator",
            instead: "Medusa backups (MedusaBackup)",
        },
    ),
    (
        "clickhouse.altinity.com/chi",
        None,
        Operator {
            name: "Altinity ClickHouse operator",
            instead: "clickhouse-backup",
        },
    ),
    ("app.kubernetes.io/created-by", Some("moco"), MOCO),
    ("moco.cybozu.com/role", None, MOCO),
    (
        "planetscale.com/component",
        None,
        Operator {
            name: "Vitess",
            instead: "Vitess backups (vtbackup)",
        },
    ),
];

/// MOCO (cybozu-go/moco): its mysqld container has no credentials in its env (they are in a
/// file MOCO mounts), so our hooks could not log in.
const MOCO: Operator = Operator {
    name: "MOCO",
    instead: "MOCO's BackupPolicy (full dumps and binary logs to object storage, with point-in-time recovery); mysqld's env holds no credentials, so hooks could not log in",
};

/// The MongoDB Community operator, recognised by its pod's shape: it sets no label of its own
/// (only `app: <name>-svc`), but runs `mongodb-community-server` in container `mongod` beside
/// its `mongodb-agent` container.
const MONGODB_COMMUNITY: Operator = Operator {
    name: "MongoDB Community operator",
    instead: "a logical backup (mongodump with a user of the MongoDBCommunity resource, e.g. from a CronJob) or a CSI snapshot of data-volume without hooks (the journal is on that volume, so WiredTiger recovers the snapshot like a crash); the operator takes no backups itself and turns authentication on without putting credentials in the mongod container, so hooks could not log in",
};

/// Programs that mean a database image runs something other than a data-holding server: a
/// client, or `mongos` (a sharding router with no data of its own).
const CLIENT_TOOLS: &[&str] = &[
    "psql",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "pg_isready",
    "pg_basebackup",
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "redis-cli",
    "valkey-cli",
    "mongosh",
    "mongo",
    "mongos",
    "mongodump",
    "mongorestore",
    "cqlsh",
    "etcdctl",
];

/// A container that runs a recognised database image.
struct Candidate<'a> {
    container: &'a Container,
    image: ImageRef,
    template: &'a Template,
}

/// A control value on a pod that does not mean what it seems to: the key and a warning that says
/// what happens and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlProblem {
    /// The annotation or label.
    pub key: &'static str,
    /// What the webhook (or Velero) does with the value, and the fix.
    pub message: String,
}

/// How the pod's `velero-hook-injector.io/inject` annotation reads (Go's `strconv.ParseBool`,
/// like Velero's own booleans).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InjectValue<'a> {
    /// Absent or a true spelling: the default, inject.
    Default,
    /// A false spelling: the pod opts out.
    OptOut,
    /// Neither: injection is refused (see [`control_problems`]).
    Unrecognised(&'a str),
}

fn inject_value(annotations: &BTreeMap<String, String>) -> InjectValue<'_> {
    match annotations.get(keys::INJECT) {
        None => InjectValue::Default,
        Some(v) => match velero::parse_go_bool(v) {
            Some(true) => InjectValue::Default,
            Some(false) => InjectValue::OptOut,
            None => InjectValue::Unrecognised(v),
        },
    }
}

/// Control values on `pod` that do not mean what they seem to. Pure.
///
/// - `velero-hook-injector.io/inject` with a value that is neither true nor false (`"no"`,
///   `"off"`, `" false"`): the webhook injects nothing. Its only non-default meaning is opt-out,
///   so whoever wrote it most likely meant that, and injecting would lock a database its owner
///   asked us to leave alone; a pod left without hooks is visible (this warning, `audit`) and
///   fixed by a restart.
/// - `velero.io/exclude-from-backup` with a value other than exactly `"true"` that still reads as
///   true or as nothing (`"True"`, `"yes"`): Velero compares the label with `"true"` exactly, so it
///   backs the pod up (and we inject, to match); the user most likely meant to exclude it.
pub fn control_problems(pod: &Pod) -> Vec<ControlProblem> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let mut out = Vec::new();
    if let InjectValue::Unrecognised(v) = inject_value(annotations) {
        out.push(ControlProblem {
            key: keys::INJECT,
            message: format!(
                "velero-hook-injector: annotation {}: {v:?} is neither true nor false, so to be safe no hooks are injected into this pod (backup hooks lock the database). Fix: write \"false\" to opt the pod out, or \"true\" (or remove the annotation) to get hooks; accepted spellings: {}",
                keys::INJECT,
                velero::go_bool_spellings()
            ),
        });
    }
    if let Some(v) = labels.get(velero::EXCLUDE_LABEL) {
        if v != "true" && velero::parse_go_bool(v) != Some(false) {
            out.push(ControlProblem {
                key: velero::EXCLUDE_LABEL,
                message: format!(
                    "velero-hook-injector: label {}: {v:?} is not exactly \"true\", the only value Velero honours, so Velero backs this pod up and runs its hooks. Fix: write \"true\" to exclude the pod from backups, or remove the label",
                    velero::EXCLUDE_LABEL
                ),
            });
        }
    }
    out
}

/// Decides what to inject into `pod`, assuming Backups default to snapshots. Pure.
pub fn decide(pod: &Pod, library: &Library) -> Decision {
    decide_with(pod, library, ClusterDefaults::default())
}

/// Decides what to inject into `pod` under the cluster's Backup `defaults`. Pure: no I/O, no
/// clock.
pub fn decide_with(pod: &Pod, library: &Library, defaults: ClusterDefaults) -> Decision {
    decide_assessed(pod, library, defaults, deployment::assess)
}

/// How a deployment is assessed: [`deployment::assess`], or a stand-in in tests.
pub(crate) type Assess = fn(&Subject<'_>) -> Deployment;

/// [`decide_with`] with the deployment assessed by `assess`.
pub(crate) fn decide_assessed(
    pod: &Pod,
    library: &Library,
    defaults: ClusterDefaults,
    assess: Assess,
) -> Decision {
    let mut d = decide_hooks(pod, library, defaults, assess);
    let problems = control_problems(pod).into_iter().map(|p| p.message);
    d.warnings.splice(0..0, problems);
    d
}

fn decide_hooks(
    pod: &Pod,
    library: &Library,
    defaults: ClusterDefaults,
    assess: Assess,
) -> Decision {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);

    let inject = inject_value(annotations);
    if inject == InjectValue::OptOut {
        return Decision::new(Outcome::OptedOut);
    }
    if annotations.contains_key(keys::INJECTED) || annotations.contains_key(keys::SKIPPED) {
        return Decision::new(Outcome::AlreadyProcessed);
    }
    if labels.contains_key(velero::RESTORE_NAME_LABEL) {
        return Decision::new(Outcome::Restored);
    }
    if labels
        .get(velero::EXCLUDE_LABEL)
        .is_some_and(|v| v == "true")
    {
        return Decision::new(Outcome::Excluded);
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Decision::new(Outcome::NoDatabase);
    };
    let forced_template = annotations.get(keys::TEMPLATE).map(String::as_str);
    let forced_container = annotations.get(keys::CONTAINER).map(String::as_str);
    if forced_template == Some("none") {
        return Decision::new(Outcome::OptedOut);
    }
    let forced = forced_template.is_some() || forced_container.is_some();
    let forced_t = match forced_template {
        Some(name) => match library.get(name) {
            Some(t) => Some(t),
            None => {
                return Decision::new(Outcome::NoTemplate).warn(format!(
                    "velero-hook-injector: template {name:?} (annotation {}) does not exist; known: {}, or none",
                    keys::TEMPLATE,
                    library.names().join(", ")
                ));
            }
        },
        None => None,
    };

    let mut warnings = Vec::new();
    let candidates: Vec<Candidate<'_>> = spec
        .containers
        .iter()
        .filter_map(|c| {
            let raw = c.image.as_deref()?;
            let image = match ImageRef::parse(raw) {
                Ok(i) => i,
                Err(e) => {
                    warnings.push(format!("velero-hook-injector: container {:?}: {e}", c.name));
                    return None;
                }
            };
            let template = match forced_t {
                Some(t) if t.matches_image(&image) => t,
                Some(_) => return None,
                None => library.find_for_image(&image)?,
            };
            if runs_client_tool(c) {
                return None;
            }
            Some(Candidate {
                container: c,
                image,
                template,
            })
        })
        .collect();

    let chosen: (&Container, &Template, Option<ImageRef>) = if let Some(name) = forced_container {
        let Some(c) = spec.containers.iter().find(|c| c.name == name) else {
            return with(Decision::new(Outcome::InvalidControl), warnings).warn(format!(
                "velero-hook-injector: {} names {name:?}, which is not in spec.containers ({}); no hooks injected",
                keys::CONTAINER,
                container_names(spec)
            ));
        };
        let image = c.image.as_deref().and_then(|i| ImageRef::parse(i).ok());
        let template = forced_t.or_else(|| image.as_ref().and_then(|i| library.find_for_image(i)));
        match template {
            Some(t) => (c, t, image),
            None => {
                return with(Decision::new(Outcome::NoTemplate), warnings).warn(format!(
                    "velero-hook-injector: container {name:?} runs no known database image; set {} to one of: {}",
                    keys::TEMPLATE,
                    library.names().join(", ")
                ));
            }
        }
    } else if candidates.is_empty() {
        match (forced_t, spec.containers.as_slice()) {
            (Some(t), [only]) => (
                only,
                t,
                only.image.as_deref().and_then(|i| ImageRef::parse(i).ok()),
            ),
            (Some(t), _) => {
                return with(Decision::new(Outcome::InvalidControl), warnings).warn(format!(
                    "velero-hook-injector: template {:?} forced but no container runs a matching image; set {} to one of: {}",
                    t.name,
                    keys::CONTAINER,
                    container_names(spec)
                ));
            }
            (None, _) => return with(Decision::new(Outcome::NoDatabase), warnings),
        }
    } else {
        if owned_by_job(pod) && !forced {
            return with(Decision::new(Outcome::JobPod), warnings);
        }
        let best = pick(&candidates, spec);
        if candidates.len() > 1 {
            let names: Vec<&str> = candidates
                .iter()
                .map(|c| c.container.name.as_str())
                .collect();
            warnings.push(format!(
                "velero-hook-injector: several database containers ({}); hooks go to {:?} only (Velero runs one hook per phase per pod); set {} to choose",
                names.join(", "),
                best.container.name,
                keys::CONTAINER
            ));
        }
        (best.container, best.template, Some(best.image.clone()))
    };
    let (container, template, image) = chosen;

    let mut d = with(Decision::new(Outcome::Injected), warnings);
    d.template = Some(template.name.clone());
    d.container = Some(container.name.clone());
    d.deployment = Some(assess(&Subject {
        engine: &template.engine,
        image: image.as_ref(),
        container,
        labels,
    }));

    if !forced {
        if let Some(operator) = operator_of(labels, spec, image.as_ref()) {
            d.outcome = Outcome::OperatorManaged;
            d.add.insert(
                keys::SKIPPED.to_owned(),
                format!("operator-managed: {}", operator.name),
            );
            return d.warn(format!(
                "velero-hook-injector: {} manages this database; not injected. Back it up with {} (or set {} to inject anyway)",
                operator.name,
                operator.instead,
                keys::TEMPLATE
            ));
        }
    }
    if let (Some(range), Some(v)) = (
        template.matcher.versions.as_ref(),
        image.as_ref().and_then(version::from_image),
    ) {
        if !range.contains(&v) {
            d.outcome = Outcome::NoTemplate;
            return d.warn(format!(
                "velero-hook-injector: {} {v} is outside template {:?}'s supported versions ({range}); no hooks injected",
                template.engine, template.name
            ));
        }
    }
    if !forced && !mounts_data_volume(container, spec) {
        d.outcome = Outcome::NoDataVolume;
        return d.warn(format!(
            "velero-hook-injector: container {:?} mounts no persistent volume, nothing to snapshot; not injected (set {} to force)",
            container.name,
            keys::TEMPLATE
        ));
    }

    let data_volumes = data_volumes(container, spec);
    let method = backup_method::backup_method(annotations, spec, &data_volumes, defaults);
    if let Some(p) = &method.problem {
        d.warnings.push(format!("velero-hook-injector: {p}"));
    }
    let assessed = d.deployment.clone().unwrap_or_default();
    let backup_blocked = assessed.blocks(Blocked::Backup);
    let restore_blocked = assessed.blocks(Blocked::Restore);
    for p in &assessed.problems {
        let mut left_out = Vec::new();
        if p.blocks.contains(&Blocked::Backup) {
            left_out.push("backup hooks not injected");
        }
        if p.blocks.contains(&Blocked::Restore) {
            left_out.push("restore hook not injected");
        }
        if left_out.is_empty() && !p.blocks.is_empty() {
            // Only dump mode is ruled out: said where dump mode is refused, if it applies.
            continue;
        }
        let head = if p.advice {
            "note".to_owned()
        } else if left_out.is_empty() {
            "the hooks may fail".to_owned()
        } else {
            left_out.join(", ")
        };
        d.warnings.push(format!(
            "velero-hook-injector: container {:?}: {head}: {}",
            container.name, p.message
        ));
    }
    let strategy = format!("backup method {}: {}", method.method, method.reason);
    let mut template_warning = match (&template.fs_backup, method.method) {
        (Some(fs), Method::FsBackup) => Some(fs.warning.clone()),
        _ => template.warning.clone(),
    };
    let user_backup = annotations.keys().any(|k| velero::is_backup_hook_key(k));
    let user_restore = annotations.keys().any(|k| velero::is_restore_hook_key(k));
    let plan = match template.dump_annotations(&container.name) {
        Some(hooks) if method.method == Method::FsBackup => {
            let refused = dump_refusal(&assessed, user_backup || user_restore);
            let planned = match (refused, assessed.role) {
                (Some(why), _) => Err(why),
                (None, Role::Replica { .. }) => {
                    backup_method::plan_replica(annotations, &data_volumes, defaults)
                        .map(Plan::Replica)
                }
                (None, _) => {
                    backup_method::plan_dump(annotations, spec, container, &data_volumes, defaults)
                        .map(|plan| Plan::Dump(hooks, plan))
                }
            };
            match planned {
                Ok(plan) => plan,
                Err(why) => {
                    template_warning = Some(format!(
                        "dump mode is not used: {why}. {}",
                        template_warning.unwrap_or_default()
                    ));
                    d.dump_refused = Some(why);
                    Plan::Snapshot
                }
            }
        }
        _ => Plan::Snapshot,
    };
    d.backup = Some(method);

    if !matches!(plan, Plan::Dump(..)) && template.state_in_tmp && !tmp_writable(container) {
        d.warnings.push(format!(
            "velero-hook-injector: container {:?} has a read-only root filesystem and nothing writable at /tmp, where the {} hooks keep their state from pre to post ($TMPDIR, default /tmp): the pre hook will fail and the backup be PartiallyFailed. Fix: mount an emptyDir at /tmp in that container (or set TMPDIR to a writable directory)",
            container.name, template.name
        ));
    }
    let mut add = match &plan {
        Plan::Dump(hooks, plan) => {
            let mut add = hooks.clone();
            add.extend(plan.add.clone());
            let index = spec
                .containers
                .iter()
                .position(|c| c.name == container.name)
                .unwrap_or_default();
            d.dump_volume = Some(DumpVolume {
                container_index: index,
                add_volume: plan.add_volume,
                add_mount: plan.add_mount,
            });
            template_warning = Some(dump_mode_message(template, &data_volumes, plan));
            add
        }
        Plan::Replica(volumes) => {
            let mut add = template.annotations(&container.name);
            add.retain(|k, _| velero::is_restore_hook_key(k));
            add.extend(volumes.clone());
            template_warning = Some(replica_message(&data_volumes, volumes));
            add
        }
        Plan::Snapshot => template.annotations(&container.name),
    };
    if backup_blocked {
        add.retain(|k, _| !velero::is_backup_hook_key(k));
    }
    if restore_blocked {
        add.retain(|k, _| !velero::is_restore_hook_key(k));
    }
    if user_backup {
        add.retain(|k, _| !velero::is_backup_hook_key(k));
    }
    if user_restore {
        add.retain(|k, _| !velero::is_restore_hook_key(k));
    }
    let hook_key = |k: &String| velero::is_backup_hook_key(k) || velero::is_restore_hook_key(k);
    if !add.keys().any(hook_key) {
        d.dump_volume = None;
        if !(user_backup || user_restore) && (backup_blocked || restore_blocked) {
            d.outcome = Outcome::HooksCannotWork;
            return d.warn(format!(
                "velero-hook-injector: no {} hooks injected into container {:?}: none can work in this pod as it is configured (the other warnings say why and how to fix it); until then its backups are crash-consistent at best and nothing checks a restore",
                template.name, container.name
            ));
        }
        d.outcome = Outcome::UserHooks;
        return d
            .warn("velero-hook-injector: the pod declares its own Velero hooks; left unchanged");
    }
    if user_backup || user_restore {
        d.warnings.push(format!(
            "velero-hook-injector: kept the pod's own Velero {} hooks; added only {}",
            if user_backup { "backup" } else { "restore" },
            if user_backup { "restore" } else { "backup" }
        ));
    }
    if let InjectValue::Unrecognised(_) = inject {
        // The warning from control_problems says why and how to fix it.
        d.outcome = Outcome::InvalidControl;
        d.dump_volume = None;
        d.warnings
            .retain(|w| !w.starts_with("velero-hook-injector: kept the pod's own"));
        return d;
    }
    let what = match (
        add.keys().any(|k| velero::is_backup_hook_key(k)),
        add.keys().any(|k| velero::is_restore_hook_key(k)),
    ) {
        (false, true) if backup_blocked || matches!(plan, Plan::Replica(_)) => {
            format!("the {} restore hook only", template.name)
        }
        (true, false) if restore_blocked => format!("the {} backup hooks only", template.name),
        _ => format!("{} hooks", template.name),
    };
    add.insert(
        keys::INJECTED.to_owned(),
        format!("{}/{}", template.name, container.name),
    );
    d.add = add;
    let mut msg = format!(
        "velero-hook-injector: injected {what} into container {:?} ({strategy})",
        container.name
    );
    if deployment::knows(&template.engine) {
        msg.push_str(", role ");
        msg.push_str(&role_words(assessed.role));
    }
    if let Some(w) = template_warning {
        msg.push_str(": ");
        msg.push_str(&w);
    }
    d.warn(msg)
}

/// What file-system backup gets of the database container.
enum Plan {
    /// Dump mode: the dump hooks, and the volume and annotations it needs.
    Dump(BTreeMap<String, String>, backup_method::DumpPlan),
    /// A replica: no dump, its data volumes left out, only the restore hook (the annotations
    /// that leave them out).
    Replica(BTreeMap<String, String>),
    /// The template's snapshot hooks (under file-system backup, with its warning).
    Snapshot,
}

/// Why dump mode cannot be used for this pod, before its volumes are looked at.
fn dump_refusal(assessed: &Deployment, user_hooks: bool) -> Option<String> {
    if user_hooks {
        return Some("the pod declares its own Velero hooks".to_owned());
    }
    let dump_problem = assessed
        .problems
        .iter()
        .find(|p| p.blocks.contains(&Blocked::DumpMode));
    if let Some(p) = dump_problem {
        return Some(p.message.trim_end_matches('.').to_owned());
    }
    if let Role::Member { cluster } = assessed.role {
        return Some(format!(
            "this pod is a member of a {cluster} cluster, whose primary moves between pods at run time: which member writes is not known when the pod is created, and after a restore every member would load a dump at once; back these volumes up with CSI snapshots instead (set {}: snapshot and leave them out of the file-system backup), or take a logical backup of the database through its service",
            keys::BACKUP_METHOD
        ));
    }
    if matches!(assessed.role, Role::Replica { .. }) {
        return None;
    }
    if assessed.blocks(Blocked::Backup) {
        return Some(
            "the pre hook that writes the dump cannot log in to the database either (see the warning on the backup hooks)"
                .to_owned(),
        );
    }
    if assessed.blocks(Blocked::Restore) {
        return Some(
            "the restore hook that loads the dump cannot work in this pod (see the warning on the restore hook), so a restore would start the database empty"
                .to_owned(),
        );
    }
    None
}

/// The role as the injected message names it.
fn role_words(role: Role) -> String {
    match role {
        Role::Primary => "primary".to_owned(),
        Role::Replica { how } => format!("read replica ({how})"),
        Role::Member { cluster } => format!("member of a {cluster} cluster"),
    }
}

/// What a replica gets under file-system backup, for the warning.
fn replica_message(data_volumes: &[&str], added: &BTreeMap<String, String>) -> String {
    let added = if added.is_empty() {
        String::new()
    } else {
        let kv: Vec<String> = added.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
        format!(" Added {}.", kv.join(", "))
    };
    format!(
        "a replica under file-system backup is not dumped: its primary's dump is the database's backup, and a copy of the replica would only repeat it. Its data volume {} is left out of the file-system backup; after a restore the replica starts empty, clones the restored primary, and its restore hook checks that it replicates and holds data.{added} {}",
        data_volumes.join(", "),
        snapshot_path_note(data_volumes)
    )
}

/// What dump mode does to the pod and how a restore goes, for the warning.
fn dump_mode_message(
    template: &Template,
    data_volumes: &[&str],
    plan: &backup_method::DumpPlan,
) -> String {
    let volume = if plan.add_volume {
        format!(
            "an emptyDir volume {:?} added by the webhook (on the node's disk: a pod with an ephemeral-storage limit needs room for the dump; give the pod a PVC named {:?} to use that instead)",
            backup_method::DUMP_VOLUME,
            backup_method::DUMP_VOLUME
        )
    } else {
        format!("the pod's volume {:?}", backup_method::DUMP_VOLUME)
    };
    let added = if plan.add.is_empty() {
        String::new()
    } else {
        let kv: Vec<String> = plan
            .add
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        format!(" Added {}.", kv.join(", "))
    };
    format!(
        "dump mode: the pre hook writes a logical dump of every {} database to {volume}, mounted at {}, which Velero copies instead of the live data volume {}; the restore hook loads the dump once into the freshly initialised database, or, when the data volume came back with that database (a snapshot), loads nothing and checks it.{added} {} Loading a large dump can take longer than 10 minutes: Velero releases after v1.18.2 stop waiting for restore hooks after the server's --resource-timeout (10 minutes by default) and mark the restore PartiallyFailed, so on those raise the Velero server's --resource-timeout to the load's exec-timeout ({}).",
        template.engine,
        backup_method::DUMP_MOUNT_PATH,
        data_volumes.join(", "),
        snapshot_path_note(data_volumes),
        template
            .fs_backup
            .as_ref()
            .and_then(|f| f.dump.as_ref()?.post_restore.as_ref())
            .map_or_else(
                || "see the template".to_owned(),
                |h| h.exec_timeout.to_string()
            )
    )
}

/// What Velero does with a data volume left out of file-system backup, and the fix.
fn snapshot_path_note(data_volumes: &[&str]) -> String {
    format!(
        "Velero still snapshots {} wherever it can, unless the Backup or Schedule sets snapshotVolumes: false or a volume policy with action skip matches it; with Velero's CSI feature on and no VolumeSnapshotClass for the volume's CSI driver (NFS, SMB) every backup is PartiallyFailed (\"failed to get VolumeSnapshotClass\"), so set one of the two (`velero-hook-injector audit` reports Schedules that do not).",
        data_volumes.join(", ")
    )
}

fn with(mut d: Decision, warnings: Vec<String>) -> Decision {
    d.warnings = warnings;
    d
}

/// Prefers the candidate that mounts a data volume, then the first in spec order.
fn pick<'a, 'b>(candidates: &'b [Candidate<'a>], spec: &PodSpec) -> &'b Candidate<'a> {
    candidates
        .iter()
        .find(|c| mounts_data_volume(c.container, spec))
        .unwrap_or(&candidates[0])
}

fn container_names(spec: &PodSpec) -> String {
    spec.containers
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn runs_client_tool(c: &Container) -> bool {
    c.command
        .as_ref()
        .and_then(|cmd| cmd.first())
        .map(|prog| prog.rsplit('/').next().unwrap_or(prog))
        .is_some_and(|prog| {
            CLIENT_TOOLS.contains(&prog) || (prog.starts_with("kafka-") && prog.ends_with(".sh"))
        })
}

fn owned_by_job(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.kind == "Job"))
}

fn operator_of(
    labels: &BTreeMap<String, String>,
    spec: &PodSpec,
    image: Option<&ImageRef>,
) -> Option<Operator> {
    let labelled = OPERATOR_LABELS
        .iter()
        .find(|(key, value, _)| {
            labels
                .get(*key)
                .is_some_and(|v| value.is_none_or(|want| v == want))
        })
        .map(|(_, _, operator)| *operator);
    let mongodb_community = || {
        let community = image.is_some_and(|i| i.name() == "mongodb-community-server");
        let agent = spec.containers.iter().any(|c| c.name == "mongodb-agent");
        (community && agent).then_some(MONGODB_COMMUNITY)
    };
    labelled.or_else(mongodb_community)
}

/// Whether `c` can write to its `$TMPDIR`: its root filesystem is writable, or something is
/// mounted read-write at /tmp, or TMPDIR points elsewhere (assumed writable: its owner chose it).
fn tmp_writable(c: &Container) -> bool {
    let read_only_root = c
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    let tmp_mount = c
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == "/tmp" && !m.read_only.unwrap_or(false));
    let tmpdir = c.env.iter().flatten().any(|e| e.name == "TMPDIR");
    !read_only_root || tmp_mount || tmpdir
}

/// Volumes that carry no database data: configuration, credentials, scratch space.
fn is_data_volume(v: &Volume) -> bool {
    v.config_map.is_none()
        && v.secret.is_none()
        && v.projected.is_none()
        && v.downward_api.is_none()
        && v.empty_dir.is_none()
        && v.image.is_none()
}

fn mounts_data_volume(c: &Container, spec: &PodSpec) -> bool {
    !data_volumes(c, spec).is_empty()
}

/// Names of the data volumes `c` mounts, in mount order, each once.
fn data_volumes<'a>(c: &'a Container, spec: &PodSpec) -> Vec<&'a str> {
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let mut out: Vec<&str> = Vec::new();
    for m in c.volume_mounts.as_deref().unwrap_or_default() {
        let data = volumes
            .iter()
            .any(|v| v.name == m.name && is_data_volume(v));
        if data && !out.contains(&m.name.as_str()) {
            out.push(&m.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lib() -> Library {
        Library::builtin().expect("builtin")
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    /// A database pod with a data volume and, for MySQL and MariaDB (whose hooks need it), the
    /// root password from a Secret, as the charts give it.
    fn db_pod(image: &str) -> serde_json::Value {
        json!({
            "metadata": {"name": "db-0", "labels": {"app": "db"}},
            "spec": {
                "containers": [{"name": "db", "image": image, "env": root_password(image), "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
            }
        })
    }

    fn root_password(image: &str) -> serde_json::Value {
        let secret = json!({"secretKeyRef": {"name": "db", "key": "root-password"}});
        match image.split(':').next().unwrap_or_default() {
            "mariadb" => json!([{"name": "MARIADB_ROOT_PASSWORD", "valueFrom": secret}]),
            "mysql" => json!([{"name": "MYSQL_ROOT_PASSWORD", "valueFrom": secret}]),
            _ => json!([]),
        }
    }

    #[test]
    fn injects_into_a_database_with_a_volume() {
        let d = decide(&pod(db_pod("postgres:16")), &lib());
        assert_eq!(d.outcome, Outcome::Injected);
        assert_eq!(d.add[keys::INJECTED], "postgres/db");
        assert_eq!(d.add["pre.hook.backup.velero.io/container"], "db");
        assert!(d.warnings.iter().any(|w| w.contains("injected postgres")));
    }

    #[test]
    fn lookalike_images_are_not_databases() {
        let d = decide(
            &pod(db_pod("prometheuscommunity/postgres-exporter:v0.15.0")),
            &lib(),
        );
        assert_eq!(d.outcome, Outcome::NoDatabase);
        assert!(d.add.is_empty());
    }

    #[test]
    fn init_containers_are_ignored() {
        let mut p = db_pod("busybox:1.36");
        p["spec"]["initContainers"] =
            json!([{"name": "wait", "image": "postgres:16", "command": ["sh"]}]);
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::NoDatabase);
    }

    #[test]
    fn opt_out_and_none_template() {
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = json!({"velero-hook-injector.io/inject": "false"});
        assert_eq!(decide(&pod(p.clone()), &lib()).outcome, Outcome::OptedOut);
        p["metadata"]["annotations"] = json!({"velero-hook-injector.io/template": "none"});
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::OptedOut);
    }

    #[test]
    fn inject_values_that_are_neither_true_nor_false_inject_nothing() {
        for (value, outcome) in [
            ("FALSE", Outcome::OptedOut),
            ("0", Outcome::OptedOut),
            ("True", Outcome::Injected),
            ("no", Outcome::InvalidControl),
            ("off", Outcome::InvalidControl),
        ] {
            let mut p = db_pod("postgres:16");
            p["metadata"]["annotations"] = json!({"velero-hook-injector.io/inject": value});
            let p = pod(p);
            let d = decide(&p, &lib());
            assert_eq!(d.outcome, outcome, "{value:?}");
            let problems = control_problems(&p);
            assert_eq!(
                problems.len(),
                usize::from(outcome == Outcome::InvalidControl)
            );
            if outcome == Outcome::InvalidControl {
                assert!(d.add.is_empty(), "{value:?}: {:?}", d.add);
                assert_eq!(d.warnings, vec![problems[0].message.clone()]);
            }
        }
        // A pod without a database only hears about the value.
        let mut p = db_pod("busybox:1.36");
        p["metadata"]["annotations"] = json!({"velero-hook-injector.io/inject": "no"});
        let d = decide(&pod(p), &lib());
        assert_eq!(d.outcome, Outcome::NoDatabase);
        assert_eq!(d.warnings.len(), 1);
    }

    #[test]
    fn exclude_label_is_read_as_velero_reads_it() {
        for (value, outcome, warned) in [
            ("true", Outcome::Excluded, false),
            ("True", Outcome::Injected, true),
            ("yes", Outcome::Injected, true),
            ("false", Outcome::Injected, false),
            ("0", Outcome::Injected, false),
        ] {
            let mut p = db_pod("postgres:16");
            p["metadata"]["labels"]["velero.io/exclude-from-backup"] = json!(value);
            let p = pod(p);
            assert_eq!(decide(&p, &lib()).outcome, outcome, "{value:?}");
            assert_eq!(!control_problems(&p).is_empty(), warned, "{value:?}");
        }
    }

    #[test]
    fn user_backup_hooks_keep_both_phases_untouched() {
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = json!({"post.hook.backup.velero.io/command": "[\"true\"]"});
        let d = decide(&pod(p), &lib());
        assert!(
            d.add.keys().all(|k| !velero::is_backup_hook_key(k)),
            "{:?}",
            d.add
        );
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = json!({"hook.backup.velero.io/command": "[\"true\"]"});
        let d = decide(&pod(p), &lib());
        assert!(
            d.add.keys().all(|k| !velero::is_backup_hook_key(k)),
            "{:?}",
            d.add
        );
    }

    #[test]
    fn restored_and_excluded_pods_are_left_alone() {
        let mut p = db_pod("postgres:16");
        p["metadata"]["labels"]["velero.io/restore-name"] = json!("r1");
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::Restored);
        let mut p = db_pod("postgres:16");
        p["metadata"]["labels"]["velero.io/exclude-from-backup"] = json!("true");
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::Excluded);
    }

    #[test]
    fn operator_managed_is_skipped_with_reason_unless_forced() {
        let mut p = db_pod("ghcr.io/cloudnative-pg/postgresql:16.4");
        p["metadata"]["labels"]["cnpg.io/cluster"] = json!("pg");
        let d = decide(&pod(p.clone()), &lib());
        assert_eq!(d.outcome, Outcome::OperatorManaged);
        assert_eq!(d.add[keys::SKIPPED], "operator-managed: CloudNativePG");
        p["metadata"]["annotations"] = json!({"velero-hook-injector.io/template": "postgres"});
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::Injected);
        let mut p = db_pod("postgres:16");
        p["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("Helm");
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::Injected);
    }

    #[test]
    fn several_databases_pick_the_one_with_data_and_warn() {
        let p = json!({
            "metadata": {"name": "x"},
            "spec": {
                "containers": [
                    {"name": "cache", "image": "redis:7"},
                    {"name": "db", "image": "postgres:16", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
                ],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]
            }
        });
        let d = decide(&pod(p), &lib());
        assert_eq!(d.container.as_deref(), Some("db"));
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("several database containers"))
        );
    }

    #[test]
    fn container_annotation_must_exist() {
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = json!({"velero-hook-injector.io/container": "nope"});
        let d = decide(&pod(p), &lib());
        assert_eq!(d.outcome, Outcome::InvalidControl);
        assert!(
            d.warnings[0].contains("not in spec.containers (db)"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn unknown_forced_template_lists_the_known_ones() {
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = json!({"velero-hook-injector.io/template": "oracle"});
        let d = decide(&pod(p), &lib());
        assert_eq!(d.outcome, Outcome::NoTemplate);
        assert!(d.warnings[0].contains("postgres"));
    }

    #[test]
    fn version_outside_range_is_not_injected() {
        let d = decide(&pod(db_pod("mariadb:10.3")), &lib());
        assert_eq!(d.outcome, Outcome::NoTemplate);
        assert_eq!(
            decide(&pod(db_pod("mariadb:10.11")), &lib()).outcome,
            Outcome::Injected
        );
        assert_eq!(
            decide(&pod(db_pod("mariadb:latest")), &lib()).outcome,
            Outcome::Injected
        );
    }

    #[test]
    fn clients_jobs_and_volumeless_pods_are_skipped() {
        let mut p = db_pod("postgres:16");
        p["spec"]["containers"][0]["command"] = json!(["pg_dump", "-f", "/x"]);
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::NoDatabase);
        let mut p = db_pod("mongo:7.0");
        p["spec"]["containers"][0]["command"] = json!(["mongos", "--configdb", "cfg/cfg-0:27019"]);
        assert_eq!(
            decide(&pod(p), &lib()).outcome,
            Outcome::NoDatabase,
            "mongos holds no data"
        );
        let mut p = db_pod("postgres:16");
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]);
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::JobPod);
        let p = json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}});
        assert_eq!(decide(&pod(p), &lib()).outcome, Outcome::NoDataVolume);
    }

    #[test]
    fn the_warning_names_the_backup_method_and_its_limits() {
        let d = decide(&pod(db_pod("postgres:16")), &lib());
        let m = d.backup.expect("a container was chosen");
        assert_eq!(m.method, Method::Snapshot);
        assert!(
            d.warnings[0].contains("(backup method snapshot: "),
            "{:?}",
            d.warnings
        );
        assert!(d.warnings[0].contains("consistent with CSI snapshots"));
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = json!({"backup.velero.io/backup-volumes": "data"});
        let d = decide(&pod(p.clone()), &lib());
        assert_eq!(d.backup.as_ref().map(|m| m.method), Some(Method::FsBackup));
        assert!(
            d.warnings[0].contains("CHECKPOINT does NOT make a file-by-file copy consistent"),
            "{:?}",
            d.warnings
        );
        assert!(!d.add.keys().any(|k| k.starts_with("backup.velero.io/")));
        let defaults = ClusterDefaults {
            default_volumes_to_fs_backup: true,
        };
        let d = decide_with(&pod(db_pod("postgres:16")), &lib(), defaults);
        assert_eq!(d.backup.map(|m| m.method), Some(Method::FsBackup));
    }

    #[test]
    fn a_read_only_root_without_a_writable_tmp_is_warned_about() {
        let tmp_warning = |image: &str, container: serde_json::Value| {
            let mut p = db_pod(image);
            let c = &mut p["spec"]["containers"][0];
            for (k, v) in container.as_object().expect("object") {
                c[k] = v.clone();
            }
            let d = decide(&pod(p), &lib());
            assert_eq!(d.outcome, Outcome::Injected, "{:?}", d.warnings);
            d.warnings
                .iter()
                .any(|w| w.contains("read-only root filesystem"))
        };
        let ro = json!({"securityContext": {"readOnlyRootFilesystem": true}});
        // The redis helper keeps its state in /tmp: a read-only root breaks the pre hook.
        assert!(tmp_warning("redis:7", ro.clone()));
        assert!(tmp_warning("mariadb:11", ro.clone()));
        // postgres's CHECKPOINT writes nothing; writable roots, a /tmp mount or TMPDIR are fine.
        assert!(!tmp_warning("postgres:16", ro.clone()));
        assert!(!tmp_warning("redis:7", json!({})));
        let mut with_tmp = ro.clone();
        with_tmp["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}]);
        assert!(!tmp_warning("redis:7", with_tmp.clone()));
        with_tmp["volumeMounts"][1]["readOnly"] = json!(true);
        assert!(tmp_warning("redis:7", with_tmp));
        let mut tmpdir = ro;
        tmpdir["env"] = json!([{"name": "TMPDIR", "value": "/data/tmp"}]);
        assert!(!tmp_warning("redis:7", tmpdir));
    }

    #[test]
    fn already_processed_pods_get_nothing() {
        let d = decide(&pod(db_pod("postgres:16")), &lib());
        let mut p = db_pod("postgres:16");
        p["metadata"]["annotations"] = serde_json::to_value(&d.add).expect("map");
        let again = decide(&pod(p), &lib());
        assert_eq!(again.outcome, Outcome::AlreadyProcessed);
        assert!(again.add.is_empty());
    }

    mod assessed {
        //! The deployment assessment wired into the decision, with stand-in assessments.
        use super::*;
        use crate::pod::deployment::Problem;

        const FS: ClusterDefaults = ClusterDefaults {
            default_volumes_to_fs_backup: true,
        };

        fn no_login(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Primary,
                problems: vec![Problem::blocking(
                    &[Blocked::Backup, Blocked::Restore, Blocked::DumpMode],
                    "no credentials: set POSTGRES_PASSWORD",
                )],
            }
        }
        fn no_backup(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Primary,
                problems: vec![Problem::blocking(
                    &[Blocked::Backup],
                    "no CHECKPOINT right: grant pg_checkpoint",
                )],
            }
        }
        fn no_restore(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Primary,
                problems: vec![Problem::blocking(
                    &[Blocked::Restore],
                    "restore check blind",
                )],
            }
        }
        fn caution(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Primary,
                problems: vec![Problem::caution("the password comes from envFrom")],
            }
        }
        fn no_dump(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Primary,
                problems: vec![Problem::blocking(
                    &[Blocked::DumpMode],
                    "this image cannot dump",
                )],
            }
        }
        fn replica(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Replica {
                    how: "POSTGRES_REPLICATION_MODE=slave",
                },
                problems: Vec::new(),
            }
        }
        fn member(_: &Subject<'_>) -> Deployment {
            Deployment {
                role: Role::Member { cluster: "repmgr" },
                problems: Vec::new(),
            }
        }

        fn decide_as(p: serde_json::Value, defaults: ClusterDefaults, a: Assess) -> Decision {
            decide_assessed(&pod(p), &lib(), defaults, a)
        }

        fn phases(d: &Decision) -> (bool, bool) {
            (
                d.add.keys().any(|k| velero::is_backup_hook_key(k)),
                d.add.keys().any(|k| velero::is_restore_hook_key(k)),
            )
        }

        #[test]
        fn hooks_that_cannot_work_are_not_injected_and_the_pod_hears_why() {
            for defaults in [ClusterDefaults::default(), FS] {
                let d = decide_as(db_pod("postgres:16"), defaults, no_login);
                assert_eq!(d.outcome, Outcome::HooksCannotWork);
                assert_eq!(d.outcome.as_str(), "hooks_cannot_work");
                assert!(d.add.is_empty() && d.dump_volume.is_none(), "{:?}", d.add);
                let all = d.warnings.join("\n");
                assert!(
                    all.contains("velero-hook-injector: container \"db\": backup hooks not injected, restore hook not injected: no credentials: set POSTGRES_PASSWORD"),
                    "{all}"
                );
                assert!(
                    all.contains("no postgres hooks injected into container \"db\""),
                    "{all}"
                );
            }
        }

        #[test]
        fn a_pod_with_its_own_hooks_is_left_to_them_when_ours_cannot_work() {
            let mut p = db_pod("postgres:16");
            p["metadata"]["annotations"] =
                json!({"pre.hook.backup.velero.io/command": "[\"/bin/true\"]"});
            let d = decide_as(p, ClusterDefaults::default(), no_login);
            assert_eq!(d.outcome, Outcome::UserHooks, "{:?}", d.warnings);
            assert!(d.add.is_empty());
        }

        #[test]
        fn a_blocked_phase_leaves_the_other_injected() {
            let d = decide_as(db_pod("postgres:16"), ClusterDefaults::default(), no_backup);
            assert_eq!(d.outcome, Outcome::Injected);
            assert_eq!(phases(&d), (false, true));
            assert!(d.add.contains_key(keys::INJECTED));
            assert!(
                d.warnings
                    .iter()
                    .any(|w| w.contains("injected the postgres restore hook only")),
                "{:?}",
                d.warnings
            );
            // Dump mode needs its pre hook: refused, and said why.
            let d = decide_as(db_pod("postgres:16"), FS, no_backup);
            assert!(d.dump_volume.is_none());
            assert!(
                d.dump_refused
                    .as_deref()
                    .is_some_and(|w| w.contains("writes the dump"))
            );
            let d = decide_as(
                db_pod("postgres:16"),
                ClusterDefaults::default(),
                no_restore,
            );
            assert_eq!(phases(&d), (true, false));
            let d = decide_as(db_pod("postgres:16"), FS, no_restore);
            assert!(d.dump_volume.is_none(), "dump mode without its load hook");
            assert!(
                d.dump_refused
                    .as_deref()
                    .is_some_and(|w| w.contains("loads the dump"))
            );
        }

        #[test]
        fn a_caution_injects_everything_and_warns() {
            let d = decide_as(db_pod("postgres:16"), ClusterDefaults::default(), caution);
            assert_eq!(d.outcome, Outcome::Injected);
            assert_eq!(phases(&d), (true, true));
            assert!(
                d.warnings.iter().any(|w| w
                    == "velero-hook-injector: container \"db\": the hooks may fail: the password comes from envFrom"),
                "{:?}",
                d.warnings
            );
        }

        #[test]
        fn a_dump_mode_problem_refuses_dump_mode_only_under_file_system_backup() {
            let d = decide_as(db_pod("postgres:16"), FS, no_dump);
            assert!(d.dump_volume.is_none());
            assert_eq!(d.dump_refused.as_deref(), Some("this image cannot dump"));
            assert_eq!(phases(&d), (true, true));
            let said = d
                .warnings
                .iter()
                .filter(|w| w.contains("this image cannot dump"))
                .count();
            assert_eq!(said, 1, "said once: {:?}", d.warnings);
            let d = decide_as(db_pod("postgres:16"), ClusterDefaults::default(), no_dump);
            assert!(
                !d.warnings.iter().any(|w| w.contains("cannot dump")),
                "irrelevant to snapshots: {:?}",
                d.warnings
            );
        }

        #[test]
        fn a_replica_under_file_system_backup_gets_the_restore_hook_and_no_dump() {
            let d = decide_as(db_pod("postgres:16"), FS, replica);
            assert_eq!(d.outcome, Outcome::Injected);
            assert!(d.dump_volume.is_none() && d.dump_refused.is_none());
            assert_eq!(phases(&d), (false, true));
            assert_eq!(
                d.add
                    .get(backup_method::BACKUP_VOLUMES_EXCLUDES)
                    .map(String::as_str),
                Some("data"),
                "its live data stays out of the file-system backup"
            );
            assert_eq!(
                d.add,
                {
                    let mut want: BTreeMap<String, String> = lib()
                        .get("postgres")
                        .expect("postgres")
                        .annotations("db")
                        .into_iter()
                        .filter(|(k, _)| velero::is_restore_hook_key(k))
                        .collect();
                    want.insert(backup_method::BACKUP_VOLUMES_EXCLUDES.into(), "data".into());
                    want.insert(keys::INJECTED.into(), "postgres/db".into());
                    want
                },
                "the template's normal restore hook, not the dump loader"
            );
            let msg = d.warnings.last().expect("message");
            assert!(
                msg.contains("injected the postgres restore hook only"),
                "{msg}"
            );
            assert!(
                msg.contains("role read replica (POSTGRES_REPLICATION_MODE=slave)"),
                "{msg}"
            );
            assert!(msg.contains("is not dumped"), "{msg}");
            // The user's own list is never rewritten: one that leaves the data in is refused.
            let mut p = db_pod("postgres:16");
            p["metadata"]["annotations"] =
                json!({"backup.velero.io/backup-volumes-excludes": "logs"});
            let d = decide_as(p, FS, replica);
            assert!(
                d.dump_refused
                    .as_deref()
                    .is_some_and(|w| w.contains("add data to it"))
            );
            assert_eq!(
                phases(&d),
                (true, true),
                "snapshot hooks, with the fs-backup warning"
            );
            assert!(!d.add.contains_key(backup_method::BACKUP_VOLUMES_EXCLUDES));
            // One that already leaves it out is kept and nothing is added to it.
            let mut p = db_pod("postgres:16");
            p["metadata"]["annotations"] =
                json!({"backup.velero.io/backup-volumes-excludes": "data"});
            let d = decide_as(p, FS, replica);
            assert!(d.dump_refused.is_none());
            assert!(!d.add.contains_key(backup_method::BACKUP_VOLUMES_EXCLUDES));
            // In snapshot mode a replica gets the primary's hooks, and its role is named.
            let d = decide_as(db_pod("postgres:16"), ClusterDefaults::default(), replica);
            assert_eq!(phases(&d), (true, true));
            assert!(
                d.warnings
                    .last()
                    .is_some_and(|w| w.contains("role read replica"))
            );
        }

        #[test]
        fn a_cluster_member_never_gets_dump_mode() {
            let d = decide_as(db_pod("postgres:16"), FS, member);
            assert!(d.dump_volume.is_none());
            let why = d.dump_refused.clone().expect("refused");
            assert!(
                why.contains("repmgr") && why.contains("CSI snapshots"),
                "{why}"
            );
            assert_eq!(phases(&d), (true, true));
            let msg = d.warnings.last().expect("message");
            assert!(msg.contains("role member of a repmgr cluster"), "{msg}");
            assert!(msg.contains("dump mode is not used"), "{msg}");
        }

        #[test]
        fn a_primary_is_named_as_one_and_engines_without_facts_are_not() {
            let d = decide(&pod(db_pod("postgres:16")), &lib());
            assert!(
                d.warnings
                    .last()
                    .is_some_and(|w| w.contains(", role primary"))
            );
            let d = decide(&pod(db_pod("bitnami/kafka:3.7")), &lib());
            assert!(
                d.warnings.last().is_some_and(|w| !w.contains("role")),
                "{:?}",
                d.warnings
            );
        }
    }
}
