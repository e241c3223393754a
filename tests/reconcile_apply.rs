//! `audit --apply` against a fake API server behind kube's mock client service: the patches
//! sent (byte for byte), the resourceVersion precondition, 409 re-read and re-decision, 404,
//! 403, dry runs, and two writers racing on the same pod.

mod reconcile;

use std::sync::{Arc, Mutex};

use http::Method;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use reconcile::fake::{self, Script, Shared, State, db_pod, status};
use serde_json::{Value, json};
use velero_hook_injector::admission::policy::Mode;
use velero_hook_injector::cluster::audit::{self, Scope};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::reconcile::apply::{self, ApplyOptions, ApplyRun, PodResult};
use velero_hook_injector::reconcile::decide::{self, Action, Inputs, Namespaces};

fn library() -> Library {
    Library::builtin().expect("built-in templates")
}

/// The annotations the webhook adds to a postgres pod's container `db`, as a sorted JSON map.
fn postgres_adds() -> String {
    let mut a = library()
        .get("postgres")
        .expect("postgres")
        .annotations("db");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "postgres/db".into(),
    );
    serde_json::to_string(&a).expect("json")
}

fn expected_patch(rv: &str) -> String {
    format!(
        r#"{{"metadata":{{"resourceVersion":"{rv}","annotations":{}}}}}"#,
        postgres_adds()
    )
}

fn shop() -> Shared {
    let mut s = State::default();
    s.add_namespace("shop", true, None);
    s.add_pod(db_pod(
        "shop",
        "db-0",
        "postgres:16",
        json!({"team": "payments"}),
    ));
    s.add_pod(db_pod("shop", "web-0", "nginx:1.27", json!({})));
    Arc::new(Mutex::new(s))
}

async fn run(state: &Shared, opts: &ApplyOptions) -> ApplyRun {
    let client = fake::client(state);
    let scope = Scope::Namespace("shop".into());
    let pods = audit::list_pods(&client, &scope).await.expect("list");
    let report = audit::audit_pods(
        scope.to_string(),
        &pods,
        &library(),
        ClusterDefaults::default(),
    );
    apply::apply_report(&client, &pods, &report, &library(), opts).await
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        cluster_mode: Mode::Inject,
        excluded: vec!["kube-system".into()],
        ..ApplyOptions::default()
    }
}

#[tokio::test]
async fn adds_exactly_the_admission_annotations_with_a_precondition() {
    let state = shop();
    let out = run(&state, &opts()).await;
    let s = state.lock().expect("lock");
    let patches = s.patches();
    assert_eq!(patches.len(), 1, "{:?}", s.log);
    let p = patches[0];
    assert_eq!(p.path, "/api/v1/namespaces/shop/pods/db-0");
    // kube's query builder leaves a leading `&`; the API server ignores empty pairs.
    assert_eq!(p.query, "&fieldManager=velero-hook-injector");
    assert_eq!(String::from_utf8_lossy(&p.body), expected_patch("1"));
    assert!(
        String::from_utf8_lossy(&p.body)
            .contains(r#""velero-hook-injector.io/injected":"postgres/db""#)
    );
    // The user's annotation is untouched and the hooks are there.
    let pod = s.pod("shop", "db-0").expect("pod");
    assert_eq!(pod["metadata"]["annotations"]["team"], "payments");
    assert_eq!(
        pod["metadata"]["annotations"]["pre.hook.backup.velero.io/container"],
        "db"
    );
    assert_eq!(out.summary.patched, 1);
    assert_eq!(out.summary.failed, 0);
    assert_eq!(out.summary.remaining, 0, "{}", out.to_table());
    assert_eq!(out.pods[0].result, "patched");
    assert!(
        out.pods[0]
            .detail
            .starts_with("added the postgres/db hooks"),
        "{}",
        out.pods[0].detail
    );
}

#[tokio::test]
async fn dry_run_is_server_side_and_changes_nothing() {
    let state = shop();
    let out = run(
        &state,
        &ApplyOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await;
    let s = state.lock().expect("lock");
    let p = s.patches()[0];
    assert_eq!(p.query, "&dryRun=All&fieldManager=velero-hook-injector");
    assert_eq!(String::from_utf8_lossy(&p.body), expected_patch("1"));
    assert!(
        s.pod("shop", "db-0").expect("pod")["metadata"]["annotations"]
            .get("velero-hook-injector.io/injected")
            .is_none()
    );
    assert_eq!(out.pods[0].result, "would-patch");
    assert_eq!(out.summary.remaining, 1);
    assert!(
        out.to_table()
            .contains("Apply (dry run): 1 pod selected: 1 would be patched"),
        "{}",
        out.to_table()
    );
}

#[tokio::test]
async fn a_conflict_is_reread_and_redecided_never_forced() {
    // Someone adds their own backup and restore hooks between our read and our patch.
    let state = shop();
    state.lock().expect("lock").scripts.push_back(Script {
        method: Method::PATCH,
        path_suffix: "/pods/db-0".into(),
        status: 409,
        body: status(409, "Conflict", "the object has been modified"),
        before: Some(Box::new(|s: &mut State| {
            s.touch(
                "shop",
                "db-0",
                json!({
                "pre.hook.backup.velero.io/command": "[\"/bin/true\"]",
                "post.hook.restore.velero.io/command": "[\"/bin/true\"]"}),
            )
        })),
    });
    let out = run(&state, &opts()).await;
    let s = state.lock().expect("lock");
    let methods: Vec<String> = s
        .log
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        methods,
        [
            "GET /api/v1/namespaces/shop/pods",
            "GET /api/v1/namespaces/shop",
            "PATCH /api/v1/namespaces/shop/pods/db-0",
            "GET /api/v1/namespaces/shop/pods/db-0",
        ]
    );
    assert_eq!(
        s.pod("shop", "db-0").expect("pod")["metadata"]["annotations"]["pre.hook.backup.velero.io/command"],
        "[\"/bin/true\"]"
    );
    assert_eq!(out.pods[0].result, "unchanged");
    assert!(
        out.pods[0].detail.contains("re-read"),
        "{}",
        out.pods[0].detail
    );
    assert_eq!(out.summary.failed, 0);
}

#[tokio::test]
async fn a_conflict_with_an_unrelated_change_patches_the_new_version() {
    let state = shop();
    state.lock().expect("lock").scripts.push_back(Script {
        method: Method::PATCH,
        path_suffix: "/pods/db-0".into(),
        status: 409,
        body: status(409, "Conflict", "the object has been modified"),
        before: Some(Box::new(|s: &mut State| {
            s.touch("shop", "db-0", json!({"owner": "bob"}))
        })),
    });
    let out = run(&state, &opts()).await;
    let s = state.lock().expect("lock");
    let bodies: Vec<String> = s
        .patches()
        .iter()
        .map(|p| String::from_utf8_lossy(&p.body).into_owned())
        .collect();
    // Same decision, new precondition: db-0 was version 1 (web-0 is 2), the touch made it 3.
    assert!(
        bodies == [expected_patch("1"), expected_patch("3")],
        "{bodies:?}"
    );
    let a = &s.pod("shop", "db-0").expect("pod")["metadata"]["annotations"];
    assert_eq!(
        (a["owner"].as_str(), a["team"].as_str()),
        (Some("bob"), Some("payments"))
    );
    assert_eq!(out.pods[0].result, "patched");
    assert!(
        out.pods[0].detail.contains("after 1 conflict"),
        "{}",
        out.pods[0].detail
    );
}

#[tokio::test]
async fn a_deleted_pod_is_gone_and_a_forbidden_patch_fails_with_the_fix() {
    let state = shop();
    state.lock().expect("lock").scripts.push_back(Script {
        method: Method::PATCH,
        path_suffix: "/pods/db-0".into(),
        status: 404,
        body: status(404, "NotFound", "pods \"db-0\" not found"),
        before: None,
    });
    let out = run(&state, &opts()).await;
    assert_eq!(out.pods[0].result, "gone");

    let state = shop();
    state.lock().expect("lock").scripts.push_back(Script {
        method: Method::PATCH,
        path_suffix: "/pods/db-0".into(),
        status: 403,
        body: status(403, "Forbidden", "pods \"db-0\" is forbidden: User \"alice\" cannot patch resource \"pods\" in API group \"\" in the namespace \"shop\""),
        before: None,
    });
    let out = run(&state, &opts()).await;
    assert_eq!(out.summary.failed, 1);
    assert_eq!(out.pods[0].result, "failed");
    let d = &out.pods[0].detail;
    assert!(
        d.contains("cannot patch") && d.contains("kubectl auth can-i patch pods -n shop"),
        "{d}"
    );
}

#[tokio::test]
async fn a_namespace_not_opted_in_or_in_warn_mode_is_not_patched() {
    for (opted_in, mode, want) in [
        (false, None, "has not opted in"),
        (
            true,
            Some("warn"),
            "warn mode: would add the postgres/db hooks",
        ),
    ] {
        let state = shop();
        state
            .lock()
            .expect("lock")
            .add_namespace("shop", opted_in, mode);
        let out = run(&state, &opts()).await;
        assert!(state.lock().expect("lock").patches().is_empty());
        assert_eq!(out.pods[0].result, "unchanged");
        assert!(out.pods[0].detail.contains(want), "{}", out.pods[0].detail);
        assert_eq!(out.summary.remaining, 1);
    }
}

#[tokio::test]
async fn drift_is_updated_only_with_the_flag() {
    let lib = library();
    let mut a = lib.get("postgres").expect("pg").annotations("db");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "postgres/db".into(),
    );
    a.insert("pre.hook.backup.velero.io/timeout".into(), "1s".into());
    assert_ne!(
        lib.get("postgres").expect("pg").annotations("db")["pre.hook.backup.velero.io/timeout"],
        "1s"
    );
    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        s.add_namespace("shop", true, None);
        s.add_pod(db_pod(
            "shop",
            "db-0",
            "postgres:16",
            serde_json::to_value(&a).expect("map"),
        ));
    }
    let out = run(&state, &opts()).await;
    assert!(
        out.pods.is_empty(),
        "drift pods are not selected without the flag"
    );
    let out = run(
        &state,
        &ApplyOptions {
            include_drift: true,
            ..opts()
        },
    )
    .await;
    let s = state.lock().expect("lock");
    let current =
        &lib.get("postgres").expect("pg").annotations("db")["pre.hook.backup.velero.io/timeout"];
    assert_eq!(
        String::from_utf8_lossy(&s.patches()[0].body),
        format!(
            r#"{{"metadata":{{"resourceVersion":"1","annotations":{{"pre.hook.backup.velero.io/timeout":{}}}}}}}"#,
            Value::String(current.clone())
        )
    );
    assert_eq!(out.pods[0].result, "patched");
    assert!(
        out.pods[0].detail.starts_with("updated"),
        "{}",
        out.pods[0].detail
    );
}

/// Two replicas, no Lease: both decide on the same version of the same pod and patch it. The
/// precondition lets exactly one through; the other gets 409, re-reads, and re-decides to
/// nothing. Measured over 50 pods: 50 patches applied, 50 conflicts, no pod changed twice.
#[tokio::test]
async fn two_writers_racing_produce_one_patch_effect() {
    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        s.add_namespace("shop", true, None);
        for i in 0..50 {
            s.add_pod(db_pod("shop", &format!("db-{i}"), "postgres:16", json!({})));
        }
    }
    let lib = library();
    let (a, b) = (fake::client(&state), fake::client(&state));
    let pods: Vec<Pod> = {
        let s = state.lock().expect("lock");
        s.pods
            .values()
            .map(|p| serde_json::from_value(p.clone()).expect("pod"))
            .collect()
    };
    let ns = apply::FetchedNamespaces::fetch(&a, ["shop".to_owned()]).await;
    let inputs = Inputs {
        library: &lib,
        cluster_mode: Mode::Inject,
        namespaces: &ns,
        excluded: &[],
        include_drift: false,
        backup_defaults: ClusterDefaults::default(),
    };
    let decide = |p: &Pod| decide::decide(p, &inputs);
    let (api_a, api_b): (Api<Pod>, Api<Pod>) =
        (Api::namespaced(a, "shop"), Api::namespaced(b, "shop"));
    let mut applied = 0;
    let mut redecided = 0;
    for pod in &pods {
        // Both replicas saw the same version of the pod in their caches.
        let (ra, rb) = tokio::join!(
            apply::patch_pod(&api_a, pod.clone(), decide, false),
            apply::patch_pod(&api_b, pod.clone(), decide, false)
        );
        for r in [ra, rb] {
            match r {
                PodResult::Patched { conflicts: 0, .. } => applied += 1,
                PodResult::Unchanged {
                    action: Action::Leave(_),
                    conflicts: 1,
                } => redecided += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let s = state.lock().expect("lock");
    assert_eq!((applied, redecided), (50, 50));
    let conflicts = s.log.iter().filter(|r| r.method == Method::PATCH).count() - 50;
    assert_eq!(conflicts, 50, "each loser sent one patch and got 409");
    for pod in s.pods.values() {
        // Created at rv n, patched once: one version later, hooks present.
        assert_eq!(
            pod["metadata"]["annotations"]["velero-hook-injector.io/injected"],
            "postgres/db"
        );
    }
    let versions: std::collections::BTreeSet<&str> = s
        .pods
        .values()
        .filter_map(|p| p["metadata"]["resourceVersion"].as_str())
        .collect();
    assert_eq!(versions.len(), 50);
    assert!(ns.opted_in("shop").expect("known"));
}
