//! `render` output read back by a YAML 1.1 reader, as kubectl reads it: PyYAML (`yaml.safe_load`,
//! YAML 1.1) must give exactly the JSON the webhook meant, for Bitnami-shaped manifests whose env
//! values YAML 1.1 would otherwise turn into booleans, octal or sexagesimal numbers, nulls and
//! timestamps; and a `kind: List` (what `kubectl get -o yaml` prints) is rendered item by item.
//!
//! Needs `python3` with PyYAML (Debian: python3-yaml, installed by tests/db/setup.sh). Without
//! it the test says it was skipped, or fails when VHI_REQUIRE_DB_TESTS=1 (CI).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use velero_hook_injector::admission::render;
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::pod::backup_method::ClusterDefaults;

const BIN: &str = env!("CARGO_BIN_EXE_velero-hook-injector");

/// Strings YAML 1.1 resolves to something else when written plain.
const AMBIGUOUS: &[&str] = &[
    "no",
    "yes",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "N",
    "NO",
    "Yes",
    "On",
    "OFF",
    "true",
    "False",
    "~",
    "null",
    "Null",
    "",
    "0755",
    "0o755",
    "0x1F",
    "0b1010",
    "1_000",
    "1:30",
    "190:20:30",
    "-1:30",
    "1:30:00.5",
    ".inf",
    "-.Inf",
    ".NaN",
    "1e3",
    "1.5",
    "685_230.15",
    "+12",
    "-0",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "=",
    "<<",
];

/// A Bitnami postgresql StatefulSet (chart 16.x shape) with `values` as env values, plus a
/// ConfigMap whose data holds the same strings and a multi-line file, and a Service.
fn manifests(values: &[&str]) -> Vec<Value> {
    let env: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": format!("VALUE_{i}"), "value": v}))
        .chain([
            json!({"name": "BITNAMI_DEBUG", "value": "no"}),
            json!({"name": "POSTGRESQL_PORT_NUMBER", "value": "5432"}),
            json!({"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}}}),
            json!({"name": "POSTGRESQL_ENABLE_TLS", "value": "no"}),
            json!({"name": "POSTGRESQL_VOLUME_DIR", "value": "/bitnami/postgresql"}),
            json!({"name": "CONFIG", "value": "line one\n  indented: yes\n\nlast\n"}),
        ])
        .collect();
    let data: serde_json::Map<String, Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), json!(v)))
        .chain([
            ("on".to_owned(), json!("a key YAML 1.1 reads as true")),
            (
                "postgresql.conf".to_owned(),
                json!("listen_addresses = '*'\nport = 5432\n"),
            ),
        ])
        .collect();
    vec![
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "pg-postgresql", "labels": {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/version": "16.4.0"}},
            "spec": {
                "replicas": 1, "serviceName": "pg-postgresql-hl",
                "selector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "postgresql"}, "annotations": {"checksum/config": "0755"}},
                    "spec": {
                        "securityContext": {"fsGroup": 1001},
                        "containers": [{
                            "name": "postgresql", "image": "docker.io/bitnami/postgresql:16.4.0-debian-12-r0",
                            "env": env,
                            "ports": [{"name": "tcp-postgresql", "containerPort": 5432}],
                            "resources": {"limits": {"cpu": "375m", "memory": "384Mi"}},
                            "volumeMounts": [{"name": "data", "mountPath": "/bitnami/postgresql"}]
                        }]
                    }
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}}}]
            }
        }),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pg-config"}, "data": data}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pg-postgresql"},
               "spec": {"ports": [{"port": 5432, "targetPort": "tcp-postgresql"}], "x-weight": 1.5e300}}),
    ]
}

/// Every YAML document of `text` as PyYAML (YAML 1.1) reads it, as JSON; `None` when python3 or
/// PyYAML is missing.
fn yaml11(text: &str) -> Option<Vec<Value>> {
    // Debian's interpreter, where tests/db/setup.sh installs python3-yaml; a python3 earlier on
    // PATH (pyenv, a venv) need not have PyYAML.
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
        .unwrap_or("python3");
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        return None;
    }
    assert!(
        out.status.success(),
        "PyYAML could not read the output: {stderr}\n{text}"
    );
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

fn skipped(why: &str) {
    assert!(
        std::env::var("VHI_REQUIRE_DB_TESTS").as_deref() != Ok("1"),
        "VHI_REQUIRE_DB_TESTS=1 but {why}"
    );
    eprintln!("SKIPPED: {why} (install python3-yaml: tests/db/setup.sh)");
}

fn render_binary(input: &str) -> String {
    let mut child = Command::new(BIN)
        .args(["render", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// What the webhook means each document to be: the library's rendering of it.
fn meant(docs: &[Value]) -> Vec<Value> {
    let library = Library::builtin().expect("builtin");
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            render::render_document("-", i + 1, d.clone(), &library, ClusterDefaults::default())
                .expect("renders")
                .0
        })
        .collect()
}

const INJECTED: &str = "/spec/template/metadata/annotations/velero-hook-injector.io~1injected";

#[test]
fn kubectl_reads_rendered_manifests_back_as_the_json_we_meant() {
    let docs = manifests(AMBIGUOUS);
    // JSON input: what the strings are is not in doubt.
    let input: String = docs.iter().map(|d| format!("---\n{d}\n")).collect();
    let output = render_binary(&input);
    let want = meant(&docs);
    assert_eq!(
        want[0].pointer(INJECTED),
        Some(&json!("postgres/postgresql")),
        "the hooks were injected"
    );
    let Some(read) = yaml11(&output) else {
        return skipped("python3 with PyYAML is not installed");
    };
    assert_eq!(read.len(), want.len());
    for (got, want) in read.iter().zip(&want) {
        assert_eq!(got, want, "YAML 1.1 read back something else:\n{output}");
    }
}

#[test]
fn a_kind_list_is_rendered_item_by_item_and_read_back_the_same() {
    let items = manifests(&["no", "0755", "1:30"]);
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
    let output = render_binary(&list.to_string());
    let library = Library::builtin().expect("builtin");
    let (want, rendered) =
        render::render_document("-", 1, list, &library, ClusterDefaults::default())
            .expect("renders");
    assert_eq!(rendered.len(), 3, "one result per item");
    assert_eq!(
        want.pointer(&format!("/items/0{INJECTED}")),
        Some(&json!("postgres/postgresql")),
        "the StatefulSet inside the List got its hooks"
    );
    let Some(read) = yaml11(&output) else {
        return skipped("python3 with PyYAML is not installed");
    };
    assert_eq!(read, vec![want], "{output}");
}
