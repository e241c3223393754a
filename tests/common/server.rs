//! Starts the real webhook server on an ephemeral port with a fresh CA, and a TLS client for it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::server::tls;
use velero_hook_injector::server::{self, AppState, Running, ServeConfig};

/// A running server with its certificate directory.
pub struct TestServer {
    pub running: Running,
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
    pub files: tls::CertFiles,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Duration::from_millis(100)).await
    }

    pub async fn start_with(reload_interval: Duration) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let files = tls::generate(dir.path(), &names, 7).expect("certs");
        let state = Arc::new(AppState::new(Library::builtin().expect("library")));
        let cfg = ServeConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            cert: files.cert.clone(),
            key: files.key.clone(),
            reload_interval,
            drain_timeout: Duration::from_secs(5),
            shutdown_delay: Duration::from_millis(0),
            idle_timeout: server::IDLE_TIMEOUT,
        };
        let running = server::start(cfg, Arc::clone(&state))
            .await
            .expect("server starts");
        Self {
            running,
            state,
            dir,
            files,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.running.addr.port())
    }

    /// The /metrics exposition, fetched over TLS.
    pub async fn metrics(&self, extra_cas: &[PathBuf]) -> String {
        let resp = self
            .client(extra_cas)
            .get(self.url("/metrics"))
            .send()
            .await;
        resp.expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// A client trusting only this server's CA (plus any extra CA files).
    pub fn client(&self, extra_cas: &[PathBuf]) -> reqwest::Client {
        let mut b = reqwest::Client::builder().tls_info(true).use_rustls_tls();
        for ca in std::iter::once(&self.files.ca).chain(extra_cas) {
            let pem = std::fs::read(ca).expect("ca");
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("ca pem"));
        }
        b.build().expect("client")
    }
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// Rewrites container `index` of a fixture's pod to `image`, mounting a PVC named `data` (and,
/// for MySQL and MariaDB, giving it the root password from a Secret, as the charts do).
pub fn make_database(review: &mut Value, index: usize, image: &str) {
    let spec = &mut review["request"]["object"]["spec"];
    spec["containers"][index]["image"] = json!(image);
    let mounts = spec["containers"][index]["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut mounts = mounts;
    mounts.push(json!({"name": "data", "mountPath": "/data"}));
    spec["containers"][index]["volumeMounts"] = json!(mounts);
    if image.starts_with("mysql") || image.starts_with("mariadb") {
        // The charts hand the root password from a Secret; the hooks log in with it.
        let mut env = spec["containers"][index]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        env.push(json!({"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "root-password"}}}));
        spec["containers"][index]["env"] = json!(env);
    }
    let mut volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}}));
    spec["volumes"] = json!(volumes);
}

/// Applies the response's base64 JSON Patch to the request's object.
pub fn apply_response(review: &Value, response: &Value) -> Value {
    let mut obj = review["request"]["object"].clone();
    if let Some(p) = response["response"]["patch"].as_str() {
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is RFC 6902");
        json_patch::patch(&mut obj, &patch).expect("patch applies");
    }
    obj
}
