//! SIGTERM under load: in-flight admissions complete, the process exits cleanly and promptly.

#[path = "common/server.rs"]
mod server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::stream;
use velero_hook_injector::server::tls;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    let files = tls::generate(dir.path(), &["localhost".to_owned()], 7).expect("certs");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_velero-hook-injector"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--shutdown-delay",
            "300ms",
            "--drain-timeout",
            "5s",
        ])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&files.ca).expect("ca")).expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .expect("client");
    let base = format!("https://localhost:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Requests whose bodies are still being sent when SIGTERM arrives: truly in flight.
    let body = serde_json::to_vec(&server::fixture("pod-create-simple.json")).expect("ser");
    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let (head, tail) = body.split_at(body.len() / 2);
        let chunks = vec![head.to_vec(), tail.to_vec()];
        let slow = stream::unfold((chunks, 0usize), |(chunks, i)| async move {
            if i >= chunks.len() {
                return None;
            }
            if i == 1 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            Some((Ok::<_, std::io::Error>(chunks[i].clone()), (chunks, i + 1)))
        });
        let req = client
            .post(format!("{base}/mutate"))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(reqwest::Body::wrap_stream(slow));
        in_flight.push(tokio::spawn(async move {
            req.send().await.map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    // During the shutdown delay the server still answers, but reports not ready.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("still serving");
    assert_eq!(r.status().as_u16(), 503);

    for f in in_flight {
        assert_eq!(
            f.await.expect("join").expect("in-flight request failed"),
            200
        );
    }
    let exit = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "took {:?} to stop",
        sent.elapsed()
    );
}
