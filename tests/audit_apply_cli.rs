//! The binary's `audit --apply` end to end against a small HTTP stand-in for the API server on
//! loopback (plain HTTP, not a real kube-apiserver): the per-pod lines, the summary, and the exit
//! codes 0 (all fixed), 1 (dry run: findings remain) and 3 (a patch failed).

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_velero-hook-injector");

#[derive(Clone)]
struct Api {
    /// Status the PATCH gets (200 applies it).
    patch_status: u16,
    pod: Arc<Mutex<Value>>,
    patch_queries: Arc<Mutex<Vec<String>>>,
}

fn pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "shop", "uid": "u", "resourceVersion": "41",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s"}]},
        "spec": {"containers": [{"name": "db", "image": "postgres:16",
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]},
        "status": {"phase": "Running"}})
}

async fn serve(api: Api) -> String {
    let app = Router::new()
        .route(
            "/api/v1/namespaces/shop/pods",
            get(|State(a): State<Api>| async move {
                let item = a.pod.lock().expect("lock").clone();
                axum::Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "42"}, "items": [item]}))
            }),
        )
        .route(
            "/api/v1/namespaces/shop",
            get(|| async {
                axum::Json(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "shop", "labels": {"velero-hook-injector.io/inject": "enabled"}}}))
            }),
        )
        .route(
            "/api/v1/namespaces/shop/pods/db-0",
            axum::routing::patch(
                |State(a): State<Api>, uri: Uri, body: Bytes| async move {
                    let q = uri.query().unwrap_or_default().to_owned();
                    a.patch_queries.lock().expect("lock").push(q.clone());
                    if a.patch_status != 200 {
                        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": a.patch_status,
                            "reason": "Forbidden", "message": "pods \"db-0\" is forbidden: User \"ci\" cannot patch resource \"pods\" in the namespace \"shop\""});
                        return (StatusCode::from_u16(a.patch_status).expect("code"), axum::Json(status));
                    }
                    let patch: Value = serde_json::from_slice(&body).expect("merge patch");
                    let mut p = a.pod.lock().expect("lock");
                    let mut next = p.clone();
                    json_patch::merge(&mut next, &patch);
                    if !q.split('&').any(|p| p == "dryRun=All") {
                        next["metadata"]["resourceVersion"] = json!("43");
                        *p = next.clone();
                    }
                    (StatusCode::OK, axum::Json(next))
                },
            ),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn kubeconfig(dir: &std::path::Path, server: &str) -> String {
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n  - name: t\n    cluster: {{server: \"{server}\"}}\nusers:\n  - name: u\n    user: {{token: \"not-a-secret\"}}\ncontexts:\n  - name: t\n    context: {{cluster: t, user: u, namespace: shop}}\n"
        ),
    )
    .expect("kubeconfig");
    path.to_str().expect("utf-8").to_owned()
}

async fn run(patch_status: u16, extra: &[&str]) -> (Option<i32>, String, Api) {
    let api = Api {
        patch_status,
        pod: Arc::new(Mutex::new(pod())),
        patch_queries: Arc::default(),
    };
    let server = serve(api.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &server);
    let mut args: Vec<String> = ["audit", "--apply", "--kubeconfig", config.as_str()]
        .map(str::to_owned)
        .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), format!("{stdout}{stderr}"), api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_fixes_the_pod_and_exits_zero() {
    let (code, out, api) = run(200, &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("patched      shop/db-0  added the postgres/db hooks"),
        "{out}"
    );
    assert!(
        out.contains("1 patched, 0 unchanged, 0 gone, 0 failed; 0 pods still with findings"),
        "{out}"
    );
    let pod = api.pod.lock().expect("lock").clone();
    assert_eq!(
        pod["metadata"]["annotations"]["velero-hook-injector.io/injected"],
        "postgres/db"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_exits_one() {
    let (code, out, api) = run(200, &["--dry-run"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("would-patch  shop/db-0"), "{out}");
    assert!(
        api.pod.lock().expect("lock")["metadata"]
            .get("annotations")
            .is_none()
    );
    assert!(api.patch_queries.lock().expect("lock")[0].contains("dryRun=All"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_patch_exits_three_with_the_fix() {
    let (code, out, _) = run(403, &[]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("failed       shop/db-0  forbidden"), "{out}");
    assert!(
        out.contains("kubectl auth can-i patch pods -n shop"),
        "{out}"
    );
    assert!(out.contains("1 failed"), "{out}");
}
