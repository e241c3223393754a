//! AdmissionReview bodies for benchmarks and reliability tests, built from the captured fixtures
//! in tests/fixtures so the envelope is exactly what a kube-apiserver sends.

#![allow(dead_code)]

use serde_json::{Value, json};

/// A captured AdmissionReview request.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// Makes container `index` run `image` and mount a PVC named `data` at `mount`.
pub fn make_database(review: &mut Value, index: usize, image: &str, mount: &str) {
    let spec = &mut review["request"]["object"]["spec"];
    spec["containers"][index]["image"] = json!(image);
    let mut mounts = spec["containers"][index]["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    mounts.push(json!({"name": "data", "mountPath": mount}));
    spec["containers"][index]["volumeMounts"] = json!(mounts);
    let mut volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}));
    spec["volumes"] = json!(volumes);
}

/// `kubectl run` of a non-database image, as captured: one container, no volume, no patch.
pub fn small() -> Value {
    fixture("pod-create-simple.json")
}

/// The captured `kubectl apply` pod (2 init containers, 2 containers, resources, an existing
/// annotation with the last-applied configuration) with its main container turned into
/// PostgreSQL 16 with a data PVC: the shape of a StatefulSet database pod. Gets a patch.
pub fn typical_database() -> Value {
    let mut r = fixture("pod-create-multi-container-init.json");
    make_database(&mut r, 0, "postgres:16.4", "/var/lib/postgresql/data");
    r
}

/// The typical database pod grown to `containers` containers and `annotations` annotations
/// (plus as many labels as containers): container 0 stays the database, the others are
/// realistic sidecars with env, ports, resources and mounts.
pub fn scaled(containers: usize, annotations: usize) -> Value {
    let mut r = typical_database();
    let obj = &mut r["request"]["object"];
    let template = obj["spec"]["containers"][1].clone();
    let list = obj["spec"]["containers"]
        .as_array_mut()
        .expect("containers");
    list.truncate(1);
    for i in 1..containers {
        let mut c = template.clone();
        c["name"] = json!(format!("sidecar-{i}"));
        c["image"] = json!(format!(
            "registry.example.com/team/sidecar-{}:1.{i}.0",
            i % 7
        ));
        c["env"] = json!(
            (0..5)
                .map(|e| json!({"name": format!("VAR_{e}"), "value": format!("value-{i}-{e}")}))
                .collect::<Vec<_>>()
        );
        c["ports"] =
            json!([{"containerPort": 9000 + i, "name": format!("p{i}"), "protocol": "TCP"}]);
        c["resources"] = json!({"limits": {"cpu": "100m", "memory": "64Mi"}, "requests": {"cpu": "10m", "memory": "16Mi"}});
        c["volumeMounts"] =
            json!([{"name": "cfg", "mountPath": format!("/etc/sidecar-{i}"), "readOnly": true}]);
        list.push(c);
    }
    let meta = &mut obj["metadata"];
    let ann = meta["annotations"].as_object_mut().expect("annotations");
    let have = ann.len();
    for i in have..annotations {
        ann.insert(
            format!("example.com/annotation-{i}"),
            json!(format!("some value number {i} with a little text")),
        );
    }
    let labels = meta["labels"].as_object_mut().expect("labels");
    for i in 0..containers {
        labels.insert(format!("example.com/label-{i}"), json!(format!("v{i}")));
    }
    r
}

/// 50 containers, 200 annotations.
pub fn large() -> Value {
    scaled(50, 200)
}

/// Serialized body.
pub fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize")
}
