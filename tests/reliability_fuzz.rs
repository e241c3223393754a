//! Every input cargo fuzz ever crashed on (fuzz/regressions/TARGET/), replayed with the same
//! checks the fuzz targets make (fuzz/fuzz_targets/), so a fixed bug stays fixed.

use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;
use velero_hook_injector::admission;
use velero_hook_injector::admission::render;
use velero_hook_injector::hooks::template::Library;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .map(|p| {
                    let bytes = std::fs::read(&p).expect("read");
                    (p, bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `data` has a `\\uD800`-`\\uDFFF` escape.
fn has_surrogate_escape(data: &[u8]) -> bool {
    data.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && w[2].eq_ignore_ascii_case(&b'd')
            && matches!(w[3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
    })
}

/// The review target's oracle: an answer is an AdmissionReview; a patch is base64 RFC 6902 that
/// applies to the request's object and keeps every annotation it had.
fn check_review(data: &[u8], library: &Library) -> Result<(), String> {
    let Ok(out) = admission::review(data, library) else {
        return Ok(());
    };
    let resp: Value = serde_json::from_slice(&out.body).map_err(|e| e.to_string())?;
    let Some(patch) = resp["response"]["patch"].as_str() else {
        return Ok(());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| e.to_string())?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let request: Value = match serde_json::from_slice(data) {
        Ok(request) => request,
        // See fuzz/fuzz_targets/review.rs: serde_json's private RawValue token as a map key.
        Err(_) if contains(data, b"$serde_json::private::RawValue") => return Ok(()),
        Err(_) if has_surrogate_escape(data) => return Ok(()),
        Err(e) => return Err(format!("a patched request was not JSON: {e}")),
    };
    let mut object = request["request"]["object"].clone();
    let before = object["metadata"]["annotations"].clone();
    json_patch::patch(&mut object, &patch).map_err(|e| format!("patch does not apply: {e}"))?;
    for (k, v) in before.as_object().into_iter().flatten() {
        if &object["metadata"]["annotations"][k] != v {
            return Err(format!("annotation {k} changed"));
        }
    }
    Ok(())
}

#[test]
fn review_regressions_stay_fixed() {
    let library = Library::builtin().expect("library");
    let cases = inputs("review");
    assert!(!cases.is_empty(), "fuzz/regressions/review is empty");
    for (path, data) in cases {
        check_review(&data, &library).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn render_regressions_stay_fixed() {
    let library = Library::builtin().expect("library");
    for (path, data) in inputs("render") {
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let Ok(docs) = render::parse_documents("fuzz", text) else {
            continue;
        };
        for (i, doc) in docs.into_iter().enumerate() {
            if let Ok(r) = render::render("fuzz", i + 1, doc, &library) {
                for op in &r.patch.0 {
                    assert!(
                        matches!(op, json_patch::PatchOperation::Add(_)),
                        "{}: not an add: {op:?}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// One input from fuzz/regressions/review/.
fn review_regression(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/review")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The crash itself: a Pod object without `metadata` now gets a clear 400-style error instead of
/// a patch the API server could not apply.
#[test]
fn pod_without_metadata_is_refused_clearly() {
    let library = Library::builtin().expect("library");
    let err = admission::review(&review_regression("object-without-metadata.json"), &library)
        .expect_err("refused");
    assert!(err.to_string().contains("metadata"), "{err}");
}

/// The second crash: a byte that is not UTF-8 inside a field the parser skips is refused like
/// one anywhere else.
#[test]
fn invalid_utf8_in_a_skipped_field_is_refused() {
    let library = Library::builtin().expect("library");
    let err = admission::review(
        &review_regression("invalid-utf8-in-skipped-field.json"),
        &library,
    )
    .expect_err("refused");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

/// The third crash: `render` panicked on a workload whose pod template is a string; it is now a
/// clear error naming the document.
#[test]
fn render_of_a_template_that_is_not_a_mapping_is_an_error() {
    let library = Library::builtin().expect("library");
    let text = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  template: postgres:16\n";
    let docs = render::parse_documents("-", text).expect("yaml");
    let err = render::render("-", 1, docs[0].clone(), &library).expect_err("refused");
    assert!(err.to_string().contains("not a mapping"), "{err}");
}

/// Checks the server's answer to a body the oracle cannot re-read as it is: allowed, an add-only
/// patch under /metadata/annotations that applies to the object once `needle` is replaced by
/// `replacement` (same length, in a field the patch never touches), no annotation changed.
fn assert_answered_add_only(file: &str, needle: &[u8], replacement: &[u8]) {
    let library = Library::builtin().expect("library");
    let data = review_regression(file);
    assert!(contains(&data, needle), "the input still has {needle:?}");
    assert!(serde_json::from_slice::<Value>(&data).is_err());

    let out = admission::review(&data, &library).expect("answered");
    let resp: Value = serde_json::from_slice(&out.body).expect("json");
    assert_eq!(resp["response"]["allowed"], true);
    let patch = resp["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("RFC 6902");
    for op in &patch.0 {
        let json_patch::PatchOperation::Add(add) = op else {
            panic!("not an add: {op:?}");
        };
        assert!(add.path.to_string().starts_with("/metadata/annotations"));
    }
    assert_eq!(needle.len(), replacement.len());
    let mut readable = data.clone();
    while let Some(at) = readable.windows(needle.len()).position(|w| w == needle) {
        readable[at..at + needle.len()].copy_from_slice(replacement);
    }
    let request: Value = serde_json::from_slice(&readable).expect("json once replaced");
    let mut object = request["request"]["object"].clone();
    let before = object["metadata"]["annotations"].clone();
    json_patch::patch(&mut object, &patch).expect("applies");
    for (k, v) in before.as_object().into_iter().flatten() {
        assert_eq!(
            &object["metadata"]["annotations"][k], v,
            "annotation {k} changed"
        );
    }
}

/// Fuzzing (review, ~34 min): serde_json (raw_value, enabled through kube) takes a map keyed by
/// its private RawValue token for a raw value, so the oracle could not re-read the body. The
/// server skips managedFields, where the key was, and answers normally.
#[test]
fn serde_json_raw_value_token_in_a_skipped_field_is_answered_normally() {
    assert_answered_add_only(
        "serde-json-raw-value-token.json",
        b"$serde_json::private::RawValue",
        b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    );
}

/// Fuzzing (review, second run, ~14 min): a lone UTF-16 surrogate escape in a managedFields key.
/// The JSON grammar allows it (RFC 8259 section 8.2), a Rust string cannot hold it; the server
/// skips the field and answers normally (as the API server, written in Go, would accept it).
#[test]
fn lone_surrogate_escape_in_a_skipped_field_is_answered_normally() {
    assert_answered_add_only("lone-surrogate-escape.json", b"\\ud80e", b"\\u0041");
}
