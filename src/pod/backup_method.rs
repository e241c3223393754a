//! How Velero will copy a database's data volume — an atomic snapshot or a file-by-file
//! file-system backup (kopia) — read from the pod as Velero reads it. The hooks a database needs
//! depend on it: a CHECKPOINT or a short lock makes a snapshot consistent, never a live file copy.
//!
//! Velero decides per volume: with the Backup's `defaultVolumesToFsBackup` false, volumes listed
//! in `backup.velero.io/backup-volumes` go to file-system backup; with it true, every volume not
//! listed in `backup.velero.io/backup-volumes-excludes` does. Both lists are split on `,` with no
//! trimming (`"data, logs"` names `data` and `" logs"`). The webhook cannot read Velero's server
//! flags or the Backup, so the cluster's default is its own setting
//! (`--default-volumes-to-fs-backup`); a pod can force either answer with
//! `velero-hook-injector.io/backup-method`. Volume policies in `Backup.spec.resourcePolicy`
//! override the annotations and are invisible here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{PodSpec, Volume};

use crate::keys;

/// Velero's opt-in list for file-system backup (used when the default is snapshots).
pub const BACKUP_VOLUMES: &str = "backup.velero.io/backup-volumes";
/// Velero's opt-out list (used when the default is file-system backup).
pub const BACKUP_VOLUMES_EXCLUDES: &str = "backup.velero.io/backup-volumes-excludes";

/// How a pod's data reaches the backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// A volume snapshot (CSI or a cloud provider's), atomic per volume.
    Snapshot,
    /// Velero's file-system backup: the node agent copies the files one by one while the pod runs.
    FsBackup,
}

impl Method {
    /// The spelling of `velero-hook-injector.io/backup-method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Snapshot => "snapshot",
            Method::FsBackup => "fs-backup",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "snapshot" => Some(Method::Snapshot),
            "fs-backup" => Some(Method::FsBackup),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the webhook assumes about the cluster's Backups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterDefaults {
    /// Backups are taken with `defaultVolumesToFsBackup: true` (`velero install
    /// --default-volumes-to-fs-backup`, or set on each Backup or Schedule).
    pub default_volumes_to_fs_backup: bool,
}

/// The method a pod's data volumes get, and why: the sentence the warnings print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupMethod {
    /// The method the hooks are chosen for.
    pub method: Method,
    /// Why, in words a user can check against the pod (names the annotation or setting).
    pub reason: String,
    /// The container's data volumes Velero copies file by file (empty for a forced method).
    pub fs_volumes: Vec<String>,
    /// A problem with the pod's own settings, with the fix; `None` when there is none.
    pub problem: Option<String>,
}

/// Velero's list annotations: split on `,`, no trimming, as Velero does.
fn listed<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Vec<&'a str> {
    annotations
        .get(key)
        .map(|v| v.split(',').collect())
        .unwrap_or_default()
}

/// Velero's file-system backup skips these volume types whatever the annotations say.
fn fs_backup_copies(v: &Volume) -> bool {
    v.host_path.is_none()
        && v.secret.is_none()
        && v.config_map.is_none()
        && v.projected.is_none()
        && v.downward_api.is_none()
        && !v.name.starts_with("default-token")
}

/// The method for the database container's `data_volumes` (the volumes it mounts that hold
/// data). Pure.
pub fn backup_method(
    annotations: &BTreeMap<String, String>,
    spec: &PodSpec,
    data_volumes: &[&str],
    defaults: ClusterDefaults,
) -> BackupMethod {
    let forced = annotations.get(keys::BACKUP_METHOD);
    let mut problem = None;
    if let Some(v) = forced {
        match Method::parse(v) {
            Some(method) => {
                return BackupMethod {
                    method,
                    reason: format!("forced by annotation {}", keys::BACKUP_METHOD),
                    fs_volumes: Vec::new(),
                    problem: None,
                };
            }
            None => {
                problem = Some(format!(
                    "annotation {}: {v:?} is neither \"snapshot\" nor \"fs-backup\", so it is ignored and the method is read from Velero's annotations. Fix: write one of those two values or remove the annotation",
                    keys::BACKUP_METHOD
                ));
            }
        }
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let copied = |name: &str| {
        volumes
            .iter()
            .any(|v| v.name == name && fs_backup_copies(v))
    };
    let (key, fs_volumes): (&str, Vec<String>) = if defaults.default_volumes_to_fs_backup {
        let excluded = listed(annotations, BACKUP_VOLUMES_EXCLUDES);
        (
            BACKUP_VOLUMES_EXCLUDES,
            data_volumes
                .iter()
                .filter(|v| !excluded.contains(v) && copied(v))
                .map(|v| (*v).to_owned())
                .collect(),
        )
    } else {
        let opted = listed(annotations, BACKUP_VOLUMES);
        (
            BACKUP_VOLUMES,
            data_volumes
                .iter()
                .filter(|v| opted.contains(v) && copied(v))
                .map(|v| (*v).to_owned())
                .collect(),
        )
    };
    if problem.is_none() {
        problem = near_misses(annotations, key, data_volumes);
    }
    let quoted = |v: &[String]| {
        v.iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (method, reason) = match (defaults.default_volumes_to_fs_backup, fs_volumes.is_empty()) {
        (false, false) => (
            Method::FsBackup,
            format!(
                "data volume {} is listed in {BACKUP_VOLUMES}",
                quoted(&fs_volumes)
            ),
        ),
        (false, true) => (
            Method::Snapshot,
            format!(
                "no data volume is listed in {BACKUP_VOLUMES} and the webhook's default is snapshots (--default-volumes-to-fs-backup is off)"
            ),
        ),
        (true, false) => (
            Method::FsBackup,
            format!(
                "the cluster default is file-system backup (--default-volumes-to-fs-backup) and data volume {} is not in {BACKUP_VOLUMES_EXCLUDES}",
                quoted(&fs_volumes)
            ),
        ),
        (true, true) => (
            Method::Snapshot,
            format!("every data volume is listed in {BACKUP_VOLUMES_EXCLUDES}"),
        ),
    };
    BackupMethod {
        method,
        reason,
        fs_volumes,
        problem,
    }
}

/// Name of the volume dump mode writes to (added as an emptyDir unless the pod has one).
pub const DUMP_VOLUME: &str = "vhi-dump";
/// Where the dump-mode hooks expect it in the database container.
pub const DUMP_MOUNT_PATH: &str = "/vhi-dump";

/// What dump mode needs from a pod: Velero must copy the dump volume and not the live data
/// volumes. Only additions: a user's own `backup.velero.io/*` value is never rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpPlan {
    /// Velero annotations to add (absent from the pod).
    pub add: BTreeMap<String, String>,
    /// The pod has no volume named [`DUMP_VOLUME`]: add an emptyDir.
    pub add_volume: bool,
    /// The container does not mount it: mount it at [`DUMP_MOUNT_PATH`].
    pub add_mount: bool,
}

/// The pod-spec side of dump mode, for the patch: which container gets the mount and whether
/// the volume and the mount must be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpVolume {
    /// Index of the database container in `spec.containers`.
    pub container_index: usize,
    /// Add the emptyDir volume.
    pub add_volume: bool,
    /// Add the mount to the container.
    pub add_mount: bool,
}

/// Plans dump mode for the container mounting `data_volumes`, or says why the pod's own
/// settings rule it out and how to allow it. Pure.
pub fn plan_dump(
    annotations: &BTreeMap<String, String>,
    spec: &PodSpec,
    container: &k8s_openapi::api::core::v1::Container,
    data_volumes: &[&str],
    defaults: ClusterDefaults,
) -> Result<DumpPlan, String> {
    let existing = spec
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.name == DUMP_VOLUME);
    if existing.is_some_and(|v| !fs_backup_copies(v)) {
        return Err(format!(
            "the pod's volume {DUMP_VOLUME:?} is of a type file-system backup never copies (hostPath, secret, configMap, projected, downwardAPI); use a PVC or an emptyDir"
        ));
    }
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    let mounted = mounts.iter().find(|m| m.name == DUMP_VOLUME);
    if let Some(m) = mounted.filter(|m| m.mount_path != DUMP_MOUNT_PATH) {
        return Err(format!(
            "container {:?} mounts {DUMP_VOLUME:?} at {:?}, the dump hooks write to {DUMP_MOUNT_PATH}; mount it there",
            container.name, m.mount_path
        ));
    }
    if mounted.is_none() && mounts.iter().any(|m| m.mount_path == DUMP_MOUNT_PATH) {
        return Err(format!(
            "container {:?} already mounts another volume at {DUMP_MOUNT_PATH}, where the dump volume goes",
            container.name
        ));
    }
    let add = plan_volumes(annotations, data_volumes, defaults, Copy::Dump)?;
    Ok(DumpPlan {
        add,
        add_volume: existing.is_none(),
        add_mount: mounted.is_none(),
    })
}

/// Plans file-system backup for a replica under dump mode's rules: it is not dumped (its
/// primary's dump is the database's backup), and its live data volumes are left out of the
/// file-system backup exactly as a dumping primary's are. Returns the Velero annotations to add
/// (absent from the pod), or why the pod's own settings rule that out and how to allow it. Pure.
pub fn plan_replica(
    annotations: &BTreeMap<String, String>,
    data_volumes: &[&str],
    defaults: ClusterDefaults,
) -> Result<BTreeMap<String, String>, String> {
    plan_volumes(annotations, data_volumes, defaults, Copy::Nothing)
}

/// What Velero's file-system backup copies of the database container instead of its live data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Copy {
    /// The dump volume (a dumping primary).
    Dump,
    /// Nothing (a replica: the primary's dump is the backup).
    Nothing,
}

/// The Velero annotations that keep `data_volumes` out of the file-system backup (and, with
/// [`Copy::Dump`], put the dump volume in), or why the pod's own annotations rule that out: the
/// webhook adds a missing annotation, never rewrites one.
fn plan_volumes(
    annotations: &BTreeMap<String, String>,
    data_volumes: &[&str],
    defaults: ClusterDefaults,
    copy: Copy,
) -> Result<BTreeMap<String, String>, String> {
    let mut add = BTreeMap::new();
    let instead = match copy {
        Copy::Dump => {
            "the dump replaces the live copy; a restore loads it into the freshly initialised database"
        }
        Copy::Nothing => {
            "a replica is not copied: after a restore it starts empty and clones its restored primary"
        }
    };
    if defaults.default_volumes_to_fs_backup {
        match annotations.get(BACKUP_VOLUMES_EXCLUDES) {
            None => {
                add.insert(BACKUP_VOLUMES_EXCLUDES.to_owned(), data_volumes.join(","));
            }
            Some(_) => {
                let excluded = listed(annotations, BACKUP_VOLUMES_EXCLUDES);
                if copy == Copy::Dump && excluded.contains(&DUMP_VOLUME) {
                    return Err(format!(
                        "your {BACKUP_VOLUMES_EXCLUDES} lists {DUMP_VOLUME:?}, so Velero would not copy the dump. Fix: remove it from that list"
                    ));
                }
                let live: Vec<&str> = data_volumes
                    .iter()
                    .filter(|v| !excluded.contains(v))
                    .copied()
                    .collect();
                if !live.is_empty() {
                    return Err(format!(
                        "your {BACKUP_VOLUMES_EXCLUDES} does not list data volume {}, so Velero copies the live data directory file by file, and the webhook never rewrites your annotation. Fix: add {} to it ({instead})",
                        live.join(", "),
                        live.join(",")
                    ));
                }
            }
        }
    } else {
        match annotations.get(BACKUP_VOLUMES) {
            None => {
                if copy == Copy::Dump {
                    add.insert(BACKUP_VOLUMES.to_owned(), DUMP_VOLUME.to_owned());
                }
            }
            Some(v) => {
                let opted = listed(annotations, BACKUP_VOLUMES);
                let live: Vec<&str> = data_volumes
                    .iter()
                    .filter(|d| opted.contains(d))
                    .copied()
                    .collect();
                if !live.is_empty() {
                    let mut fixed: Vec<&str> = opted
                        .iter()
                        .filter(|o| !live.contains(o))
                        .copied()
                        .collect();
                    if copy == Copy::Dump && !fixed.contains(&DUMP_VOLUME) {
                        fixed.push(DUMP_VOLUME);
                    }
                    let fix = if fixed.is_empty() {
                        format!("remove {BACKUP_VOLUMES}")
                    } else {
                        format!("write {BACKUP_VOLUMES}: {:?}", fixed.join(","))
                    };
                    return Err(format!(
                        "your {BACKUP_VOLUMES} ({v:?}) lists data volume {}, so Velero copies the live data directory file by file, and the webhook never rewrites your annotation. Fix: {fix} and {}: fs-backup ({instead})",
                        live.join(", "),
                        keys::BACKUP_METHOD
                    ));
                }
                if copy == Copy::Dump && !opted.contains(&DUMP_VOLUME) {
                    return Err(format!(
                        "your {BACKUP_VOLUMES} ({v:?}) does not list {DUMP_VOLUME:?}, so Velero would not copy the dump. Fix: add it"
                    ));
                }
            }
        }
    }
    Ok(add)
}

/// An entry of Velero's list that names a data volume only once trimmed: Velero does not trim,
/// so the volume is silently not matched.
fn near_misses(
    annotations: &BTreeMap<String, String>,
    key: &str,
    data_volumes: &[&str],
) -> Option<String> {
    let bad: Vec<&str> = listed(annotations, key)
        .into_iter()
        .filter(|e| e.trim() != *e && data_volumes.contains(&e.trim()))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let fixed: Vec<&str> = listed(annotations, key)
        .into_iter()
        .map(str::trim)
        .collect();
    Some(format!(
        "annotation {key}: {:?} has blanks around a volume name, and Velero does not trim them, so it matches no volume. Fix: write {:?}",
        bad.join(","),
        fixed.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> PodSpec {
        serde_json::from_value(json!({
            "containers": [{"name": "db", "image": "postgres:16",
                "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "wal", "mountPath": "/w"}, {"name": "host", "mountPath": "/h"}]}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                {"name": "wal", "persistentVolumeClaim": {"claimName": "w"}},
                {"name": "host", "hostPath": {"path": "/srv"}}
            ]
        }))
        .expect("spec")
    }

    fn method(ann: &[(&str, &str)], fs_default: bool, data: &[&str]) -> BackupMethod {
        let ann: BTreeMap<String, String> = ann
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let s = spec();
        backup_method(
            &ann,
            &s,
            data,
            ClusterDefaults {
                default_volumes_to_fs_backup: fs_default,
            },
        )
    }

    #[test]
    fn opt_in_list_is_read_only_when_the_default_is_snapshots() {
        let m = method(&[(BACKUP_VOLUMES, "logs,data")], false, &["data"]);
        assert_eq!(m.method, Method::FsBackup);
        assert_eq!(m.fs_volumes, ["data"]);
        assert!(
            m.reason
                .contains("\"data\" is listed in backup.velero.io/backup-volumes")
        );
        let m = method(&[], false, &["data"]);
        assert_eq!(m.method, Method::Snapshot);
        assert!(m.reason.contains("default is snapshots"), "{}", m.reason);
        // Velero ignores the excludes list when the default is snapshots (F3).
        let m = method(&[(BACKUP_VOLUMES_EXCLUDES, "data")], false, &["data"]);
        assert_eq!(m.method, Method::Snapshot);
    }

    #[test]
    fn with_the_fs_backup_default_everything_not_excluded_is_copied() {
        let m = method(&[], true, &["data"]);
        assert_eq!(m.method, Method::FsBackup);
        assert!(
            m.reason.contains("--default-volumes-to-fs-backup"),
            "{}",
            m.reason
        );
        let m = method(&[(BACKUP_VOLUMES_EXCLUDES, "data")], true, &["data"]);
        assert_eq!(m.method, Method::Snapshot);
        assert!(m.reason.contains("backup-volumes-excludes"), "{}", m.reason);
        // The opt-in list means nothing when the default is file-system backup.
        let m = method(&[(BACKUP_VOLUMES, "other")], true, &["data"]);
        assert_eq!(m.method, Method::FsBackup);
        // One data volume still copied file by file is enough to make the copy non-atomic.
        let m = method(&[(BACKUP_VOLUMES_EXCLUDES, "data")], true, &["data", "wal"]);
        assert_eq!(
            (m.method, m.fs_volumes.as_slice()),
            (Method::FsBackup, &["wal".to_owned()][..])
        );
    }

    #[test]
    fn lists_are_split_without_trimming_and_near_misses_are_explained() {
        let m = method(&[(BACKUP_VOLUMES, "logs, data")], false, &["data"]);
        assert_eq!(
            m.method,
            Method::Snapshot,
            "\" data\" is not \"data\" to Velero"
        );
        let p = m.problem.expect("the blank is reported");
        assert!(p.contains("Fix: write \"logs,data\""), "{p}");
        let m = method(&[(BACKUP_VOLUMES_EXCLUDES, "data ")], true, &["data"]);
        assert_eq!(m.method, Method::FsBackup);
        assert!(m.problem.is_some());
        assert!(
            method(&[(BACKUP_VOLUMES, "logs,data")], false, &["data"])
                .problem
                .is_none()
        );
    }

    #[test]
    fn host_path_volumes_are_never_copied_by_fs_backup() {
        let m = method(&[(BACKUP_VOLUMES, "host")], false, &["host"]);
        assert_eq!(m.method, Method::Snapshot);
        assert_eq!(method(&[], true, &["host"]).method, Method::Snapshot);
    }

    fn plan(ann: &[(&str, &str)], fs_default: bool) -> Result<DumpPlan, String> {
        let ann: BTreeMap<String, String> = ann
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let s = spec();
        plan_dump(
            &ann,
            &s,
            &s.containers[0],
            &["data", "wal"],
            ClusterDefaults {
                default_volumes_to_fs_backup: fs_default,
            },
        )
    }

    #[test]
    fn dump_mode_only_adds_velero_annotations_and_never_rewrites_them() {
        // Fs-backup default, no excludes: the live data volumes are excluded by an addition.
        let p = plan(&[], true).expect("dump mode");
        assert_eq!(p.add[BACKUP_VOLUMES_EXCLUDES], "data,wal");
        assert!(p.add_volume && p.add_mount);
        // Snapshot default, forced fs-backup, no list: the dump volume is opted in.
        let p = plan(&[], false).expect("dump mode");
        assert_eq!(p.add[BACKUP_VOLUMES], DUMP_VOLUME);
        // The user's own list already right: nothing to add.
        let p = plan(&[(BACKUP_VOLUMES, "vhi-dump")], false).expect("dump mode");
        assert!(p.add.is_empty());
        let p = plan(&[(BACKUP_VOLUMES_EXCLUDES, "wal,data")], true).expect("dump mode");
        assert!(p.add.is_empty());
        // The user's list rules it out: the reason names the fix.
        let e = plan(&[(BACKUP_VOLUMES, "data,logs")], false).expect_err("user lists data");
        assert!(e.contains("never rewrites"), "{e}");
        assert!(e.contains("\"logs,vhi-dump\""), "{e}");
        let e = plan(&[(BACKUP_VOLUMES, "logs")], false).expect_err("dump not listed");
        assert!(e.contains("does not list \"vhi-dump\""), "{e}");
        let e = plan(&[(BACKUP_VOLUMES_EXCLUDES, "data")], true).expect_err("wal copied live");
        assert!(e.contains("Fix: add wal"), "{e}");
        let e = plan(&[(BACKUP_VOLUMES_EXCLUDES, "data,wal,vhi-dump")], true)
            .expect_err("dump excluded");
        assert!(e.contains("remove it"), "{e}");
    }

    #[test]
    fn dump_mode_reuses_the_pods_own_dump_volume_at_the_expected_path_only() {
        let ann = BTreeMap::new();
        let mut s = spec();
        s.volumes.get_or_insert_default().push(
            serde_json::from_value(
                json!({"name": DUMP_VOLUME, "persistentVolumeClaim": {"claimName": "dumps"}}),
            )
            .expect("volume"),
        );
        let defaults = ClusterDefaults {
            default_volumes_to_fs_backup: true,
        };
        let p = plan_dump(&ann, &s, &s.containers[0], &["data"], defaults).expect("reused");
        assert!(!p.add_volume && p.add_mount);
        s.containers[0].volume_mounts.get_or_insert_default().push(
            serde_json::from_value(json!({"name": DUMP_VOLUME, "mountPath": "/backup"}))
                .expect("mount"),
        );
        let e = plan_dump(&ann, &s, &s.containers[0], &["data"], defaults).expect_err("path");
        assert!(e.contains("mount it there"), "{e}");
    }

    #[test]
    fn the_pod_annotation_forces_either_method_and_a_bad_value_is_reported() {
        let m = method(&[(keys::BACKUP_METHOD, "snapshot")], true, &["data"]);
        assert_eq!(m.method, Method::Snapshot);
        assert!(m.reason.contains("forced"), "{}", m.reason);
        let m = method(&[(keys::BACKUP_METHOD, "fs-backup")], false, &["data"]);
        assert_eq!(m.method, Method::FsBackup);
        let m = method(
            &[(keys::BACKUP_METHOD, "kopia"), (BACKUP_VOLUMES, "data")],
            false,
            &["data"],
        );
        assert_eq!(
            m.method,
            Method::FsBackup,
            "read from Velero's annotations instead"
        );
        assert!(m.problem.expect("reported").contains("\"kopia\""));
    }
}
