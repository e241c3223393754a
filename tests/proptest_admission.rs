//! Properties of the admission over arbitrary pods: annotations (hook keys and control keys
//! among them), labels (Velero and operator labels among them), containers running database and
//! other images, volumes of every kind, owners.
//!
//! For every pod: the review succeeds and echoes the uid; the patch only adds under
//! /metadata/annotations and applies cleanly; no existing annotation is removed or changed; and
//! the patched pod, admitted again, gets no patch.

use base64::Engine;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use velero_hook_injector::admission;
use velero_hook_injector::hooks::template::Library;

const IMAGES: &[&str] = &[
    "postgres:16.4",
    "postgres:9.6",
    "bitnami/postgresql:15.3.0-debian-11-r7",
    "ghcr.io/cloudnative-pg/postgresql:16.4",
    "docker.io/library/postgres@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "mysql:8.0",
    "percona/percona-server:8.0",
    "mariadb:10.11",
    "mariadb:10.3",
    "mariadb:latest",
    "redis:7.2",
    "bitnami/redis:7.2",
    "valkey/valkey:8",
    "mongo:7",
    "apache/kafka:3.7.0",
    "confluentinc/cp-kafka:7.6.0",
    "nginx:1.25",
    "busybox:1.36",
    "prometheuscommunity/postgres-exporter:v0.15.0",
    "edoburu/pgbouncer:1.22",
    "oliver006/redis_exporter:v1.58.0",
    "registry.local:5000/team/mysql:latest",
    "",
    "UPPER/Case:bad",
    "::",
];

const ANNOTATION_KEYS: &[&str] = &[
    "pre.hook.backup.velero.io/command",
    "pre.hook.backup.velero.io/container",
    "post.hook.backup.velero.io/command",
    "hook.backup.velero.io/command",
    "post.hook.restore.velero.io/command",
    "init.hook.restore.velero.io/container-image",
    "velero-hook-injector.io/inject",
    "velero-hook-injector.io/template",
    "velero-hook-injector.io/container",
    "velero-hook-injector.io/injected",
    "velero-hook-injector.io/skipped",
    "kubectl.kubernetes.io/last-applied-configuration",
    "team",
];

const ANNOTATION_VALUES: &[&str] = &[
    "false",
    "true",
    "postgres",
    "mysql",
    "mariadb",
    "redis",
    "none",
    "oracle",
    "db",
    "c0",
    "c1",
    "[\"true\"]",
    "",
];

const LABEL_KEYS: &[&str] = &[
    "app",
    "velero.io/restore-name",
    "velero.io/exclude-from-backup",
    "cnpg.io/cluster",
    "application",
    "app.kubernetes.io/managed-by",
    "strimzi.io/cluster",
];

const LABEL_VALUES: &[&str] = &["true", "false", "spilo", "Helm", "kubedb.com", "x"];

const VOLUME_KINDS: &[&str] = &[
    "persistentVolumeClaim",
    "emptyDir",
    "configMap",
    "secret",
    "hostPath",
    "ephemeral",
    "projected",
    "csi",
];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(list).prop_map(str::to_owned)
}

fn annotations() -> impl Strategy<Value = Option<Map<String, Value>>> {
    let key = prop_oneof![1 => pick(ANNOTATION_KEYS), 1 => "[a-z0-9~/._-]{1,24}"];
    let value = prop_oneof![3 => pick(ANNOTATION_VALUES), 1 => "\\PC{0,24}"];
    prop::option::weighted(
        0.7,
        prop::collection::btree_map(key, value, 0..5)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
    )
}

fn labels() -> impl Strategy<Value = Option<Map<String, Value>>> {
    prop::option::weighted(
        0.5,
        prop::collection::btree_map(pick(LABEL_KEYS), pick(LABEL_VALUES), 0..3)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
    )
}

fn volume(i: usize, kind: &str) -> Value {
    let source = match kind {
        "persistentVolumeClaim" => json!({"claimName": format!("claim-{i}")}),
        "configMap" => json!({"name": "cm"}),
        "secret" => json!({"secretName": "s"}),
        "hostPath" => json!({"path": "/var/data"}),
        "ephemeral" => {
            json!({"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}})
        }
        "projected" => json!({"sources": []}),
        "csi" => json!({"driver": "csi.example.com"}),
        _ => json!({}),
    };
    json!({"name": format!("v{i}"), kind: source})
}

prop_compose! {
    fn container(volumes: usize)(
        image in prop_oneof![4 => pick(IMAGES), 1 => "[a-z][a-z0-9./-]{0,16}(:[a-z0-9.]{1,6})?"],
        command in prop::option::weighted(0.3, pick(&["psql", "postgres", "sh", "/usr/bin/redis-cli", "kafka-topics.sh", "mysqld"])),
        mounts in prop::collection::vec(0..volumes + 1, 0..4),
    ) -> Value {
        let mut c = json!({"image": image});
        if let Some(cmd) = command {
            c["command"] = json!([cmd]);
        }
        if !mounts.is_empty() {
            // Index `volumes` names a volume that does not exist.
            c["volumeMounts"] = json!(mounts
                .iter()
                .enumerate()
                .map(|(j, v)| json!({"name": format!("v{v}"), "mountPath": format!("/m{j}")}))
                .collect::<Vec<_>>());
        }
        c
    }
}

prop_compose! {
    fn pod()(volume_kinds in prop::collection::vec(
        prop_oneof![2 => Just("persistentVolumeClaim".to_owned()), 1 => pick(VOLUME_KINDS)],
        0..4,
    ))(
        containers in prop::collection::vec(container(volume_kinds.len()), 1..5),
        volume_kinds in Just(volume_kinds),
        annotations in annotations(),
        labels in labels(),
        owner in prop::option::weighted(0.3, pick(&["Job", "ReplicaSet", "StatefulSet"])),
        generate_name in any::<bool>(),
    ) -> Value {
        let mut meta = json!({"namespace": "db"});
        if generate_name {
            meta["generateName"] = json!("db-");
        } else {
            meta["name"] = json!("db-0");
        }
        if let Some(a) = annotations {
            meta["annotations"] = Value::Object(a);
        }
        if let Some(l) = labels {
            meta["labels"] = Value::Object(l);
        }
        if let Some(kind) = owner {
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "u"}]);
        }
        let containers: Vec<Value> = containers
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                c["name"] = json!(format!("c{i}"));
                c
            })
            .collect();
        let volumes: Vec<Value> = volume_kinds
            .iter()
            .enumerate()
            .map(|(i, k)| volume(i, k))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers, "volumes": volumes}})
    }
}

fn review_of(pod: &Value) -> Value {
    let path = format!(
        "{}/tests/fixtures/pod-create-simple.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut r: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    r["request"]["object"] = pod.clone();
    r["request"]["namespace"] = json!("db");
    r
}

/// Admits `pod`; returns the decoded patch operations, if any.
fn admit(pod: &Value, library: &Library) -> Option<Vec<Value>> {
    let review = review_of(pod);
    let body = serde_json::to_vec(&review).expect("ser");
    let out = admission::review(&body, library).expect("every generated pod is reviewed");
    let resp: Value = serde_json::from_slice(&out.body).expect("response json");
    assert_eq!(resp["response"]["uid"], review["request"]["uid"]);
    assert_eq!(resp["response"]["allowed"], true);
    let patch = resp["response"]["patch"].as_str()?;
    assert_eq!(resp["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64");
    Some(serde_json::from_slice(&bytes).expect("patch json"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn patch_adds_only_applies_cleanly_and_is_idempotent(pod in pod()) {
        let library = Library::builtin().expect("library");
        let Some(ops) = admit(&pod, &library) else {
            return Ok(());
        };
        prop_assert!(!ops.is_empty(), "an empty patch should not be sent");
        for op in &ops {
            prop_assert_eq!(&op["op"], "add", "only adds: {}", op);
            let path = op["path"].as_str().unwrap_or_default();
            prop_assert!(path.starts_with("/metadata/annotations"), "path {}", path);
        }
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.clone())).expect("RFC 6902");
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &patch)
            .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;

        // Nothing the pod had is removed or changed; only annotations are added.
        let before = pod["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
        let after = patched["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
        for (k, v) in &before {
            prop_assert_eq!(after.get(k), Some(v), "annotation {} changed", k);
        }
        prop_assert!(after.len() > before.len());
        let mut without = patched.clone();
        without["metadata"]["annotations"] = pod["metadata"]["annotations"].clone();
        if pod["metadata"].get("annotations").is_none() {
            without["metadata"].as_object_mut().expect("meta").remove("annotations");
        }
        prop_assert_eq!(&without, &pod, "something besides annotations changed");

        // The patched pod, admitted again, is left alone.
        prop_assert_eq!(admit(&patched, &library), None, "second admission patched again");
    }
}

/// The generator is not vacuous: a good share of the generated pods do get a patch.
#[test]
fn generated_pods_are_often_patched() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let library = Library::builtin().expect("library");
    let mut runner = TestRunner::deterministic();
    let strategy = pod();
    let total = 400;
    let patched = (0..total)
        .filter(|_| {
            let pod = strategy.new_tree(&mut runner).expect("tree").current();
            admit(&pod, &library).is_some()
        })
        .count();
    println!("{patched} of {total} generated pods got a patch");
    assert!(patched * 5 >= total, "only {patched} of {total} patched");
}
