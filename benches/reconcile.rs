//! The reconciler's cost against the fake API server of tests/reconcile (kube's mock client
//! service, no network): heap held with 10,000 pods in its cache, time to reconcile 1,000
//! unhooked pods, and the rate limit holding. See docs/performance.md.
//!
//! `cargo bench --bench reconcile`

#[path = "../tests/reconcile/fake.rs"]
mod fake;
#[path = "support/pods.rs"]
mod pods;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use velero_hook_injector::admission::policy::{NamespaceLookup, NamespaceView};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::reconcile::controller::{self, Config, Reconciler};
use velero_hook_injector::reconcile::decide::Namespaces;
use velero_hook_injector::reconcile::metrics::ReconcileMetrics;
use velero_hook_injector::server::metrics::Metrics;

/// Counts live heap bytes, so that the cache is measured and not the allocator's habits.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

struct OptedIn;
impl NamespaceLookup for OptedIn {
    fn lookup(&self, _: &str) -> NamespaceView {
        NamespaceView::Known(None)
    }
}
impl Namespaces for OptedIn {
    fn opted_in(&self, _: &str) -> Result<bool, String> {
        Ok(true)
    }
}

/// A pod as the API server lists it: the captured 2-init/2-container pod, with managedFields and
/// a running status. `database` makes container 0 PostgreSQL with a PVC; `hooked` adds the hooks.
fn realistic(i: usize, database: bool, hooked: bool, library: &Library) -> Value {
    let review = if database {
        pods::typical_database()
    } else {
        pods::fixture("pod-create-multi-container-init.json")
    };
    let mut p = review["request"]["object"].clone();
    let name = format!("app-{i}");
    p["metadata"]["name"] = json!(name);
    p["metadata"]["namespace"] = json!(format!("team-{}", i % 50));
    p["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{i:012}"));
    p["metadata"]["managedFields"] = json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-01T10:00:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:ownerReferences": {}}, "f:spec": {"f:containers": {}, "f:volumes": {}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-01T10:00:05Z", "subresource": "status",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}, "f:podIP": {}}}}
    ]);
    if hooked {
        let mut a = library
            .get("postgres")
            .expect("pg")
            .annotations(p["spec"]["containers"][0]["name"].as_str().unwrap_or("db"));
        a.insert(
            "velero-hook-injector.io/injected".into(),
            "postgres/x".into(),
        );
        for (k, v) in a {
            p["metadata"]["annotations"][k] = json!(v);
        }
    }
    p["status"] = json!({
        "phase": "Running", "podIP": format!("10.244.{}.{}", i / 250, i % 250), "hostIP": "10.0.0.4",
        "startTime": "2026-11-01T10:00:01Z", "qosClass": "Burstable",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-01T10:00:02Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-01T10:00:09Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-01T10:00:09Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-01T10:00:00Z"}
        ],
        "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "image": "img", "imageID": "docker.io/library/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "containerID": "containerd://0123456789abcdef", "started": true, "state": {"running": {"startedAt": "2026-11-01T10:00:03Z"}}},
            {"name": "b", "ready": true, "restartCount": 0, "image": "img", "imageID": "docker.io/library/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "containerID": "containerd://0123456789abcdef", "started": true, "state": {"running": {"startedAt": "2026-11-01T10:00:03Z"}}}
        ]
    });
    p
}

fn start(state: &fake::Shared, cfg: Config) -> (Reconciler, Metrics) {
    let mut metrics = Metrics::new();
    let rm = ReconcileMetrics::register(metrics.registry_mut());
    let library = Arc::new(Library::builtin().expect("library"));
    let r = controller::spawn(
        fake::client(state),
        Arc::new(OptedIn),
        Arc::new(library),
        rm,
        cfg,
    );
    (r, metrics)
}

fn counter(metrics: &Metrics, outcome: &str) -> u64 {
    let prefix = format!("velero_hook_injector_reconcile_total{{outcome=\"{outcome}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn gauge(metrics: &Metrics, name: &str) -> i64 {
    let prefix = format!("{name} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

async fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out after {:?}: {what}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t.elapsed()
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn memory_with_10000_pods() {
    let library = Library::builtin().expect("library");
    let state: fake::Shared = Arc::new(Mutex::new(fake::State::default()));
    let n = 10_000;
    let mut bytes = 0;
    {
        let mut s = state.lock().expect("lock");
        // 10% databases, all hooked already: the steady state, the cache is all that grows.
        for i in 0..n {
            let p = realistic(i, i % 10 == 0, i % 10 == 0, &library);
            bytes += p.to_string().len();
            s.add_pod(p);
        }
    }
    // What the same pods cost as full typed objects (what a reflector without slimming holds).
    let before_full = live();
    let full: Vec<Pod> = {
        let s = state.lock().expect("lock");
        s.pods
            .values()
            .map(|p| serde_json::from_value(p.clone()).expect("pod"))
            .collect()
    };
    let full_bytes = live() - before_full;
    drop(full);

    let before = live();
    let (r, metrics) = start(
        &state,
        Config {
            rate: 1e6,
            burst: 1_000_000,
            ..Config::default()
        },
    );
    let took = wait_for("cache synced", Duration::from_secs(120), || {
        r.cached_pods() == n && gauge(&metrics, "velero_hook_injector_reconcile_queue_depth") == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = live() - before;
    println!(
        "memory: {n} pods ({:.1} MiB of pod JSON, 10% hooked databases): reconciler heap {:.1} MiB ({} B/pod) after sync in {:.2} s; the same pods unslimmed as typed objects: {:.1} MiB ({} B/pod); patches {}",
        mib(bytes),
        mib(held),
        held / n,
        took.as_secs_f64(),
        mib(full_bytes),
        full_bytes / n,
        counter(&metrics, "patched")
    );
    r.abort();
}

async fn reconcile_1000_unhooked() {
    let state: fake::Shared = Arc::new(Mutex::new(fake::State::default()));
    let library = Library::builtin().expect("library");
    let n = 1_000;
    {
        let mut s = state.lock().expect("lock");
        for i in 0..n {
            s.add_pod(realistic(i, true, false, &library));
        }
    }
    let (r, metrics) = start(
        &state,
        Config {
            rate: 1e9,
            burst: 1_000_000_000,
            ..Config::default()
        },
    );
    let took = wait_for("1000 patched", Duration::from_secs(300), || {
        counter(&metrics, "patched") == n as u64
    })
    .await;
    let patches = state.lock().expect("lock").patches().len();
    println!(
        "throughput: {n} unhooked pods reconciled (list, decide, PATCH, stored) in {:.2} s with no rate limit = {:.0} pods/s ({patches} PATCH requests, {} failed); at the default --reconcile-rate 5 that is {:.0} s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        counter(&metrics, "failed"),
        (n as f64 - 10.0) / 5.0
    );
    r.abort();
}

async fn rate_limit_holds() {
    let state: fake::Shared = Arc::new(Mutex::new(fake::State::default()));
    let library = Library::builtin().expect("library");
    let n = 300;
    {
        let mut s = state.lock().expect("lock");
        for i in 0..n {
            s.add_pod(realistic(i, true, false, &library));
        }
    }
    let (rate, burst) = (50.0, 10);
    let (r, metrics) = start(
        &state,
        Config {
            rate,
            burst,
            ..Config::default()
        },
    );
    let t_burst = wait_for("burst", Duration::from_secs(60), || {
        counter(&metrics, "patched") >= burst as u64
    })
    .await;
    let t_all = wait_for("all", Duration::from_secs(60), || {
        counter(&metrics, "patched") == n as u64
    })
    .await;
    let measured = (n - burst as usize) as f64 / t_all.as_secs_f64();
    println!(
        "rate limit: --reconcile-rate {rate} --reconcile-burst {burst}, {n} unhooked pods: first {burst} in {:.3} s, the other {} at {measured:.1} patches/s (ideal {rate})",
        t_burst.as_secs_f64(),
        n - burst as usize
    );
    r.abort();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and only checks it runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if quick {
        println!("reconcile bench: run with `cargo bench --bench reconcile`");
        return;
    }
    rt.block_on(async {
        memory_with_10000_pods().await;
        reconcile_1000_unhooked().await;
        rate_limit_holds().await;
    });
}
