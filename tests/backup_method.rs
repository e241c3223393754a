//! The backup method (snapshot or file-system backup) a pod gets, end to end: a real
//! kube-apiserver request through admission, and the `render` command line with the flag and
//! its environment variable.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};
use velero_hook_injector::admission::policy::{Mode, NoNamespaces};
use velero_hook_injector::admission::{self, Context};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::pod::backup_method::ClusterDefaults;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/pod-create-generatename-ephemeral-fsb.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// (warnings joined, patched pod annotations) for `review` under `fs_default`.
fn admit(review: &Value, fs_default: bool) -> (String, serde_json::Map<String, Value>) {
    let (w, pod) = admit_pod(review, fs_default);
    let ann = pod["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    (w, ann)
}

/// (warnings joined, the pod as the patch leaves it).
fn admit_pod(review: &Value, fs_default: bool) -> (String, Value) {
    let lib = Library::builtin().expect("library");
    let ctx = Context {
        library: &lib,
        cluster_mode: Mode::Inject,
        namespaces: &NoNamespaces,
        backup_defaults: ClusterDefaults {
            default_volumes_to_fs_backup: fs_default,
        },
    };
    let out =
        admission::review_with(&serde_json::to_vec(review).expect("ser"), &ctx).expect("answered");
    let resp: Value = serde_json::from_slice(&out.body).expect("json");
    let warnings = resp["response"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    let mut pod = review["request"]["object"].clone();
    if let Some(p) = resp["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
        json_patch::patch(&mut pod, &patch).expect("applies");
    }
    (warnings, pod)
}

/// The captured pod as a PostgreSQL pod (same volumes, annotations, security context).
fn postgres_fixture() -> Value {
    let mut r = fixture();
    r["request"]["object"]["spec"]["containers"][0]["image"] = json!("postgres:16");
    r["request"]["object"]["spec"]["containers"][0]["args"] = json!([]);
    r
}

#[test]
fn postgres_under_the_fs_backup_default_gets_dump_mode_by_additions_only() {
    let (warnings, pod) = admit_pod(&postgres_fixture(), true);
    assert!(
        warnings.contains("dump mode: the pre hook writes a logical dump"),
        "{warnings}"
    );
    // What Velero still does with the data volume, and the restore-time bound, with the fixes.
    for part in [
        "Velero still snapshots data",
        "snapshotVolumes: false",
        "volume policy with action skip",
        "failed to get VolumeSnapshotClass",
        "raise the Velero server's --resource-timeout to the load's exec-timeout (1h)",
    ] {
        assert!(warnings.contains(part), "{part:?} missing: {warnings}");
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(
        ann["backup.velero.io/backup-volumes"], "data",
        "the user's value is kept"
    );
    assert_eq!(
        ann["backup.velero.io/backup-volumes-excludes"], "data",
        "added"
    );
    assert!(
        ann["pre.hook.backup.velero.io/command"]
            .as_str()
            .is_some_and(|c| c.contains("pg_dumpall")),
        "{ann}"
    );
    assert!(
        ann["post.hook.restore.velero.io/command"]
            .as_str()
            .is_some_and(|c| c.contains("loaded dump"))
    );
    let spec = &pod["spec"];
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert_eq!(
        volumes.len(),
        4,
        "the three of the request and the dump volume"
    );
    assert_eq!(volumes[3], json!({"name": "vhi-dump", "emptyDir": {}}));
    let mounts = spec["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    assert_eq!(
        mounts.last(),
        Some(&json!({"name": "vhi-dump", "mountPath": "/vhi-dump"}))
    );
    assert_eq!(mounts.len(), 4);
}

#[test]
fn mysql_and_mariadb_under_the_fs_backup_default_get_dump_mode_too() {
    for (image, dump) in [("mariadb:10.11", "mariadb"), ("mysql:8.4", "mysql")] {
        let mut r = fixture();
        r["request"]["object"]["spec"]["containers"][0]["image"] = json!(image);
        r["request"]["object"]["spec"]["containers"][0]["args"] = json!([]);
        r["request"]["object"]["spec"]["containers"][0]["env"] = json!([
            {"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "root-password"}}}
        ]);
        let (warnings, pod) = admit_pod(&r, true);
        assert!(
            warnings.contains(&format!(
                "dump mode: the pre hook writes a logical dump of every {dump} database"
            )),
            "{image}: {warnings}"
        );
        let ann = &pod["metadata"]["annotations"];
        assert_eq!(ann["backup.velero.io/backup-volumes-excludes"], "data");
        let pre = ann["pre.hook.backup.velero.io/command"]
            .as_str()
            .expect("pre");
        assert!(
            pre.contains("--single-transaction") && pre.contains("--routines"),
            "{pre}"
        );
        assert_eq!(pre.contains("--system=users"), dump == "mariadb", "{pre}");
        assert!(
            ann["post.hook.restore.velero.io/command"]
                .as_str()
                .is_some_and(|c| c.contains("loaded dump"))
        );
        assert_eq!(
            pod["spec"]["volumes"].as_array().map(Vec::len),
            Some(4),
            "{image}: the dump volume is added"
        );
    }
}

#[test]
fn postgres_whose_owner_lists_the_data_volume_falls_back_and_says_why() {
    let (warnings, pod) = admit_pod(&postgres_fixture(), false);
    assert!(
        warnings.contains("dump mode is not used: your backup.velero.io/backup-volumes (\"data\") lists data volume data"),
        "{warnings}"
    );
    assert!(warnings.contains("CHECKPOINT does NOT make a file-by-file copy consistent"));
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["backup.velero.io/backup-volumes"], "data");
    assert!(
        ann.get("backup.velero.io/backup-volumes-excludes")
            .is_none()
    );
    assert!(
        ann["pre.hook.backup.velero.io/command"]
            .as_str()
            .is_some_and(|c| c.contains("CHECKPOINT"))
    );
    assert_eq!(
        pod["spec"]["volumes"].as_array().map(Vec::len),
        Some(3),
        "no volume added"
    );
}

#[test]
fn the_captured_fsb_pod_is_told_it_gets_file_system_backup_and_its_annotation_is_kept() {
    let review = fixture();
    for fs_default in [false, true] {
        let (warnings, ann) = admit(&review, fs_default);
        assert!(
            warnings.contains(
                "injected redis hooks into container \"valkey\" (backup method fs-backup"
            ),
            "{warnings}"
        );
        if !fs_default {
            assert!(
                warnings.contains("\"data\" is listed in backup.velero.io/backup-volumes"),
                "{warnings}"
            );
        }
        assert!(warnings.contains("AOF rewrites stay paused"), "{warnings}");
        assert_eq!(
            ann["backup.velero.io/backup-volumes"], "data",
            "never rewritten"
        );
        assert!(ann.contains_key("pre.hook.backup.velero.io/command"));
    }
}

#[test]
fn excludes_and_the_force_annotation_turn_it_back_to_snapshot() {
    let mut review = fixture();
    let ann = &mut review["request"]["object"]["metadata"]["annotations"];
    ann["backup.velero.io/backup-volumes-excludes"] = json!("data");
    // With the fs-backup default, the opt-in list is ignored and the excludes list counts.
    let (warnings, ann) = admit(&review, true);
    assert!(
        warnings.contains("backup method snapshot: every data volume is listed in backup.velero.io/backup-volumes-excludes"),
        "{warnings}"
    );
    assert_eq!(ann["backup.velero.io/backup-volumes-excludes"], "data");
    let mut review = fixture();
    review["request"]["object"]["metadata"]["annotations"]["velero-hook-injector.io/backup-method"] =
        json!("snapshot");
    let (warnings, _) = admit(&review, false);
    assert!(
        warnings.contains(
            "backup method snapshot: forced by annotation velero-hook-injector.io/backup-method"
        ),
        "{warnings}"
    );
}

#[test]
fn a_blank_in_velero_s_list_is_explained_because_velero_does_not_trim() {
    let mut review = fixture();
    review["request"]["object"]["metadata"]["annotations"]["backup.velero.io/backup-volumes"] =
        json!("tmp, data");
    let (warnings, ann) = admit(&review, false);
    assert!(warnings.contains("backup method snapshot"), "{warnings}");
    assert!(warnings.contains("Fix: write \"tmp,data\""), "{warnings}");
    assert_eq!(ann["backup.velero.io/backup-volumes"], "tmp, data");
}

const MANIFEST: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pg}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: db, image: 'postgres:16', volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]}\n      volumes: [{name: data, persistentVolumeClaim: {claimName: pg}}]\n";

fn render(args: &[&str], env: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_velero-hook-injector"));
    cmd.arg("render").args(args);
    cmd.env_remove("VHI_DEFAULT_VOLUMES_TO_FS_BACKUP");
    if let Some(v) = env {
        cmd.env("VHI_DEFAULT_VOLUMES_TO_FS_BACKUP", v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(MANIFEST.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).expect("utf-8")
}

#[test]
fn render_takes_the_cluster_default_from_its_flag_or_environment() {
    assert!(render(&[], None).contains("backup method snapshot"));
    for (args, env) in [
        (&["--default-volumes-to-fs-backup"][..], None),
        (&[][..], Some("true")),
    ] {
        let err = render(args, env);
        assert!(
            err.contains("backup method fs-backup: the cluster default is file-system backup"),
            "{args:?} {env:?}: {err}"
        );
        assert!(err.contains("dump mode: the pre hook writes"), "{err}");
    }
    assert!(render(&[], Some("false")).contains("backup method snapshot"));
}

#[test]
fn audit_sees_no_template_drift_in_a_dump_mode_pod() {
    let (_, pod) = admit_pod(&postgres_fixture(), true);
    let ann: std::collections::BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["annotations"].clone()).expect("annotations");
    let lib = Library::builtin().expect("library");
    assert!(
        velero_hook_injector::hooks::rules::template_drift(&ann, &lib).is_none(),
        "dump-mode hooks are the template's own"
    );
    let mut changed = ann.clone();
    changed.insert(
        "pre.hook.backup.velero.io/timeout".to_owned(),
        "2h".to_owned(),
    );
    assert!(velero_hook_injector::hooks::rules::template_drift(&changed, &lib).is_some());
}
