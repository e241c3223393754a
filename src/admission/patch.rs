//! RFC 6902 JSON Patches that only ever add: annotations, and in dump mode one volume and its
//! mount.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

/// A patch adding `add` to a pod whose current annotations are `existing`.
///
/// When the pod has no annotation map the patch creates it in one operation (an `add` to
/// `/metadata/annotations/<key>` would fail on a missing parent). Keys already present are never
/// touched: callers filter them out first, and this function skips any that slipped through.
pub fn add_annotations(
    existing: Option<&BTreeMap<String, String>>,
    add: &BTreeMap<String, String>,
) -> Patch {
    // One rule for both forms: the operations are those of the text admission sends.
    let text = write_add_annotations(existing, add, |_| None, &[]);
    // Text of adds of strings always parses as a patch.
    serde_json::from_slice(&text).unwrap_or_else(|_| Patch(Vec::new()))
}

/// The JSON text of the patch adding `add` (see [`add_annotations`]) followed by `more`, written directly:
/// values that `literal` knows (a template's cached command literals, see
/// `Template::command_literal`) are copied instead of escaped again, the bulk of a patch.
pub fn write_add_annotations<'a>(
    existing: Option<&BTreeMap<String, String>>,
    add: &BTreeMap<String, String>,
    literal: impl Fn(&str) -> Option<&'a str>,
    more: &[PatchOperation],
) -> Vec<u8> {
    let size: usize = add.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
    let mut out = Vec::with_capacity(size + 2);
    let value = |out: &mut Vec<u8>, v: &str| match literal(v) {
        Some(l) => out.extend_from_slice(l.as_bytes()),
        None => json_str(out, v),
    };
    out.push(b'[');
    let mut first = true;
    match existing {
        None => {
            out.extend_from_slice(br#"{"op":"add","path":"/metadata/annotations","value":{"#);
            for (i, (k, v)) in add.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(&mut out, k);
                out.push(b':');
                value(&mut out, v);
            }
            out.extend_from_slice(b"}}");
            first = false;
        }
        Some(existing) => {
            for (k, v) in add.iter().filter(|(k, _)| !existing.contains_key(*k)) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(br#"{"op":"add","path":"#);
                let token = k.replace('~', "~0").replace('/', "~1");
                json_str(&mut out, &format!("/metadata/annotations/{token}"));
                out.extend_from_slice(br#","value":"#);
                value(&mut out, v);
                out.push(b'}');
            }
        }
    }
    for op in more {
        if !first {
            out.push(b',');
        }
        first = false;
        // An operation of strings and maps always serialises.
        let _ = serde_json::to_writer(&mut out, op);
    }
    out.push(b']');
    out
}

/// `s` as a JSON string literal.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // A str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A JSON merge patch (RFC 7386) adding `add` to a live pod, only if it is still at
/// `resource_version`.
///
/// The resourceVersion in the body is the API server's optimistic-concurrency precondition: if
/// the pod changed since it was read, the update fails with 409 Conflict and nothing is written.
/// That is why a merge patch and not an RFC 6902 `test` op: a failed `test` is answered 422, the
/// same code as an invalid patch, so a conflict could not be told from a bug. Because the pod is
/// unchanged since `add` was computed from it, and `add` never holds a key the pod has, setting
/// the keys by merge adds exactly what admission's add-only JSON Patch would.
pub fn merge_add_annotations(add: &BTreeMap<String, String>, resource_version: &str) -> Value {
    let annotations = add
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect::<serde_json::Map<_, _>>();
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "resourceVersion".to_owned(),
        Value::String(resource_version.to_owned()),
    );
    metadata.insert("annotations".to_owned(), Value::Object(annotations));
    let mut root = serde_json::Map::new();
    root.insert("metadata".to_owned(), Value::Object(metadata));
    Value::Object(root)
}

/// The operations adding dump mode's emptyDir volume and its mount to `spec` (a pod's), as
/// `dump` says; appended after the annotations' patch. Empty lists are created whole, as an
/// `add` to `/-` of a missing array fails.
pub fn add_dump_volume(
    spec: Option<&k8s_openapi::api::core::v1::PodSpec>,
    dump: &crate::pod::backup_method::DumpVolume,
) -> Vec<PatchOperation> {
    use crate::pod::backup_method::{DUMP_MOUNT_PATH, DUMP_VOLUME};
    let mut ops = Vec::new();
    let add = |ops: &mut Vec<PatchOperation>, path: Vec<String>, exists: bool, item: Value| {
        let (path, value) = if exists {
            let mut p = path;
            p.push("-".to_owned());
            (p, item)
        } else {
            (path, Value::Array(vec![item]))
        };
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path),
            value,
        }));
    };
    if dump.add_volume {
        add(
            &mut ops,
            vec!["spec".into(), "volumes".into()],
            spec.and_then(|s| s.volumes.as_ref()).is_some(),
            serde_json::json!({"name": DUMP_VOLUME, "emptyDir": {}}),
        );
    }
    if dump.add_mount {
        let mounts = spec
            .and_then(|s| s.containers.get(dump.container_index))
            .and_then(|c| c.volume_mounts.as_ref())
            .is_some();
        add(
            &mut ops,
            vec![
                "spec".into(),
                "containers".into(),
                dump.container_index.to_string(),
                "volumeMounts".into(),
            ],
            mounts,
            serde_json::json!({"name": DUMP_VOLUME, "mountPath": DUMP_MOUNT_PATH}),
        );
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn adds() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "pre.hook.backup.velero.io/command".to_owned(),
                "[\"sync\"]".to_owned(),
            ),
            (
                "velero-hook-injector.io/injected".to_owned(),
                "kafka/broker".to_owned(),
            ),
        ])
    }

    #[test]
    fn creates_the_annotation_map_when_absent() {
        let patch = add_annotations(None, &adds());
        let mut pod = json!({"metadata": {"name": "p"}});
        json_patch::patch(&mut pod, &patch).expect("applies");
        assert_eq!(
            pod["metadata"]["annotations"]["pre.hook.backup.velero.io/command"],
            "[\"sync\"]"
        );
    }

    #[test]
    fn escapes_slashes_and_keeps_existing_keys() {
        let existing = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        let patch = add_annotations(Some(&existing), &adds());
        let text = serde_json::to_string(&patch).expect("serialises");
        assert!(
            text.contains("/metadata/annotations/pre.hook.backup.velero.io~1command"),
            "{text}"
        );
        let mut pod = json!({"metadata": {"annotations": {"team": "a"}}});
        json_patch::patch(&mut pod, &patch).expect("applies");
        assert_eq!(pod["metadata"]["annotations"]["team"], "a");
        assert_eq!(
            pod["metadata"]["annotations"].as_object().map(|m| m.len()),
            Some(3)
        );
    }

    #[test]
    fn merge_patch_carries_the_precondition_and_sorted_keys() {
        let text = serde_json::to_string(&merge_add_annotations(&adds(), "4711")).expect("ser");
        assert_eq!(
            text,
            r#"{"metadata":{"resourceVersion":"4711","annotations":{"pre.hook.backup.velero.io/command":"[\"sync\"]","velero-hook-injector.io/injected":"kafka/broker"}}}"#
        );
    }

    #[test]
    fn never_overwrites_a_present_key() {
        let existing = BTreeMap::from([(
            "velero-hook-injector.io/injected".to_owned(),
            "x".to_owned(),
        )]);
        let patch = add_annotations(Some(&existing), &adds());
        assert_eq!(patch.0.len(), 1);
    }
}
