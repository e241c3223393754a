//! Velero Schedules against pods: which Schedule spec hooks Velero would silently skip because
//! the pod has (or the webhook would give it) an annotation hook of the same phase, which data
//! PVCs of a file-system-backup pod a Schedule would snapshot, and the Schedule list request
//! against kube's mock client (404: Velero's CRDs absent).

#[path = "common/mock_api.rs"]
mod mock_api;
use mock_api::json_response;
use std::collections::BTreeMap;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use velero_hook_injector::cluster::audit;
use velero_hook_injector::cluster::schedules::{self, Schedule};
use velero_hook_injector::hooks::detect;
use velero_hook_injector::hooks::rules::{Finding, Severity, rule};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::pod::backup_method::ClusterDefaults;

const PRE: &str = "pre.hook.backup.velero.io/command";
const POST: &str = "post.hook.backup.velero.io/command";

fn library() -> Library {
    Library::builtin().expect("built-in templates")
}

/// A PostgreSQL pod of a StatefulSet in `ns`, with a data PVC, labels and `annotations`.
fn pod(ns: &str, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "pg-0", "namespace": ns,
            "labels": {"app": "pg", "tier": "db"},
            "annotations": annotations,
        },
        "spec": {
            "containers": [{
                "name": "postgres", "image": "postgres:16.4",
                "env": [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-pg-0"}}]
        },
        "status": {"phase": "Running"}
    }))
    .expect("pod")
}

/// The pod as the webhook leaves it under `defaults` (its annotations and dump volume).
fn injected(ns: &str, defaults: ClusterDefaults) -> Pod {
    let mut p = pod(ns, json!({}));
    let d = detect::decide_with(&p, &library(), defaults);
    assert_eq!(d.outcome, detect::Outcome::Injected, "{:?}", d.warnings);
    p.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(d.add);
    if d.dump_volume.is_some() {
        let spec = p.spec.as_mut().expect("spec");
        spec.volumes.get_or_insert_with(Vec::new).push(
            serde_json::from_value(json!({"name": "vhi-dump", "emptyDir": {}})).expect("volume"),
        );
        spec.containers[0]
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(
                serde_json::from_value(json!({"name": "vhi-dump", "mountPath": "/vhi-dump"}))
                    .expect("mount"),
            );
    }
    p
}

/// A Schedule in namespace velero whose template is `template`, as the API server returns it.
fn schedule(name: &str, template: Value) -> Value {
    json!({
        "apiVersion": "velero.io/v1", "kind": "Schedule",
        "metadata": {"name": name, "namespace": "velero", "uid": format!("uid-{name}"), "resourceVersion": "7"},
        "spec": {"schedule": "0 3 * * *", "template": template, "useOwnerReferencesInBackup": false},
        "status": {"phase": "Enabled", "lastBackup": "2026-12-04T03:00:00Z"}
    })
}

fn parse(v: Value) -> Schedule {
    serde_json::from_value(v).expect("schedule")
}

/// Spec hooks: a pre hook set that selects `tier=db` in `prod-*` namespaces, and a post set.
fn hooked(extra: Value) -> Schedule {
    let mut t = json!({
        "includedNamespaces": ["*"],
        "hooks": {"resources": [
            {
                "name": "freeze",
                "includedNamespaces": ["prod-*"],
                "labelSelector": {"matchLabels": {"tier": "db"}},
                "pre": [{"exec": {"container": "postgres", "command": ["/bin/sh", "-c", "psql -c 'CHECKPOINT'"], "onError": "Fail", "timeout": "60s"}},
                        {"exec": {"container": "postgres", "command": ["/bin/sync"]}}]
            },
            {
                "name": "unfreeze",
                "includedNamespaces": ["prod-*"],
                "post": [{"exec": {"container": "postgres", "command": ["/bin/true"]}}]
            }
        ]}
    });
    if let (Some(t), Some(extra)) = (t.as_object_mut(), extra.as_object()) {
        t.extend(extra.clone());
    }
    parse(schedule("nightly", t))
}

fn by_rule<'a>(findings: &'a [Finding], id: &str) -> Vec<&'a Finding> {
    findings.iter().filter(|f| f.rule_id == id).collect()
}

fn check(p: &Pod, s: &[Schedule]) -> Vec<Finding> {
    schedules::findings(p, s, &library(), ClusterDefaults::default())
}

#[test]
fn webhook_pre_hook_shadows_the_schedules_pre_hooks_only() {
    let p = injected("prod-shop", ClusterDefaults::default());
    let findings = check(&p, &[hooked(json!({}))]);
    let shadowed = by_rule(&findings, rule::SPEC_HOOKS_SHADOWED);
    // The postgres template has a pre hook and no post hook: the Schedule's post hook still runs.
    assert_eq!(shadowed.len(), 1, "{findings:#?}");
    let f = shadowed[0];
    assert_eq!(f.key, PRE);
    assert_eq!(f.severity, Severity::Error);
    for part in [
        "velero/nightly",
        "2 pre hooks",
        "\"freeze\"",
        "Fix:",
        "velero-hook-injector.io/inject: \"false\"",
        "custom template",
    ] {
        assert!(f.message.contains(part), "{part:?} missing: {}", f.message);
    }
}

#[test]
fn a_pod_about_to_be_injected_is_reported_too() {
    // Created before the webhook: audit --apply or the reconciler would add the pre hook.
    let p = pod("prod-shop", json!({}));
    let findings = check(&p, &[hooked(json!({}))]);
    assert_eq!(
        by_rule(&findings, rule::SPEC_HOOKS_SHADOWED).len(),
        1,
        "{findings:#?}"
    );
    // Opted out: the Schedule's hooks run, nothing to say.
    let out = pod(
        "prod-shop",
        json!({"velero-hook-injector.io/inject": "false"}),
    );
    assert_eq!(check(&out, &[hooked(json!({}))]), vec![]);
}

#[test]
fn the_users_own_annotations_shadow_too_legacy_key_and_post_included() {
    let p = pod(
        "prod-shop",
        json!({
            "velero-hook-injector.io/inject": "false",
            "hook.backup.velero.io/command": "[\"/bin/sync\"]",
            "post.hook.backup.velero.io/command": "[\"/bin/true\"]",
        }),
    );
    let findings = check(&p, &[hooked(json!({}))]);
    let keys: Vec<&str> = by_rule(&findings, rule::SPEC_HOOKS_SHADOWED)
        .iter()
        .map(|f| f.key.as_str())
        .collect();
    assert_eq!(keys, [PRE, POST], "{findings:#?}");
    assert!(
        findings[0].message.contains("the pod's own"),
        "{}",
        findings[0].message
    );
}

#[test]
fn hooks_that_do_not_select_the_pod_are_not_shadowed() {
    let p = injected("prod-shop", ClusterDefaults::default());
    let cases = [
        ("namespace glob misses", pod_ns(&p, "staging")),
        ("label selector misses", relabel(&p, "tier", "cache")),
    ];
    for (why, p) in cases {
        assert_eq!(
            by_rule(&check(&p, &[hooked(json!({}))]), rule::SPEC_HOOKS_SHADOWED).len(),
            0,
            "{why}"
        );
    }
    let not_taken = [
        (
            "backup excludes the namespace by glob",
            json!({"excludedNamespaces": ["prod-*"]}),
        ),
        (
            "backup takes other namespaces",
            json!({"includedNamespaces": ["crm"]}),
        ),
        (
            "backup excludes pods",
            json!({"excludedResources": ["pods"]}),
        ),
        (
            "backup takes only deployments",
            json!({"includedNamespaceScopedResources": ["deployments"]}),
        ),
        (
            "backup label selector misses",
            json!({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}),
        ),
        (
            "no orLabelSelector matches",
            json!({"orLabelSelectors": [{"matchLabels": {"app": "web"}}, {"matchLabels": {"app": "api"}}]}),
        ),
    ];
    for (why, extra) in not_taken {
        assert_eq!(check(&p, &[hooked(extra)]), vec![], "{why}");
    }
    let mut paused = hooked(json!({}));
    paused.spec.paused = true;
    assert_eq!(
        check(&p, &[paused]),
        vec![],
        "a paused Schedule takes no backups"
    );
    let excluded = relabel(&p, "velero.io/exclude-from-backup", "true");
    assert_eq!(
        check(&excluded, &[hooked(json!({}))]),
        vec![],
        "exclude label"
    );
    // An orLabelSelector that matches takes the pod: the hooks are shadowed again.
    let or = json!({"orLabelSelectors": [{"matchLabels": {"app": "web"}}, {"matchExpressions": [{"key": "app", "operator": "In", "values": ["pg"]}]}]});
    assert_eq!(
        by_rule(&check(&p, &[hooked(or)]), rule::SPEC_HOOKS_SHADOWED).len(),
        1
    );
}

fn pod_ns(p: &Pod, ns: &str) -> Pod {
    let mut p = p.clone();
    p.metadata.namespace = Some(ns.to_owned());
    p
}

fn relabel(p: &Pod, key: &str, value: &str) -> Pod {
    let mut p = p.clone();
    p.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value.to_owned());
    p
}

const FS: ClusterDefaults = ClusterDefaults {
    default_volumes_to_fs_backup: true,
};

#[test]
fn a_dump_mode_data_pvc_on_the_snapshot_path_is_reported_with_both_fixes() {
    let p = injected("shop", FS);
    let plain = parse(schedule("daily", json!({"includedNamespaces": ["shop"]})));
    let findings = schedules::findings(&p, &[plain], &library(), FS);
    let hits = by_rule(&findings, rule::DUMP_DATA_VOLUME_SNAPSHOTTED);
    assert_eq!(hits.len(), 1, "{findings:#?}");
    let m = &hits[0].message;
    for part in [
        "velero/daily",
        "\"data\" (claim data-pg-0)",
        "failed to get VolumeSnapshotClass",
        "snapshotVolumes: false",
        "action skip",
        "not read here",
    ] {
        assert!(m.contains(part), "{part:?} missing: {m}");
    }
    // The Schedule's own defaultVolumesToFsBackup wins over the server's.
    let own = parse(schedule("daily", json!({"defaultVolumesToFsBackup": true})));
    let findings = schedules::findings(&p, &[own], &library(), ClusterDefaults::default());
    assert_eq!(
        by_rule(&findings, rule::DUMP_DATA_VOLUME_SNAPSHOTTED).len(),
        1
    );
    // Fixed either way: no snapshots, or volume policies decide (a ConfigMap not read here).
    for fixed in [
        json!({"snapshotVolumes": false}),
        json!({"resourcePolicy": {"kind": "configmap", "name": "skip-data-pvcs"}}),
    ] {
        let s = parse(schedule("daily", fixed.clone()));
        assert_eq!(
            schedules::findings(&p, &[s], &library(), FS),
            vec![],
            "{fixed}"
        );
    }
}

#[test]
fn a_pod_for_snapshots_is_not_told_about_snapshots() {
    let p = injected("shop", ClusterDefaults::default());
    let s = parse(schedule("daily", json!({})));
    assert_eq!(check(&p, &[s]), vec![]);
}

#[test]
fn the_gauge_counts_pods_with_shadowed_hooks() {
    let hooked_pod = injected("prod-shop", ClusterDefaults::default());
    let elsewhere = pod_ns(&hooked_pod, "staging");
    let bare = pod(
        "prod-shop",
        json!({"velero-hook-injector.io/inject": "false"}),
    );
    let pods = [hooked_pod, elsewhere, bare];
    assert_eq!(schedules::shadowed_pods(&pods, &[hooked(json!({}))]), 1);
    assert_eq!(schedules::shadowed_pods(&pods, &[]), 0);
}

type Handle = mock::Handle<Request<Body>, Response<Body>>;

async fn answer(handle: &mut Handle, status: StatusCode, body: Value) {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(
        req.uri().path(),
        "/apis/velero.io/v1/namespaces/velero/schedules"
    );
    send.send_response(json_response(status, &body));
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("the server could not find the requested resource ({reason})"), "reason": reason, "code": code})
}

#[tokio::test]
async fn schedules_are_listed_in_velero_namespace_and_absent_crds_are_not_an_error() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let list = json!({
        "apiVersion": "velero.io/v1", "kind": "ScheduleList", "metadata": {"resourceVersion": "9"},
        "items": [schedule("nightly", serde_json::to_value(&hooked(json!({})).spec.template).expect("template"))]
    });
    let (got, ()) = tokio::join!(
        schedules::list_schedules(&client, "velero"),
        answer(&mut handle, StatusCode::OK, list)
    );
    let got = got.expect("list").expect("CRD present");
    assert_eq!(got.len(), 1);
    let p = injected("prod-shop", ClusterDefaults::default());
    let report = audit::audit_pods_with_schedules(
        "namespace prod-shop".into(),
        std::slice::from_ref(&p),
        &got,
        &library(),
        ClusterDefaults::default(),
    );
    assert!(
        report.to_table().contains("spec-hooks-shadowed"),
        "{}",
        report.to_table()
    );

    let (got, ()) = tokio::join!(
        schedules::list_schedules(&client, "velero"),
        answer(&mut handle, StatusCode::NOT_FOUND, status(404, "NotFound"))
    );
    assert!(got.expect("404 is no error").is_none());

    let (got, ()) = tokio::join!(
        schedules::list_schedules(&client, "velero"),
        answer(&mut handle, StatusCode::FORBIDDEN, status(403, "Forbidden"))
    );
    let err = got.expect_err("403").to_string();
    assert!(
        err.contains("list schedules.velero.io") && err.contains("--velero-namespace"),
        "{err}"
    );
}
