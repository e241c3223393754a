//! Certificate rotation under load: no failed request, and the new certificate is served after.

#[path = "common/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use server::TestServer;
use velero_hook_injector::server::tls;

fn der(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .expect("pem")
        .as_ref()
        .to_vec()
}

/// Replaces `dst` atomically, as the kubelet's symlink swap does for a mounted Secret.
fn replace(src: &std::path::Path, dst: &std::path::Path) {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dst).expect("rename");
}

async fn served_cert(srv: &TestServer, extra: &[std::path::PathBuf]) -> Vec<u8> {
    // A new client: a new connection and a new handshake.
    let resp = srv
        .client(extra)
        .get(srv.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("tls info");
    info.peer_certificate().expect("peer cert").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_serves_the_new_pair() {
    let srv = TestServer::start_with(Duration::from_millis(50)).await;
    let next_dir = tempfile::tempdir().expect("tmp");
    // 30 days, not the first pair's 7: the expiry metric must visibly change on reload.
    let next = tls::generate(next_dir.path(), &["localhost".to_owned()], 30).expect("next pair");
    let trust = vec![next.ca.clone()];
    let old_der = der(&srv.files.cert);
    assert_eq!(served_cert(&srv, &trust).await, old_der);
    let expiry = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("velero_hook_injector_certificate_expiration_timestamp_seconds ")
            })
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no certificate expiry in\n{metrics}"))
    };
    let before = expiry(&srv.metrics(&trust).await);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for i in 0..4 {
        // Half the loops reconnect on every request, so handshakes happen during the swap.
        let client = if i % 2 == 0 {
            srv.client(&trust)
        } else {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&std::fs::read(&srv.files.ca).expect("ca"))
                        .expect("ca"),
                )
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&std::fs::read(&next.ca).expect("ca"))
                        .expect("ca"),
                )
                .build()
                .expect("client")
        };
        let url = srv.url("/mutate");
        let body = serde_json::to_vec(&server::fixture("pod-create-simple.json")).expect("ser");
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A torn update: the new certificate lands before its key. Refused; the old pair keeps serving.
    replace(&next.cert, &srv.files.cert);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served_cert(&srv, &trust).await,
        old_der,
        "a mismatched pair must not be served"
    );
    let torn = srv.metrics(&trust).await;
    assert!(
        torn.contains(r#"velero_hook_injector_last_reload_successful{kind="certificate"} 0"#),
        "{torn}"
    );
    assert_eq!(
        expiry(&torn),
        before,
        "the expiry is the served certificate's"
    );
    replace(&next.key, &srv.files.key);
    tokio::time::sleep(Duration::from_millis(400)).await;

    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.expect("loop");
    }
    assert_eq!(
        served_cert(&srv, &trust).await,
        der(&next.cert),
        "the new certificate is served"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during rotation"
    );
    assert!(
        ok.load(Ordering::SeqCst) > 50,
        "the load loop barely ran: {}",
        ok.load(Ordering::SeqCst)
    );
    let metrics = srv.metrics(&trust).await;
    assert!(
        metrics.contains(
            r#"velero_hook_injector_reloads_total{kind="certificate",result="failure"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"velero_hook_injector_reloads_total{kind="certificate",result="success"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"velero_hook_injector_last_reload_successful{kind="certificate"} 1"#),
        "{metrics}"
    );
    let next_expiry = tls::load(&next.cert, &next.key).expect("next").not_after;
    assert!(next_expiry > before + 20 * 86_400);
    assert_eq!(
        expiry(&metrics),
        next_expiry,
        "the expiry follows the reload"
    );
}
