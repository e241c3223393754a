//! The reconciler in `serve` against a fake API server behind kube's mock client service: the
//! initial list, watch events (added, modified, deleted, bookmark), a watch that expires with
//! 410 Gone and must relist, 403 on list and on patch, the API unreachable, warn mode, and two
//! reconcilers racing on the same pods. Patches are asserted byte for byte.

mod reconcile;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use reconcile::fake::{self, Script, Shared, State, db_pod, status};
use serde_json::{Value, json};
use velero_hook_injector::admission::policy::{NamespaceLookup, NamespaceView};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::reconcile::controller::{self, Config, Reconciler};
use velero_hook_injector::reconcile::decide::Namespaces;
use velero_hook_injector::reconcile::metrics::ReconcileMetrics;
use velero_hook_injector::server::metrics::Metrics;

/// Namespace policy as the namespace cache would answer it.
struct Ns {
    warn: Vec<&'static str>,
    opted_in: Vec<&'static str>,
}
impl NamespaceLookup for Ns {
    fn lookup(&self, namespace: &str) -> NamespaceView {
        NamespaceView::Known(self.warn.contains(&namespace).then(|| "warn".to_owned()))
    }
}
impl Namespaces for Ns {
    fn opted_in(&self, namespace: &str) -> Result<bool, String> {
        Ok(self.opted_in.contains(&namespace))
    }
}

fn library() -> Arc<Library> {
    Arc::new(Library::builtin().expect("built-in templates"))
}

fn expected_patch(rv: &str) -> String {
    let mut a = library()
        .get("postgres")
        .expect("postgres")
        .annotations("db");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "postgres/db".into(),
    );
    format!(
        r#"{{"metadata":{{"resourceVersion":"{rv}","annotations":{}}}}}"#,
        serde_json::to_string(&a).expect("json")
    )
}

struct Running {
    state: Shared,
    metrics: Metrics,
    reconciler: Reconciler,
}

fn fast() -> Config {
    Config {
        rate: 1000.0,
        burst: 100,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Config::default()
    }
}

fn start(state: &Shared, ns: Ns, cfg: Config) -> Running {
    let mut metrics = Metrics::new();
    let rm = ReconcileMetrics::register(metrics.registry_mut());
    let reconciler = controller::spawn(
        fake::client(state),
        Arc::new(ns),
        Arc::new(library()),
        rm,
        cfg,
    );
    Running {
        state: Arc::clone(state),
        metrics,
        reconciler,
    }
}

fn shop_ns() -> Ns {
    Ns {
        warn: vec![],
        opted_in: vec!["shop"],
    }
}

impl Running {
    async fn until(&self, what: &str, cond: impl Fn(&State, &str) -> bool) {
        for _ in 0..2000 {
            {
                let s = self.state.lock().expect("lock");
                if cond(&s, &self.metrics.encode()) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = self.state.lock().expect("lock");
        let log: Vec<String> = s
            .log
            .iter()
            .map(|r| format!("{} {}?{} {}", r.method, r.path, r.query, r.body.len()))
            .collect();
        panic!(
            "timed out waiting for {what}\nrequests: {log:#?}\nmetrics:\n{}",
            self.metrics.encode()
        );
    }
}

fn metric(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn annotations(s: &State, name: &str) -> Value {
    s.pod("shop", name)
        .map(|p| p["metadata"]["annotations"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn patches_unhooked_pods_from_the_list_and_the_watch() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        s.add_pod(db_pod(
            "shop",
            "db-0",
            "postgres:16",
            json!({"team": "payments"}),
        )); // rv 1
        s.add_pod(db_pod("shop", "web-0", "nginx:1.27", json!({})));
        s.add_pod(db_pod("other", "db-0", "postgres:16", json!({}))); // not opted in
    }
    let r = start(&state, shop_ns(), fast());
    r.until("db-0 patched", |s, m| {
        s.patches().len() == 1
            && metric(
                m,
                r#"velero_hook_injector_reconcile_total{outcome="patched"} 1"#,
            )
    })
    .await;
    {
        let s = state.lock().expect("lock");
        let p = s.patches()[0];
        assert_eq!(p.path, "/api/v1/namespaces/shop/pods/db-0");
        assert_eq!(String::from_utf8_lossy(&p.body), expected_patch("1"));
        assert_eq!(annotations(&s, "db-0")["team"], "payments");
        assert!(
            s.pod("other", "db-0").expect("pod")["metadata"]["annotations"]
                .get("velero-hook-injector.io/injected")
                .is_none()
        );
        // The initial list was cluster-wide and paged, then a watch with bookmarks.
        let first = &s.log[0];
        assert_eq!(
            (first.path.as_str(), first.query.contains("limit=500")),
            ("/api/v1/pods", true)
        );
    }
    // Our own MODIFIED event comes back: re-decided to nothing, no second patch; gauge at 0.
    r.until("gauge 0", |_, m| {
        metric(m, "velero_hook_injector_unhooked_pods 0")
    })
    .await;
    // A bookmark, then a pod created while the webhook was down.
    {
        let mut s = state.lock().expect("lock");
        let rv = s.rv.to_string();
        s.emit(
            "BOOKMARK",
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}),
        );
        s.create_pod(db_pod("shop", "db-1", "postgres:16", json!({})));
    }
    r.until("db-1 patched", |s, _| {
        annotations(s, "db-1")
            .get("velero-hook-injector.io/injected")
            .is_some()
    })
    .await;
    {
        let s = state.lock().expect("lock");
        let bodies: Vec<String> = s
            .patches()
            .iter()
            .map(|p| String::from_utf8_lossy(&p.body).into_owned())
            .collect();
        let db1_rv = "5"; // db-0 patched made 4, db-1 was created at 5
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert!(bodies[1] == expected_patch(db1_rv), "{}", &bodies[1][..80]);
    }
    // Deleted pods leave the cache.
    state.lock().expect("lock").delete_pod("shop", "db-1");
    r.until("db-1 gone from the cache", |_, _| {
        r.reconciler.cached_pods() == 3
    })
    .await;
    r.reconciler.abort();
}

#[tokio::test]
async fn a_watch_that_expires_with_410_relists_and_catches_up() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    state
        .lock()
        .expect("lock")
        .add_pod(db_pod("shop", "web-0", "nginx:1.27", json!({})));
    let r = start(&state, shop_ns(), fast());
    r.until("first watch", |s, _| {
        s.log.iter().any(|q| q.query.contains("watch=true"))
    })
    .await;
    {
        // The pod appears while the watch is broken: only the relist can show it.
        let mut s = state.lock().expect("lock");
        s.add_pod(db_pod("shop", "db-0", "postgres:16", json!({})));
        s.emit(
            "ERROR",
            status(410, "Expired", "too old resource version: 1 (3)"),
        );
    }
    r.until("relist and patch", |s, _| {
        s.lists() >= 2 && s.patches().len() == 1
    })
    .await;
    let s = state.lock().expect("lock");
    assert_eq!(
        String::from_utf8_lossy(&s.patches()[0].body),
        expected_patch("2")
    );
    drop(s);
    r.reconciler.abort();
}

#[tokio::test]
async fn forbidden_list_is_counted_logged_and_retried_without_crashing() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        s.add_pod(db_pod("shop", "db-0", "postgres:16", json!({})));
        s.scripts.push_back(Script {
            method: Method::GET,
            path_suffix: "/api/v1/pods?".into(),
            status: 403,
            body: status(403, "Forbidden", "pods is forbidden: User \"system:serviceaccount:vhi:vhi\" cannot list resource \"pods\" in API group \"\" at the cluster scope"),
            before: None,
        });
    }
    let r = start(&state, shop_ns(), fast());
    r.until("watch error counted, then recovered and patched", |s, m| {
        metric(m, "velero_hook_injector_reconcile_watch_errors_total 1") && s.patches().len() == 1
    })
    .await;
    r.reconciler.abort();
}

#[tokio::test]
async fn failed_patches_are_counted_and_retried_with_backoff() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        s.add_pod(db_pod("shop", "db-0", "postgres:16", json!({})));
        s.add_pod(db_pod("shop", "db-1", "postgres:16", json!({})));
        // db-0: RBAC missing first, then the API unreachable, then it works.
        s.scripts.push_back(Script {
            method: Method::PATCH,
            path_suffix: "/pods/db-0".into(),
            status: 403,
            body: status(403, "Forbidden", "pods \"db-0\" is forbidden: User \"system:serviceaccount:vhi:vhi\" cannot patch resource \"pods\""),
            before: None,
        });
        s.scripts.push_back(Script {
            method: Method::PATCH,
            path_suffix: "/pods/db-0".into(),
            status: 0,
            body: Value::Null,
            before: None,
        });
        // db-1: deleted between the watch event and the patch.
        s.scripts.push_back(Script {
            method: Method::PATCH,
            path_suffix: "/pods/db-1".into(),
            status: 404,
            body: status(404, "NotFound", "pods \"db-1\" not found"),
            before: None,
        });
    }
    let r = start(&state, shop_ns(), fast());
    r.until("two failures, then patched", |s, m| {
        metric(
            m,
            r#"velero_hook_injector_reconcile_total{outcome="failed"} 2"#,
        ) && metric(
            m,
            r#"velero_hook_injector_reconcile_total{outcome="patched"} 1"#,
        ) && metric(
            m,
            r#"velero_hook_injector_reconcile_total{outcome="skipped"} 1"#,
        ) && annotations(s, "db-0")
            .get("velero-hook-injector.io/injected")
            .is_some()
    })
    .await;
    let s = state.lock().expect("lock");
    let db0: Vec<&str> = s
        .patches()
        .iter()
        .filter(|p| p.path.ends_with("/db-0"))
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(db0.len(), 3, "403, unreachable, success");
    drop(s);
    r.reconciler.abort();
}

#[tokio::test]
async fn warn_mode_reports_once_and_changes_nothing() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    state
        .lock()
        .expect("lock")
        .add_pod(db_pod("shop", "db-0", "postgres:16", json!({})));
    let r = start(
        &state,
        Ns {
            warn: vec!["shop"],
            opted_in: vec!["shop"],
        },
        Config {
            resync: Duration::from_millis(100),
            ..fast()
        },
    );
    r.until("reported", |_, m| {
        metric(
            m,
            r#"velero_hook_injector_reconcile_total{outcome="skipped"} 1"#,
        ) && metric(m, "velero_hook_injector_unhooked_pods 1")
    })
    .await;
    // Several resyncs later: still one report, no patch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = r.metrics.encode();
    assert!(
        metric(
            &m,
            r#"velero_hook_injector_reconcile_total{outcome="skipped"} 1"#
        ),
        "{m}"
    );
    assert!(state.lock().expect("lock").patches().is_empty());
    r.reconciler.abort();
}

/// Two replicas on the same 100 unhooked pods, no Lease. Measured: exactly 100 patches are
/// applied (one per pod, each pod ends one version after its creation + patch), every conflict
/// re-decided to "leave it", nothing failed.
#[tokio::test]
async fn two_reconcilers_racing_patch_each_pod_once() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        for i in 0..100 {
            s.add_pod(db_pod("shop", &format!("db-{i}"), "postgres:16", json!({})));
        }
    }
    let a = start(&state, shop_ns(), fast());
    let b = start(&state, shop_ns(), fast());
    let patched = |m: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix(r#"velero_hook_injector_reconcile_total{outcome="patched"} "#)
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    a.until("all pods hooked", |s, _| {
        s.pods.values().all(|p| {
            p["metadata"]["annotations"]
                .get("velero-hook-injector.io/injected")
                .is_some()
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ma, mb) = (a.metrics.encode(), b.metrics.encode());
    let s = state.lock().expect("lock");
    let stored_changes = s
        .pods
        .values()
        .filter(|p| {
            p["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                > 100
        })
        .count();
    let patches = s.patches().len() as u64;
    println!(
        "two replicas, 100 pods: {patches} PATCH requests, {} applied (a {}, b {}), {} conflicts",
        patched(&ma) + patched(&mb),
        patched(&ma),
        patched(&mb),
        patches - patched(&ma) - patched(&mb)
    );
    assert_eq!(patched(&ma) + patched(&mb), 100);
    assert_eq!(stored_changes, 100);
    assert!(
        metric(
            &ma,
            r#"velero_hook_injector_reconcile_total{outcome="failed"} 0"#
        ),
        "{ma}"
    );
    assert!(
        metric(
            &mb,
            r#"velero_hook_injector_reconcile_total{outcome="failed"} 0"#
        ),
        "{mb}"
    );
    drop(s);
    a.reconciler.abort();
    b.reconciler.abort();
}

#[tokio::test]
async fn a_namespace_scoped_reconciler_watches_and_patches_only_its_namespaces() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        s.add_pod(db_pod("shop", "db-0", "postgres:16", json!({})));
        s.add_pod(db_pod("billing", "db-0", "postgres:16", json!({})));
    }
    let ns = Ns {
        warn: vec![],
        opted_in: vec!["shop", "billing"],
    };
    let r = start(
        &state,
        ns,
        Config {
            namespaces: vec!["shop".into()],
            ..fast()
        },
    );
    r.until("shop patched", |s, _| s.patches().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = state.lock().expect("lock");
    assert_eq!(s.patches().len(), 1);
    assert_eq!(s.patches()[0].path, "/api/v1/namespaces/shop/pods/db-0");
    assert!(
        s.log
            .iter()
            .all(|q| q.path.starts_with("/api/v1/namespaces/shop/")),
        "only namespaced requests (a Role suffices): {:?}",
        s.log.iter().map(|q| &q.path).collect::<Vec<_>>()
    );
    assert_eq!(r.reconciler.cached_pods(), 1);
    drop(s);
    r.reconciler.abort();
}

/// Regression: a relist reaches the cache only when complete, so pods of a multi-page list must
/// be queued then, not as each page arrives (the first benchmark patched only page one).
#[tokio::test]
async fn every_pod_of_a_multi_page_list_is_reconciled() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().expect("lock");
        for i in 0..1_100 {
            s.add_pod(db_pod(
                "shop",
                &format!("db-{i:04}"),
                "postgres:16",
                json!({}),
            ));
        }
    }
    let r = start(&state, shop_ns(), fast());
    r.until("all 1100 patched", |_, m| {
        metric(
            m,
            r#"velero_hook_injector_reconcile_total{outcome="patched"} 1100"#,
        )
    })
    .await;
    assert!(
        state.lock().expect("lock").lists() >= 3,
        "paged: 500 + 500 + 100"
    );
    r.reconciler.abort();
}

/// The Schedule scan: Velero's Schedules are only ever read (GET on schedules.velero.io in
/// --velero-namespace), and the gauge counts the cached pods whose annotation hooks make Velero
/// skip a selecting Schedule's spec hooks; without Velero's CRDs (404) it falls back to 0.
#[tokio::test]
async fn schedules_are_read_only_and_the_shadowed_gauge_follows_them() {
    let state: Shared = Arc::new(Mutex::new(State::default()));
    let schedules = json!({
        "apiVersion": "velero.io/v1", "kind": "ScheduleList", "metadata": {"resourceVersion": "3"},
        "items": [{
            "apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": {"name": "nightly", "namespace": "backup-system"},
            "spec": {"schedule": "0 3 * * *", "template": {
                "includedNamespaces": ["sh*"],
                "hooks": {"resources": [{"name": "quiesce", "pre": [{"exec": {"command": ["/bin/sync"]}}]}]}
            }}
        }]
    });
    {
        let mut s = state.lock().expect("lock");
        // The user's own pre hook, opted out of injection: the reconciler never patches it.
        s.add_pod(db_pod(
            "shop",
            "pg-0",
            "postgres:16",
            json!({"velero-hook-injector.io/inject": "false", "pre.hook.backup.velero.io/command": "[\"/bin/true\"]"}),
        ));
        s.add_pod(db_pod(
            "shop",
            "pg-1",
            "postgres:16",
            json!({"velero-hook-injector.io/inject": "false"}),
        ));
        for _ in 0..3 {
            s.scripts.push_back(Script {
                method: Method::GET,
                path_suffix: "/apis/velero.io/v1/namespaces/backup-system/schedules".into(),
                status: 200,
                body: schedules.clone(),
                before: None,
            });
        }
    }
    let cfg = Config {
        resync: Duration::from_millis(300),
        velero_namespace: "backup-system".into(),
        ..fast()
    };
    let r = start(&state, shop_ns(), cfg);
    r.until("the gauge counts the shadowed pod", |_, m| {
        metric(m, "velero_hook_injector_spec_hooks_shadowed_pods 1")
    })
    .await;
    // The scripted lists are used up: the fake then answers 404, as without Velero's CRDs.
    r.until("the gauge falls back to 0", |s, m| {
        s.scripts.is_empty() && metric(m, "velero_hook_injector_spec_hooks_shadowed_pods 0")
    })
    .await;
    r.reconciler.abort();
    let s = state.lock().expect("lock");
    let touching: Vec<&fake::Recorded> = s
        .log
        .iter()
        .filter(|q| q.path.contains("velero.io"))
        .collect();
    assert!(touching.len() >= 4, "{touching:#?}");
    assert!(
        touching.iter().all(|q| q.method == Method::GET),
        "{touching:#?}"
    );
    assert!(s.patches().is_empty(), "opted-out pods are never patched");
}
