//! The real server over real TLS, fed with AdmissionReviews captured from a kube-apiserver.

#[path = "common/server.rs"]
mod server;

use std::process::{Command, Stdio};

use serde_json::{Value, json};
use server::{TestServer, apply_response, fixture, make_database};

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).expect("ser"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let v = resp.json().await.expect("json body");
    (status, v)
}

#[tokio::test]
async fn every_captured_request_is_answered_and_database_pods_are_patched() {
    let srv = TestServer::start().await;
    let client = srv.client(&[]);
    let url = srv.url("/mutate");
    // (fixture, container rewritten to a database image, expected injected prefix)
    type Case = (
        &'static str,
        Option<(usize, &'static str)>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "pod-create-simple.json",
            Some((0, "postgres:16.4")),
            Some("postgres/simple"),
        ),
        ("pod-create-simple.json", None, None),
        (
            "pod-create-multi-container-init.json",
            Some((1, "bitnami/redis:7.2")),
            Some("redis/sidecar"),
        ),
        ("pod-create-multi-container-init.json", None, None),
        (
            "pod-create-generatename-serviceaccount.json",
            Some((0, "mariadb:10.11")),
            Some("mariadb/"),
        ),
        (
            "pod-create-dryrun-server.json",
            Some((0, "mysql:8.0")),
            Some("mysql/"),
        ),
        ("pod-update-annotate.json", Some((0, "postgres:16")), None),
    ];
    for (name, rewrite, want) in cases {
        let mut review = fixture(name);
        if let Some((i, image)) = rewrite {
            make_database(&mut review, i, image);
        }
        let (status, resp) = post(&client, &url, &review).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(resp["kind"], "AdmissionReview");
        assert_eq!(
            resp["response"]["uid"], review["request"]["uid"],
            "{name}: uid echoed"
        );
        assert_eq!(resp["response"]["allowed"], true, "{name}");
        let pod = apply_response(&review, &resp);
        let injected = pod["metadata"]["annotations"]["velero-hook-injector.io/injected"].as_str();
        match want {
            Some(prefix) => {
                let got = injected.unwrap_or_else(|| panic!("{name}: not injected: {resp}"));
                assert!(got.starts_with(prefix), "{name}: {got}");
                let container = got.split('/').nth(1).expect("container");
                assert_eq!(
                    pod["metadata"]["annotations"]["pre.hook.backup.velero.io/container"],
                    container
                );
                // The user's annotations are intact.
                for (k, v) in review["request"]["object"]["metadata"]["annotations"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(&pod["metadata"]["annotations"][k], v, "{name}: {k} changed");
                }
                let warnings = resp["response"]["warnings"].to_string();
                assert!(warnings.contains("injected"), "{name}: {warnings}");
                // The patched pod, admitted again, gets no patch.
                let mut again = review.clone();
                again["request"]["object"] = pod;
                let (_, resp2) = post(&client, &url, &again).await;
                assert!(
                    resp2["response"]["patch"].is_null(),
                    "{name}: second admission patched again"
                );
            }
            None => assert!(
                injected.is_none() && resp["response"]["patch"].is_null(),
                "{name}: {resp}"
            ),
        }
    }
    let metrics = srv.metrics(&[]).await;
    assert!(
        metrics.contains(
            r#"velero_hook_injector_admissions_total{mode="inject",namespace="wh-test-6737",outcome="injected",template="postgres"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="passthrough""#),
        "UPDATE passes through: {metrics}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_the_server_keeps_serving() {
    let srv = TestServer::start().await;
    let client = srv.client(&[]);
    let url = srv.url("/mutate");
    let send = |body: Vec<u8>, ct: &'static str| {
        let req = client.post(&url).header("content-type", ct).body(body);
        async move {
            let r = req.send().await.expect("request");
            (r.status().as_u16(), r.text().await.expect("text"))
        }
    };
    let mut v1beta1 = fixture("pod-create-simple.json");
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_uid = fixture("pod-create-simple.json");
    no_uid["request"]
        .as_object_mut()
        .expect("obj")
        .remove("uid");
    let mut no_object = fixture("pod-create-simple.json");
    no_object["request"]
        .as_object_mut()
        .expect("obj")
        .remove("object");
    let mut wrong_kind = fixture("pod-create-simple.json");
    wrong_kind["kind"] = json!("ConfigMap");
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (b"{not json".to_vec(), "application/json", 400, "not JSON"),
        (
            serde_json::to_vec(&v1beta1).expect("ser"),
            "application/json",
            400,
            "admissionReviewVersions",
        ),
        (
            serde_json::to_vec(&no_uid).expect("ser"),
            "application/json",
            400,
            "uid",
        ),
        (
            serde_json::to_vec(&no_object).expect("ser"),
            "application/json",
            400,
            "request.object",
        ),
        (
            serde_json::to_vec(&wrong_kind).expect("ser"),
            "application/json",
            400,
            "not AdmissionReview",
        ),
        (b"{}".to_vec(), "application/json", 400, "apiVersion"),
        (vec![0xff, 0xfe, 0x00], "application/json", 400, "not JSON"),
        (
            b"<xml/>".to_vec(),
            "application/xml",
            415,
            "application/json",
        ),
        (
            vec![b' '; 4 * 1024 * 1024],
            "application/json",
            413,
            "exceeds",
        ),
    ];
    for (body, ct, want_status, want_text) in cases {
        let (status, text) = send(body, ct).await;
        assert_eq!(status, want_status, "{text}");
        assert!(text.contains(want_text), "{want_status}: {text}");
    }
    let (status, resp) = post(&client, &url, &fixture("pod-create-simple.json")).await;
    assert_eq!((status, &resp["response"]["allowed"]), (200, &json!(true)));
}

#[tokio::test]
async fn kubectl_create_raw_talks_to_the_webhook_over_go_tls() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(std::env::var("CI").is_err(), "kubectl is required in CI");
        eprintln!("SKIPPED: kubectl not installed");
        return;
    }
    let srv = TestServer::start().await;
    let kubeconfig = srv.dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: vhi\n  cluster:\n    server: https://localhost:{}\n    certificate-authority: {}\ncontexts:\n- name: vhi\n  context: {{cluster: vhi, user: vhi}}\nusers:\n- name: vhi\n  user: {{token: unused}}\ncurrent-context: vhi\n",
            srv.running.addr.port(),
            srv.files.ca.display()
        ),
    )
    .expect("kubeconfig");
    let mut review = fixture("pod-create-simple.json");
    make_database(&mut review, 0, "postgres:17");
    let review_file = srv.dir.path().join("review.json");
    std::fs::write(&review_file, serde_json::to_vec(&review).expect("ser")).expect("write");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["create", "--raw", "/mutate", "-f"])
            .arg(&review_file)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp: Value = serde_json::from_slice(&out.stdout).expect("kubectl printed the review");
    let pod = apply_response(&review, &resp);
    assert_eq!(
        pod["metadata"]["annotations"]["velero-hook-injector.io/injected"],
        "postgres/simple"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let srv = TestServer::start().await;
    let client = srv.client(&[]);
    for path in ["/healthz", "/readyz"] {
        let r = client.get(srv.url(path)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = client.get(srv.url("/metrics")).send().await.expect("get");
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("# TYPE velero_hook_injector_admission_duration_seconds histogram")
    );
}
