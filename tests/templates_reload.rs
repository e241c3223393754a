//! Custom templates: hot reload with real files, and `templates validate` giving the same verdict.

#[path = "common/server.rs"]
mod server;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use server::{TestServer, apply_response, fixture, make_database};
use velero_hook_injector::server::watch_templates;

const CUSTOM: &str = r#"# Our own in-house database, and a stricter kafka.
name: acme-db
engine: acme
description: In-house database; flushes with its own CLI.
match:
  images: [acme/acme-db]
hooks:
  preBackup: {command: [acme-cli, flush, --wait], onError: Fail, timeout: 2m}
  postRestore: {command: [acme-cli, check], onError: Continue, execTimeout: 1m, waitTimeout: 10m, waitForReady: true}
"#;

const BROKEN: &str = "name: acme-db\nengine: acme\ndescription: d\nmatch: {images: [acme/acme-db]}\nhooks:\n  preBackup: {command: acme-cli flush, onError: Fail, timeout: 2m}\n";

async fn injected(srv: &TestServer, image: &str) -> Option<String> {
    let mut review = fixture("pod-create-simple.json");
    make_database(&mut review, 0, image);
    let resp: Value = srv
        .client(&[])
        .post(srv.url("/mutate"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).expect("ser"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let pod = apply_response(&review, &resp);
    pod["metadata"]["annotations"]["pre.hook.backup.velero.io/command"]
        .as_str()
        .map(str::to_owned)
}

async fn eventually(srv: &TestServer, image: &str, want: Option<&str>) -> Option<String> {
    let mut got = None;
    for _ in 0..50 {
        got = injected(srv, image).await;
        if got.as_deref() == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    got
}

#[tokio::test]
async fn a_valid_file_takes_effect_and_an_invalid_one_keeps_the_last_good_library() {
    let srv = TestServer::start().await;
    let file = srv.dir.path().join("templates.yaml");
    std::fs::write(&file, "# empty for now\n").expect("write");
    tokio::spawn(watch_templates(
        file.clone(),
        Duration::from_millis(30),
        Arc::clone(&srv.state),
    ));
    assert_eq!(
        injected(&srv, "acme/acme-db:1.0").await,
        None,
        "unknown image before the file has it"
    );

    std::fs::write(&file, CUSTOM).expect("write");
    let got = eventually(
        &srv,
        "acme/acme-db:1.0",
        Some(r#"["acme-cli","flush","--wait"]"#),
    )
    .await;
    assert_eq!(
        got.as_deref(),
        Some(r#"["acme-cli","flush","--wait"]"#),
        "new template served without restart"
    );

    std::fs::write(&file, BROKEN).expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        injected(&srv, "acme/acme-db:1.0").await.as_deref(),
        Some(r#"["acme-cli","flush","--wait"]"#),
        "an invalid file must not replace the last good library"
    );
    // Built-ins keep working alongside custom templates.
    assert!(injected(&srv, "postgres:16").await.is_some());
    let metrics = srv.metrics(&[]).await;
    assert!(
        metrics.contains(r#"reloads_total{kind="templates",result="failure"} 1"#),
        "{metrics}"
    );
    // What VeleroHookInjectorTemplateReloadFailing reads: the refusal is the current state, and
    // the library in force still holds the six built-ins plus acme-db.
    let builtins = velero_hook_injector::hooks::template::Library::builtin()
        .expect("builtins")
        .names()
        .len();
    assert!(
        metrics.contains(r#"velero_hook_injector_last_reload_successful{kind="templates"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "velero_hook_injector_templates_loaded {}",
            builtins + 1
        )),
        "{metrics}"
    );
    // Fixing the file clears the state.
    std::fs::write(&file, CUSTOM.replace("--wait", "--sync")).expect("write");
    eventually(
        &srv,
        "acme/acme-db:1.0",
        Some(r#"["acme-cli","flush","--sync"]"#),
    )
    .await;
    let metrics = srv.metrics(&[]).await;
    assert!(
        metrics.contains(r#"velero_hook_injector_last_reload_successful{kind="templates"} 1"#),
        "{metrics}"
    );
}

#[test]
fn validate_gives_the_same_verdict_with_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let bin = env!("CARGO_BIN_EXE_velero-hook-injector");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, CUSTOM).expect("write");
    let out = Command::new(bin)
        .args(["templates", "validate"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"acme-db\" is valid (adds)"));

    let cases = [
        (BROKEN.to_owned(), "good.yaml", ":6", "invalid type"),
        (CUSTOM.replace("onError: Fail", "onError: fail"), "", ":8", "unknown variant `fail`"),
        (CUSTOM.replace("timeout: 2m", "timeout: \"120\""), "", ":8", "Go duration"),
        (CUSTOM.replace(", waitTimeout: 10m", ""), "", "", "waitTimeout"),
        (CUSTOM.replace("description:", "descripton:"), "", "", "unknown field `descripton`"),
        (
            "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  initRestore: {containerImage: busybox, containerName: init}\n".to_owned(),
            "",
            "",
            "missing field `command`",
        ),
    ];
    for (i, (text, _, line, reason)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&f, text).expect("write");
        let out = Command::new(bin)
            .args(["templates", "validate"])
            .arg(&f)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} accepted");
        assert!(
            err.contains(&format!("bad{i}.yaml{line}")),
            "case {i}: {err}"
        );
        assert!(err.contains(reason), "case {i}: {err}");
    }
}
