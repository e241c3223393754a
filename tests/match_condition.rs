//! The webhook's CEL match condition never hides a pod the webhook would act on, but for a
//! malformed image alone.
//!
//! The expression `templates match-condition` prints (and the chart ships) is evaluated with a
//! real CEL implementation (the `cel` crate: cel-go's semantics and strings extension) with
//! `object` bound to the pod, as the API server binds it, and compared with the real admission
//! answer in each mode (inject, warn, enforce): whenever the webhook would patch the pod, warn
//! about it or deny it, the condition must be true. One answer alone may be missed: the warning
//! that a container's image is not a valid reference, on a pod no template could match (the
//! kubelet refuses such a pod with `InvalidImageName` anyway; docs/match-conditions.md). Pods: the captured AdmissionReviews
//! (tests/fixtures), the chart-shaped pods (tests/deployments), every image the detection tests
//! name, and generated pods and image references (registries, ports, digests, tags, nested
//! paths, upper case, exporter and UI look-alikes). It must also be useful: false for the
//! everyday non-database pods.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use velero_hook_injector::admission::policy::{Mode, NoNamespaces};
use velero_hook_injector::admission::{self, Context};
use velero_hook_injector::hooks::match_condition;
use velero_hook_injector::hooks::template::{Library, Template};
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::pod::image::ImageRef;

/// The expression for `library`, compiled in an environment with the strings extension, as
/// Kubernetes' CEL has it.
struct Condition {
    env: Arc<cel::Env>,
    program: cel::Program,
}

impl Condition {
    fn new(library: &Library) -> Self {
        Self::compile(&match_condition::expression(library))
    }

    /// Any expression, compiled as [`Condition::new`] compiles the generated one.
    fn compile(source: &str) -> Self {
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .expect("strings extension");
        let program = env
            .compile(source)
            .unwrap_or_else(|e| panic!("the expression does not compile: {e:?}\n{source}"));
        Self {
            env: Arc::new(env),
            program,
        }
    }

    /// The condition for `pod` (the request's `object`).
    fn eval(&self, pod: &Value) -> bool {
        let mut ctx = cel::Context::with_env(self.env.clone());
        ctx.add_variable("object", pod).expect("pod binds");
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => b,
            other => panic!("the condition did not give a bool: {other:?} for {pod}"),
        }
    }
}

fn builtin() -> Library {
    Library::builtin().expect("built-in templates")
}

/// The webhook's answer to `pod` in `mode`, as far as a user can notice it.
#[derive(Debug, Default)]
struct Answer {
    deny: bool,
    patch: bool,
    warnings: Vec<String>,
}

/// What the webhook does with `pod` in `mode`: "patch", "warn", "deny", or `None` for nothing a
/// user could notice (no patch, no warning, admitted).
fn acts(pod: &Value, library: &Library, mode: Mode) -> Option<&'static str> {
    answer(pod, library, mode).act()
}

impl Answer {
    /// "patch", "warn", "deny", or `None` for nothing a user could notice.
    fn act(&self) -> Option<&'static str> {
        if self.deny {
            Some("deny")
        } else if self.patch {
            Some("patch")
        } else if !self.warnings.is_empty() {
            Some("warn")
        } else {
            None
        }
    }
}

/// The webhook's answer to `pod` in `mode`.
fn answer(pod: &Value, library: &Library, mode: Mode) -> Answer {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "db",
            "operation": "CREATE",
            "userInfo": {"username": "u"},
            "object": pod,
            "dryRun": false,
        }
    });
    let ctx = Context {
        library,
        cluster_mode: mode,
        namespaces: &NoNamespaces,
        backup_defaults: ClusterDefaults::default(),
    };
    let body = serde_json::to_vec(&review).expect("ser");
    // A body the webhook refuses to read is answered with an error either way.
    let Ok(out) = admission::review_with(&body, &ctx) else {
        return Answer::default();
    };
    let resp: Value = serde_json::from_slice(&out.body).expect("response json");
    let r = &resp["response"];
    Answer {
        deny: r["allowed"] == false,
        patch: r["patch"].is_string(),
        warnings: r["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w.as_str().unwrap_or_default().to_owned())
            .collect(),
    }
}

/// The images of `pod`'s containers (`spec.containers`, the list detection reads).
fn images(pod: &Value) -> impl Iterator<Item = (&str, &str)> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["name"].as_str().unwrap_or_default(), c["image"].as_str()?)))
}

/// The one answer the condition may hide: detection's warning for each container whose image is
/// not a valid reference, in container order, when no container runs an image a template
/// matches. `None` when the pod is not of that kind.
fn malformed_image_warnings(pod: &Value, library: &Library) -> Option<Vec<String>> {
    let mut warnings = Vec::new();
    for (name, image) in images(pod) {
        match ImageRef::parse(image) {
            Ok(i) if library.find_for_image(&i).is_some() => return None,
            Ok(_) => {}
            Err(e) => warnings.push(format!("velero-hook-injector: container {name:?}: {e}")),
        }
    }
    (!warnings.is_empty()).then_some(warnings)
}

/// Fails when the webhook would act on `pod` in some mode while the condition is false, unless
/// all it would do is warn that images are malformed on a pod no template could match.
fn check(cond: &Condition, library: &Library, pod: &Value, what: &str) -> Result<bool, String> {
    let on = cond.eval(pod);
    if !on {
        let malformed = malformed_image_warnings(pod, library);
        for mode in [Mode::Inject, Mode::Warn, Mode::Enforce] {
            let a = answer(pod, library, mode);
            let only_malformed = !a.deny && !a.patch && Some(&a.warnings) == malformed.as_ref();
            match a.act() {
                Some(act) if !only_malformed => {
                    return Err(format!(
                        "{what}: the condition is false but the webhook would {act} in {mode} mode ({a:?}): {pod}"
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(on)
}

fn db_pod(image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "db", "labels": {"app": "db"}},
        "spec": {
            "containers": [{"name": "db", "image": image, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
        }
    })
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "json") {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
            out.push((path.display().to_string(), v["request"]["object"].clone()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn captured_admission_reviews() {
    let library = builtin();
    let cond = Condition::new(&library);
    for (name, pod) in fixtures() {
        check(&cond, &library, &pod, &name).unwrap_or_else(|e| panic!("{e}"));
        // The same real request shape turned into a database in each container.
        let containers = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
        for i in 0..containers {
            let mut db = pod.clone();
            db["spec"]["containers"][i]["image"] = json!("postgres:16");
            db["spec"]["containers"][i]["volumeMounts"] =
                json!([{"name": "data", "mountPath": "/var/lib/postgresql/data"}]);
            db["spec"]["volumes"] =
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]);
            assert!(cond.eval(&db), "{name} container {i} as postgres");
            check(&cond, &library, &db, &name).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn chart_shaped_pods_of_the_real_deployments() {
    let library = builtin();
    let cond = Condition::new(&library);
    let dir = format!("{}/tests/deployments", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("deployments") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        doc.apply_merge().expect("merge keys");
        let cases = match doc {
            serde_yaml::Value::Mapping(mut m) => m.remove("cases").expect("cases"),
            v => v,
        };
        for case in cases.as_sequence().expect("a list of cases") {
            let name = format!("{}: {:?}", path.display(), case["name"].as_str());
            let pod: Value = serde_json::to_value(&case["pod"]).expect("pod as json");
            check(&cond, &library, &pod, &name).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen > 20, "only {seen} deployment cases read");
}

/// Every image the detection tests name (`db_pod("…")`, `"image": "…"` and the allow-list
/// cases), read from their source so that a new detection test is covered here too.
fn detection_test_images() -> Vec<String> {
    let mut out = Vec::new();
    for file in [
        "src/hooks/detect.rs",
        "src/hooks/template.rs",
        "src/pod/image.rs",
    ] {
        let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("source");
        let tests = &text[text.find("#[cfg(test)]").unwrap_or(0)..];
        for (open, close) in [
            ("db_pod(\"", "\""),
            ("\"image\": \"", "\""),
            ("(\"", "\", "),
            ("p(\"", "\")"),
            ("image(\"", "\")"),
        ] {
            let mut rest = tests;
            while let Some(i) = rest.find(open) {
                rest = &rest[i + open.len()..];
                if let Some(j) = rest.find(close) {
                    let s = &rest[..j];
                    if !s.contains(['"', '\n', ' ', '{']) && s.len() < 120 {
                        out.push(s.to_owned());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_image_of_the_detection_tests() {
    let library = builtin();
    let cond = Condition::new(&library);
    let images = detection_test_images();
    assert!(images.len() > 40, "only {} images found", images.len());
    let mut acted = 0;
    for image in &images {
        let pod = db_pod(image);
        let on = check(&cond, &library, &pod, image).unwrap_or_else(|e| panic!("{e}"));
        acted += usize::from(on);
        // Beside a sidecar, behind a forcing annotation, and as a Job's client.
        let mut two = pod.clone();
        two["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .insert(
                0,
                json!({"name": "proxy", "image": "envoyproxy/envoy:v1.30"}),
            );
        check(&cond, &library, &two, image).unwrap_or_else(|e| panic!("{e}"));
        let mut forced = pod.clone();
        forced["metadata"]["annotations"] = json!({"velero-hook-injector.io/template": "redis"});
        assert!(cond.eval(&forced), "{image} forced");
    }
    assert!(
        acted > 20,
        "only {acted} of {} images matched",
        images.len()
    );
}

#[test]
fn everyday_pods_are_not_sent_to_the_webhook() {
    let library = builtin();
    let cond = Condition::new(&library);
    for image in [
        "nginx:1.25",
        "busybox:1.36",
        "registry.k8s.io/pause:3.9",
        "quay.io/prometheus/node-exporter:v1.8.0",
        "prometheuscommunity/postgres-exporter:v0.15.0",
        "bitnami/postgres-exporter:0.15.0",
        "prom/mysqld-exporter:v0.15.1",
        "oliver006/redis_exporter:v1.58.0",
        "percona/mongodb_exporter:0.40",
        "bitnami/redis-sentinel:7.2",
        "bitnami/pgbouncer:1.22",
        "edoburu/pgbouncer:1.22",
        "postgrest/postgrest:v12",
        "provectuslabs/kafka-ui:v0.7.2",
        "confluentinc/cp-kafka-connect:7.6.0",
        "mongo-express:1.0",
        "dpage/pgadmin4:8",
        "ghcr.io/example/server:1.0",
        "example/kafka:3",
        "localhost:5000/team/app:1",
        "registry.local:5000/timescaledb-tools:1",
    ] {
        let pod = db_pod(image);
        assert!(!cond.eval(&pod), "{image} should not call the webhook");
        check(&cond, &library, &pod, image).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn annotations_and_labels_the_decision_reads() {
    let library = builtin();
    let cond = Condition::new(&library);
    let nginx = db_pod("nginx:1.25");
    for (key, value) in [
        ("velero-hook-injector.io/inject", "no"),
        ("velero-hook-injector.io/inject", "false"),
        ("velero-hook-injector.io/template", "postgres"),
        ("velero-hook-injector.io/template", "oracle"),
        ("velero-hook-injector.io/container", "db"),
        ("velero-hook-injector.io/container", "missing"),
    ] {
        let mut pod = nginx.clone();
        pod["metadata"]["annotations"] = json!({ key: value });
        assert!(cond.eval(&pod), "{key}: {value}");
        check(&cond, &library, &pod, key).unwrap_or_else(|e| panic!("{e}"));
    }
    for (value, on) in [
        ("True", true),
        ("yes", true),
        ("false", true),
        ("true", false),
    ] {
        let mut pod = nginx.clone();
        pod["metadata"]["labels"]["velero.io/exclude-from-backup"] = json!(value);
        assert_eq!(cond.eval(&pod), on, "exclude-from-backup {value}");
        check(&cond, &library, &pod, value).unwrap_or_else(|e| panic!("{e}"));
    }
    // Velero hook annotations on a pod with no database change nothing the webhook does.
    let mut pod = nginx.clone();
    pod["metadata"]["annotations"] = json!({"pre.hook.backup.velero.io/command": "[\"sync\"]"});
    assert!(!cond.eval(&pod));
    check(&cond, &library, &pod, "velero hooks").unwrap_or_else(|e| panic!("{e}"));
    // A pod with no annotations, labels or spec at all.
    let bare = json!({"metadata": {"name": "x"}});
    assert!(!cond.eval(&bare));
}

/// A pod whose only fault is a malformed image is not sent: the webhook would only warn, and
/// the kubelet refuses the pod (`InvalidImageName`). Anything more about the pod still sends it.
#[test]
fn a_malformed_image_alone_is_left_to_the_kubelet() {
    let library = builtin();
    let cond = Condition::new(&library);
    for image in [
        "Postgres:16",
        "nginx:-x",
        "a//b",
        "",
        "busybox@sha256:xyz",
        "Redis",
    ] {
        let pod = db_pod(image);
        assert!(!cond.eval(&pod), "{image:?} alone");
        assert_eq!(
            acts(&pod, &library, Mode::Warn),
            Some("warn"),
            "{image:?}: the webhook warns"
        );
        check(&cond, &library, &pod, image).unwrap_or_else(|e| panic!("{e}"));

        // Beside a database, behind a control annotation, or with a label the webhook warns
        // about, the pod is sent as before.
        let mut beside = pod.clone();
        beside["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "pg", "image": "postgres:16"}));
        let mut annotated = pod.clone();
        annotated["metadata"]["annotations"] =
            json!({"velero-hook-injector.io/template": "postgres"});
        let mut labelled = pod.clone();
        labelled["metadata"]["labels"]["velero.io/exclude-from-backup"] = json!("True");
        for (what, pod) in [
            ("beside postgres", beside),
            ("annotated", annotated),
            ("labelled", labelled),
        ] {
            assert!(cond.eval(&pod), "{image:?} {what}");
            check(&cond, &library, &pod, image).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // A malformed reference to a template's name still passes the name test (harmless).
    assert!(cond.eval(&db_pod("postgres:-x")));
}

/// The equivalence check allows a false condition only the malformed-image warning, on a pod
/// no template could match: an always-false condition fails it for everything else.
#[test]
fn the_check_lets_a_false_condition_miss_nothing_else() {
    let library = builtin();
    let never = Condition::compile("false");
    assert!(check(&never, &library, &db_pod("nginx:-x"), "malformed").is_ok());
    assert!(check(&never, &library, &db_pod("nginx:1.25"), "nginx").is_ok());
    let mut job = db_pod("nginx:-x");
    job["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "pg", "image": "postgres:16"}));
    job["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]);
    assert_eq!(
        acts(&job, &library, Mode::Enforce),
        Some("warn"),
        "a Job's database pod only gets the malformed-image warning"
    );
    let mut labelled = db_pod("nginx:-x");
    labelled["metadata"]["labels"]["velero.io/exclude-from-backup"] = json!("True");
    let mut forced = db_pod("nginx:-x");
    forced["metadata"]["annotations"] = json!({"velero-hook-injector.io/template": "oracle"});
    for (what, pod) in [
        ("postgres", db_pod("postgres:16")),
        ("a template matches another container", job),
        ("a second warning", labelled),
        ("an unknown template", forced),
    ] {
        assert!(
            check(&never, &library, &pod, what).is_err(),
            "{what}: a false condition passed the check"
        );
    }
}

#[test]
fn custom_templates_widen_the_condition() {
    let custom = "name: cockroach\nengine: cockroachdb\ndescription: d\nmatch: {images: [cockroachdb/cockroach, yugabytedb], imagePatterns: ['^crdb-\\d+$', 'tidb']}\nhooks:\n  preBackup: {command: [sync], onError: Continue, timeout: 30s}\n";
    let mut library = builtin();
    library.insert(Template::from_yaml("custom.yaml", custom).expect("template"));
    let builtin_cond = Condition::new(&builtin());
    let cond = Condition::new(&library);
    for image in [
        "cockroachdb/cockroach:v24.1",
        "quay.io/mirror/cockroachdb/cockroach@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "yugabytedb:2.20",
        "crdb-23",
        "pingcap/tidb:v8",
        "pingcap/tidb-lightning:v8",
    ] {
        let pod = db_pod(image);
        assert!(cond.eval(&pod), "{image} with the custom template");
        assert!(!builtin_cond.eval(&pod), "{image} without it");
        check(&cond, &library, &pod, image).unwrap_or_else(|e| panic!("{e}"));
    }
    // A namespaced entry does not take the bare name along; the regex still has the last word.
    for image in ["other/cockroach:1", "crdb-x"] {
        assert!(!cond.eval(&db_pod(image)), "{image}");
    }
}

const REGISTRIES: &[&str] = &[
    "",
    "docker.io/",
    "index.docker.io/",
    "quay.io/",
    "ghcr.io/",
    "localhost/",
    "localhost:5000/",
    "registry.local:5000/",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
    "harbor.corp/dockerhub/",
    "Registry.Corp/",
    "mirror.corp:8443/a/b/",
];

const NAMESPACES: &[&str] = &[
    "",
    "library/",
    "bitnami/",
    "bitnamilegacy/",
    "bitnamisecure/",
    "mariadb/",
    "timescale/",
    "mysql/",
    "percona/",
    "apache/",
    "confluentinc/",
    "mongodb/",
    "team/",
    "Team/",
];

/// Names of every kind: each template's own (bare and namespaced), pattern-shaped ones, the
/// exporter and UI look-alikes, everyday images, and random words.
fn name() -> impl Strategy<Value = String> {
    let library = builtin();
    let mut known: Vec<String> = library
        .iter()
        .flat_map(|t| t.matcher.images.iter())
        .map(|e| e.rsplit('/').next().unwrap_or(e).to_owned())
        .collect();
    known.sort();
    known.dedup();
    let lookalikes = vec![
        "postgres-exporter",
        "postgresql-16",
        "postgresql-15-c9s",
        "postgresql-x",
        "spilo-16",
        "spilo",
        "mysql-80",
        "mysql-router",
        "mysqld-exporter",
        "mariadb-106",
        "mariadb-operator",
        "mongodb-7",
        "mongodb-exporter",
        "mongodb_exporter",
        "redis_exporter",
        "redis-sentinel",
        "kafka-ui",
        "cp-kafka-connect",
        "mongo-express",
        "pgbouncer",
        "nginx",
        "busybox",
        "server",
        "Postgres",
        "POSTGRES",
        "MySQL",
        "pg__x",
        "a---b",
        "-bad",
        "bad.",
    ];
    prop_oneof![
        3 => prop::sample::select(known),
        2 => prop::sample::select(lookalikes).prop_map(str::to_owned),
        1 => "[a-z][a-z0-9._-]{0,14}",
        1 => "[A-Za-z0-9._:@-]{0,10}",
    ]
}

prop_compose! {
    fn image()(
        registry in prop::sample::select(REGISTRIES),
        namespace in prop::sample::select(NAMESPACES),
        name in name(),
        tag in prop::option::weighted(0.7, prop_oneof!["[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(-[a-z0-9]{1,8})?", "[A-Za-z0-9_.-]{0,12}"]),
        digest in prop::option::weighted(0.2, prop_oneof!["sha256:[0-9a-f]{64}", "sha256:[0-9a-f]{0,8}"]),
    ) -> String {
        let mut s = format!("{registry}{namespace}{name}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(&t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(&d);
        }
        s
    }
}

const ANNOTATION_KEYS: &[&str] = &[
    "velero-hook-injector.io/inject",
    "velero-hook-injector.io/template",
    "velero-hook-injector.io/container",
    "velero-hook-injector.io/injected",
    "velero-hook-injector.io/exception",
    "velero-hook-injector.io/backup-method",
    "pre.hook.backup.velero.io/command",
    "post.hook.restore.velero.io/command",
    "backup.velero.io/backup-volumes",
    "team",
];

const LABELS: &[(&str, &str)] = &[
    ("app", "db"),
    ("velero.io/exclude-from-backup", "true"),
    ("velero.io/exclude-from-backup", "True"),
    ("velero.io/exclude-from-backup", "false"),
    ("velero.io/restore-name", "r1"),
    ("cnpg.io/cluster", "pg"),
    ("app.kubernetes.io/managed-by", "Helm"),
];

prop_compose! {
    fn pod()(
        images in prop::collection::vec(image(), 1..4),
        commands in prop::collection::vec(prop::option::weighted(0.2, prop::sample::select(&["psql", "sh", "postgres", "redis-cli"][..])), 3),
        annotations in prop::option::weighted(0.3, prop::collection::btree_map(
            prop::sample::select(ANNOTATION_KEYS),
            prop::sample::select(&["false", "true", "no", "postgres", "redis", "none", "c0", "db", "[\"sync\"]", "fs-backup"][..]),
            0..3,
        )),
        labels in prop::option::weighted(0.3, prop::collection::vec(prop::sample::select(LABELS), 0..3)),
        job in prop::bool::weighted(0.1),
    ) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let mut c = json!({"name": format!("c{i}"), "image": image, "volumeMounts": [{"name": "data", "mountPath": "/data"}]});
                if let Some(cmd) = commands[i] {
                    c["command"] = json!([cmd]);
                }
                c
            })
            .collect();
        let mut meta = json!({"name": "db-0", "namespace": "db"});
        if let Some(a) = annotations {
            meta["annotations"] = json!(a);
        }
        if let Some(l) = labels {
            meta["labels"] = l.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        }
        if job {
            meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": containers, "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}
        })
    }
}

thread_local! {
    /// Compiled once for all generated cases.
    static GENERATED: (Library, Condition) = {
        let library = builtin();
        let cond = Condition::new(&library);
        (library, cond)
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn generated_pods_the_webhook_acts_on_always_match(pod in pod()) {
        GENERATED.with(|(library, cond)| check(cond, library, &pod, "generated pod"))
            .map_err(TestCaseError::fail)?;
    }
}

/// How useful the condition is: of generated pods the webhook would leave alone, the share it
/// keeps away from the webhook (printed; asserted only to be most of them).
#[test]
fn most_pods_the_webhook_leaves_alone_are_not_sent() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let library = builtin();
    let cond = Condition::new(&library);
    let mut runner = TestRunner::deterministic();
    let (mut idle, mut idle_sent, mut acting, mut malformed) = (0, 0, 0, 0);
    for _ in 0..600 {
        let image = image().new_tree(&mut runner).expect("tree").current();
        let pod = db_pod(&image);
        let on = check(&cond, &library, &pod, &image).unwrap_or_else(|e| panic!("{e}"));
        if !on && malformed_image_warnings(&pod, &library).is_some() {
            malformed += 1;
        } else if [Mode::Inject, Mode::Warn, Mode::Enforce]
            .into_iter()
            .any(|m| acts(&pod, &library, m).is_some())
        {
            acting += 1;
        } else {
            idle += 1;
            idle_sent += usize::from(on);
        }
    }
    println!(
        "{acting} single-container pods the webhook acts on; {malformed} it would only warn about a malformed image, not sent; of {idle} it leaves alone, {idle_sent} still call it"
    );
    assert!(acting > 100 && idle > 100, "{acting} / {idle}");
    assert!(
        idle_sent * 4 < idle,
        "{idle_sent} of {idle} idle pods call the webhook"
    );
}

const SHIPPED: &str = "charts/velero-hook-injector/files/match-condition.cel";

/// The chart ships the expression for the built-in templates; it must be the current one.
#[test]
fn the_chart_ships_the_current_expression() {
    let path = format!("{}/{SHIPPED}", env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    let current = match_condition::expression(&builtin());
    assert!(
        shipped == current,
        "{SHIPPED} is not the expression the built-in templates give (a template's match rules or the generator changed). Regenerate it with:\n  cargo run -q -- templates match-condition > {SHIPPED}"
    );
}

/// What the chart makes of the shipped expression for custom templates (their names and
/// patterns in place of the placeholder clause, as tests/chart checks the rendering) compiles
/// and calls the webhook for their pods.
#[test]
fn the_charts_widening_for_custom_templates_works() {
    let custom = "name: cockroach\nengine: cockroachdb\ndescription: d\nmatch: {images: [cockroachdb/cockroach], imagePatterns: ['^crdb-\\d+$']}\nhooks:\n  preBackup: {command: [sync], onError: Continue, timeout: 30s}\n";
    let mut library = builtin();
    library.insert(Template::from_yaml("custom.yaml", custom).expect("template"));
    let widened = match_condition::expression(&builtin()).replace(
        match_condition::CHART_EXTRA,
        r#"n in ["cockroach"] || n.matches("^crdb-\\d+$")"#,
    );
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    let cond = Condition {
        program: env
            .compile(&widened)
            .expect("the widened expression compiles"),
        env: Arc::new(env),
    };
    for image in ["cockroachdb/cockroach:v24.1", "crdb-23", "postgres:16"] {
        let pod = db_pod(image);
        assert!(cond.eval(&pod), "{image}");
        check(&cond, &library, &pod, image).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!cond.eval(&db_pod("nginx:1.25")));
}

/// The API server's limit for one CEL expression (`PerCallLimit`, k8s.io/apiserver/pkg/apis/cel/config.go).
const PER_CALL_LIMIT: u64 = 1_000_000;

/// cel-go's runtime cost of the expression for `pod`, estimated from the charges of its cost
/// tracker (docs/match-conditions.md): per container, string traversals (`split`,
/// `lastIndexOf`, `substring`, …) add `ceil(len/10)` each; operations, list literals, the name
/// lists' `in` (one unit per name) and the pattern prefixes a fixed amount; and a name that
/// passes a pattern's literal prefix runs that regex, `ceil((1+len(name))/10) *
/// ceil(len(regex)/4)`. The built-in prefixes exclude each other, so this charges the longest
/// pattern once, for every container (an upper bound).
fn estimated_cost(pod: &Value, library: &Library) -> u64 {
    let regex = library
        .iter()
        .flat_map(|t| t.matcher.image_pattern_sources.iter())
        .map(|p| p.len() as u64)
        .max()
        .unwrap_or(0)
        .div_ceil(4);
    let annotations = pod["metadata"]["annotations"]
        .as_object()
        .map_or(0, |a| a.len() as u64);
    let containers: u64 = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .map(|image| {
            let len = image.len() as u64;
            let repo = image.split('@').next().unwrap_or_default();
            let last = repo.rsplit('/').next().unwrap_or_default();
            let name = last.split(':').next().unwrap_or_default().len() as u64;
            regex * (1 + name).div_ceil(10) + 6 * len.div_ceil(10) + 150
        })
        .sum();
    50 + 6 * annotations + containers
}

/// The worst case a real pod can be: 100 containers, each with the longest valid reference (a
/// 255-character name, a 128-character tag and a digest) whose last segment passes a pattern's
/// literal prefix, so that its regex runs too. The condition still answers right, and its
/// estimated cost stays far within the API server's limit.
#[test]
fn the_worst_case_pod_stays_far_within_the_budget() {
    let library = builtin();
    let cond = Condition::new(&library);
    let registry = "registry.example.internal:5000/";
    let mut name = String::from(registry);
    while name.len() < 60 {
        name.push_str("segment/");
    }
    // `postgresql-` passes the prefix of `^postgresql-\d+(-c\d+s)?$`, the longest pattern.
    name.push_str("postgresql-");
    name.push_str(&"x".repeat(255 - name.len()));
    let image = format!(
        "{name}:{}@sha256:{}",
        "t".repeat(128),
        "0123456789abcdef".repeat(4)
    );
    assert!(
        image.len() > 450,
        "{} characters: not the longest reference",
        image.len()
    );
    let containers: Vec<Value> = (0..100)
        .map(|i| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let mut pod = json!({
        "metadata": {"name": "big", "annotations": {"team": "a"}},
        "spec": {"containers": containers}
    });
    assert!(!cond.eval(&pod), "no container is a database");
    check(&cond, &library, &pod, "100 long images").unwrap_or_else(|e| panic!("{e}"));
    let cost = estimated_cost(&pod, &library);
    println!(
        "estimated cost of 100 containers with {}-character references: {cost} of {PER_CALL_LIMIT}",
        image.len()
    );
    assert!(
        cost * 10 < PER_CALL_LIMIT,
        "estimated cost {cost} is more than a tenth of the API server's per-expression limit {PER_CALL_LIMIT}"
    );
    // A database behind all of them is still found.
    pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "db", "image": format!("{registry}bitnami/postgresql:16")}));
    assert!(cond.eval(&pod));
}

/// `templates match-condition` prints the shipped expression; `--templates` widens it exactly
/// (custom names join the map, with their namespaces), and a bad file is refused with the reason.
#[test]
fn the_cli_prints_the_expression() {
    let bin = env!("CARGO_BIN_EXE_velero-hook-injector");
    let out = std::process::Command::new(bin)
        .args(["templates", "match-condition"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        match_condition::expression(&builtin())
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("custom.yaml");
    std::fs::write(
        &file,
        "name: cockroach\nengine: cockroachdb\ndescription: d\nmatch: {images: [cockroachdb/cockroach]}\nhooks:\n  preBackup: {command: [sync], onError: Continue, timeout: 30s}\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .args(["templates", "match-condition", "--templates"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("'/cockroachdb/cockroach'"), "{text}");

    std::fs::write(&file, "name: x\n").expect("write");
    let out = std::process::Command::new(bin)
        .args(["templates", "match-condition", "--templates"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("custom.yaml"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
