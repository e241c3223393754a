//! `admission::review` over arbitrary request bodies: never panics, and every answer is an
//! AdmissionReview whose patch (if any) is an add-only JSON Patch that applies to the request's
//! object and keeps every annotation it had.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use velero_hook_injector::admission;
use velero_hook_injector::template::Library;

static LIBRARY: LazyLock<Library> = LazyLock::new(|| Library::builtin().expect("builtin"));

fuzz_target!(|data: &[u8]| {
    let Ok(out) = admission::review(data, &LIBRARY) else {
        return;
    };
    let resp: Value = serde_json::from_slice(&out.body).expect("the answer is JSON");
    assert_eq!(resp["apiVersion"], admission::API_VERSION);
    assert_eq!(resp["response"]["allowed"], true);
    let Some(patch) = resp["response"]["patch"].as_str() else {
        return;
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("the patch is RFC 6902");
    let request: Value = serde_json::from_slice(data).expect("a patched request was JSON");
    let mut object = request["request"]["object"].clone();
    let before = object["metadata"]["annotations"].clone();
    json_patch::patch(&mut object, &patch).expect("the patch applies to the request's object");
    if let Some(before) = before.as_object() {
        for (k, v) in before {
            assert_eq!(
                &object["metadata"]["annotations"][k], v,
                "annotation {k} changed"
            );
        }
    }
});
