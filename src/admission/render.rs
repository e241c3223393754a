//! Offline rendering: run the webhook's decision over manifests (Pods and pod templates).

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::admission::patch;
use crate::hooks::detect::{self, Outcome};
use crate::hooks::template::Library;
use crate::pod::backup_method::ClusterDefaults;

/// Why a manifest could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input is not YAML/JSON.
    #[error("{source_name}: document {index}: not valid YAML or JSON: {reason}")]
    Parse {
        /// File name or `-`.
        source_name: String,
        /// 1-based document index.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The pod (template) does not fit the Pod schema.
    #[error("{source_name}: document {index} ({kind} {name}): pod spec is not valid: {reason}")]
    Pod {
        /// File name or `-`.
        source_name: String,
        /// 1-based document index.
        index: usize,
        /// Manifest kind.
        kind: String,
        /// Manifest name.
        name: String,
        /// Deserializer message.
        reason: String,
    },
}

/// The result for one document.
#[derive(Debug)]
pub struct Rendered {
    /// The manifest with its pod (template) annotated as the webhook would leave it.
    pub manifest: Value,
    /// The JSON Patch the webhook would return for the pod (empty when nothing changes).
    pub patch: Patch,
    /// `Kind/name` of the manifest.
    pub subject: String,
    /// Decision outcome; `None` for kinds without pods.
    pub outcome: Option<Outcome>,
    /// Warnings the API client would print.
    pub warnings: Vec<String>,
}

impl Rendered {
    /// A manifest without a pod (template): printed as it came.
    fn untouched(manifest: Value, subject: String) -> Self {
        Self {
            manifest,
            patch: Patch(vec![]),
            subject,
            outcome: None,
            warnings: vec![],
        }
    }
}

/// Where the pod template sits inside a workload manifest (`""` for a Pod itself).
pub fn pod_template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Parses multi-document YAML (JSON is YAML) into values, skipping empty documents.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| RenderError::Parse {
            source_name: source_name.to_owned(),
            index: i + 1,
            reason: e.to_string(),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Renders one manifest, assuming Backups default to snapshots.
pub fn render(
    source_name: &str,
    index: usize,
    manifest: Value,
    library: &Library,
) -> Result<Rendered, RenderError> {
    render_with(
        source_name,
        index,
        manifest,
        library,
        ClusterDefaults::default(),
    )
}

/// Renders one manifest as a webhook run with the Backup `defaults` would leave it.
pub fn render_with(
    source_name: &str,
    index: usize,
    mut manifest: Value,
    library: &Library,
    defaults: ClusterDefaults,
) -> Result<Rendered, RenderError> {
    let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let subject = format!("{kind}/{name}");
    let Some(ptr) = pod_template_pointer(&kind) else {
        return Ok(Rendered::untouched(manifest, subject));
    };
    let manifest_claims_source = manifest
        .pointer("/spec/volumeClaimTemplates")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(template) = manifest.pointer_mut(ptr) else {
        return Ok(Rendered::untouched(manifest, subject));
    };
    // A pod template that is a string, number or list cannot be indexed (cargo fuzz found the
    // panic: fuzz/regressions/render/).
    if !(template.is_object() || template.is_null()) {
        return Err(RenderError::Pod {
            source_name: source_name.to_owned(),
            index,
            kind: kind.clone(),
            name: name.clone(),
            reason: "the pod template is not a mapping".to_owned(),
        });
    }
    if !template.get("metadata").is_some_and(Value::is_object) {
        template["metadata"] = json!({});
    }
    let mut pod_value = json!({"metadata": template["metadata"], "spec": template["spec"]});
    if matches!(kind.as_str(), "Job" | "CronJob") {
        // Pods of Jobs are owned by the Job; the webhook sees that owner reference.
        pod_value["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": ""}]);
    }
    if kind == "StatefulSet" {
        add_claim_template_volumes(
            &mut pod_value,
            &manifest_claims(&manifest_claims_source),
            &name,
        );
    }
    let pod: Pod = serde_json::from_value(pod_value).map_err(|e| RenderError::Pod {
        source_name: source_name.to_owned(),
        index,
        kind: kind.clone(),
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let decision = detect::decide_with(&pod, library, defaults);
    let mut p = patch::add_annotations(pod.metadata.annotations.as_ref(), &decision.add);
    if let Some(dump) = &decision.dump_volume {
        // Against the template's own spec: a StatefulSet's pod above also has the claim
        // templates' volumes, which the template does not list.
        let own: Option<k8s_openapi::api::core::v1::PodSpec> =
            serde_json::from_value(template["spec"].clone()).ok();
        p.0.extend(patch::add_dump_volume(own.as_ref(), dump));
    }
    // The patch only adds under /metadata/annotations (which exists or is created by the patch)
    // and, in dump mode, a volume and a mount.
    let _ = json_patch::patch(template, &p);
    Ok(Rendered {
        manifest,
        patch: p,
        subject,
        outcome: Some(decision.outcome),
        warnings: decision.warnings,
    })
}

/// Renders one document: a manifest, or a list of them (`kind: List`, what `kubectl get -o yaml`
/// prints, or any `…List` with `items`) whose items are rendered one by one. Returns the document
/// as rendered (a list stays a list) and the result for each manifest in it.
pub fn render_document(
    source_name: &str,
    index: usize,
    mut document: Value,
    library: &Library,
    defaults: ClusterDefaults,
) -> Result<(Value, Vec<Rendered>), RenderError> {
    let is_list = document["kind"]
        .as_str()
        .is_some_and(|k| k.ends_with("List"))
        && document["items"].is_array();
    if !is_list {
        let r = render_with(source_name, index, document, library, defaults)?;
        return Ok((r.manifest.clone(), vec![r]));
    }
    let items = match document["items"].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let mut rendered = Vec::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let r = render_with(source_name, index, item, library, defaults)?;
        out.push(r.manifest.clone());
        rendered.push(r);
    }
    document["items"] = Value::Array(out);
    Ok((document, rendered))
}

pub(crate) fn manifest_claims(claims: &Value) -> Vec<String> {
    claims
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    c.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The StatefulSet controller adds one PVC volume per claim template to every pod it creates;
/// the webhook sees them, so rendering must too.
pub(crate) fn add_claim_template_volumes(pod: &mut Value, claims: &[String], sts: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(list) = volumes.as_array_mut() {
        for claim in claims {
            if !list.iter().any(|v| v["name"] == claim.as_str()) {
                list.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": format!("{claim}-{sts}-0")}}));
            }
        }
    }
}

/// `value` as YAML that a YAML 1.1 reader (kubectl, PyYAML) and a YAML 1.2 reader both read back
/// as the same JSON: every string that either could resolve to something else (`no`, `on`, `y`,
/// `~`, `0755`, `1_000`, `1:30`, `.inf`, `2001-12-14`, `<<`, `=`, a leading indicator…) is
/// quoted. serde_yaml quotes only what YAML 1.2 would misread, so `env: [{value: no}]` came back
/// from kubectl as a boolean the API server rejects. Block style, like `kubectl get -o yaml`:
/// sequences at their key's indentation, multi-line strings as literal blocks.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_mapping(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_sequence(&mut out, a, 0),
        scalar => {
            write_scalar(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn write_mapping(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            push_indent(out, indent);
        }
        write_string(out, k, indent, true);
        out.push(':');
        write_value_after(out, v, indent, true);
    }
}

fn write_sequence(out: &mut String, a: &[Value], indent: usize) {
    for (i, v) in a.iter().enumerate() {
        if i > 0 {
            push_indent(out, indent);
        }
        out.push('-');
        write_value_after(out, v, indent, false);
    }
}

/// Writes `v` after `key:` or `-` at `indent`, ending with a newline.
fn write_value_after(out: &mut String, v: &Value, indent: usize, after_key: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if after_key {
                out.push('\n');
                push_indent(out, indent + 2);
            } else {
                out.push(' ');
            }
            write_mapping(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            if after_key {
                // Like kubectl: a sequence under a key sits at the key's indentation.
                out.push('\n');
                push_indent(out, indent);
                write_sequence(out, a, indent);
            } else {
                out.push(' ');
                write_sequence(out, a, indent + 2);
            }
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, indent);
            out.push('\n');
        }
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_scalar(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&yaml_number(n)),
        Value::String(s) => write_string(out, s, indent, false),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// A JSON number as YAML 1.1 reads it: a float's exponent needs a dot before it and a sign
/// (`1e300` is a string to YAML 1.1; `1.0e+300` is the float in both versions).
fn yaml_number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if !n.is_f64() {
        return text;
    }
    match text.split_once(['e', 'E']) {
        Some((mantissa, exp)) => {
            let mantissa = if mantissa.contains('.') {
                mantissa.to_owned()
            } else {
                format!("{mantissa}.0")
            };
            let exp = if exp.starts_with(['-', '+']) {
                exp.to_owned()
            } else {
                format!("+{exp}")
            };
            format!("{mantissa}e{exp}")
        }
        None if !text.contains('.') => format!("{text}.0"),
        None => text,
    }
}

/// A string as a plain scalar when no YAML reader can take it for anything else, as a literal
/// block when it has several lines, and quoted otherwise.
fn write_string(out: &mut String, s: &str, indent: usize, key: bool) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else if !key && literal_block_fits(s) {
        let body = s.trim_end_matches('\n');
        let chomp = match s.len() - body.len() {
            0 => "-",
            1 => "",
            _ => "+",
        };
        out.push('|');
        out.push_str(chomp);
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                push_indent(out, indent + 2);
                out.push_str(line);
            }
        }
    } else if s.chars().all(printable) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if printable(c) => out.push(c),
                c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
            }
        }
        out.push('"');
    }
}

/// A character YAML readers take as itself anywhere in a line: not a control character, not
/// one of the Unicode line and paragraph separators YAML 1.1 breaks lines at, not a BOM.
fn printable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// A multi-line string a literal block keeps exactly: printable, no carriage return, and no
/// leading blank on its first line (which would need an indentation indicator).
fn literal_block_fits(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || printable(c))
        && !s.contains("\t\n")
        && !s.split('\n').any(|l| l.ends_with(' '))
}

/// True when `s` written plain reads back as that string in YAML 1.1 and 1.2. Conservative:
/// quoting a string that did not need it costs two characters, the reverse a wrong type.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // Words YAML 1.1 reads as booleans or null, in any case (1.1 accepts three spellings of
    // each; quoting every spelling is simpler and costs nothing).
    const WORDS: &[&str] = &[
        "y", "n", "yes", "no", "true", "false", "on", "off", "null", "~",
    ];
    if WORDS.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        return false;
    }
    // Anything that starts like a number (ints in any base, floats, .inf/.nan, sexagesimal,
    // timestamps), or with a YAML indicator, or is the merge key or the value key.
    let second = s[first.len_utf8()..].chars().next();
    if first.is_ascii_digit()
        || (matches!(first, '-' | '+' | '.')
            && second.is_none_or(|c| c.is_ascii_digit() || c == '.'))
        || (first == '.' && second.is_some_and(|c| c.is_ascii_alphabetic()))
        || "-?:,[]{}#&*!|>'\"%@`<=".contains(first)
    {
        return false;
    }
    s.chars().all(printable)
        && !s.starts_with(' ')
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains('\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pg}
spec:
  serviceName: pg
  selector: {matchLabels: {app: pg}}
  template:
    metadata: {labels: {app: pg}}
    spec:
      containers:
        - name: postgres
          image: postgres:16
          volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Service
metadata: {name: pg}
"#;

    #[test]
    fn statefulset_template_is_annotated_and_other_kinds_pass() {
        let lib = Library::builtin().expect("lib");
        let docs = parse_documents("-", STATEFULSET).expect("yaml");
        assert_eq!(docs.len(), 2);
        let r = render("-", 1, docs[0].clone(), &lib).expect("render");
        // The claim template's volume is added to the pod as the StatefulSet controller would.
        assert_eq!(r.outcome, Some(Outcome::Injected));
        let a = &r.manifest["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(a["velero-hook-injector.io/injected"], "postgres/postgres");
        assert!(
            r.manifest["spec"]["template"]["spec"]
                .get("volumes")
                .is_none(),
            "the template itself is not changed beyond annotations"
        );
        let other = render("-", 2, docs[1].clone(), &lib).expect("render");
        assert_eq!(other.outcome, None);
    }

    #[test]
    fn to_yaml_reads_back_as_the_same_json_and_quotes_what_yaml_1_1_would_misread() {
        // Every string YAML 1.1 resolves to something else, then others that need care.
        const AMBIGUOUS_IN_1_1: &[&str] = &[
            "no",
            "Yes",
            "ON",
            "off",
            "y",
            "N",
            "~",
            "null",
            "0755",
            "1_000",
            "1:30",
            ".inf",
            ".NaN",
            "2001-12-14",
            "=",
            "<<",
        ];
        let tricky = AMBIGUOUS_IN_1_1.iter().copied().chain([
            "",
            "-",
            "- x",
            "? x",
            ": x",
            "a: b",
            "a #b",
            "#c",
            "trail ",
            " lead",
            "tab\there",
            "it's",
            "\"q\"",
            "[x]",
            "{x}",
            "*a",
            "&a",
            "!t",
            "%d",
            "@x",
            "`x",
            "x:",
            "multi\nline",
            "multi\nline\n",
            "multi\n\n",
            "\nlead",
            "trailing space \nx",
            "\u{2028}",
            "\u{85}x",
            "\u{1}",
            "plain",
            "a:b",
            "a-b_c.d",
            "über",
            "日本",
        ]);
        for s in tricky {
            let v = json!({"k": s, s: [s, {"n": s}], "nested": [[s], [], {}], "n": 1.5e300, "i": -3, "b": false, "z": null});
            let text = to_yaml(&v);
            let back: Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{s:?}: {e}\n{text}"));
            assert_eq!(back, v, "{s:?}:\n{text}");
            if AMBIGUOUS_IN_1_1.contains(&s) {
                assert!(
                    !text.contains(&format!("k: {s}\n")),
                    "{s:?} written plain:\n{text}"
                );
            }
        }
        assert_eq!(
            to_yaml(&json!({"a": "plain", "b": []})),
            "a: plain\nb: []\n"
        );
        assert_eq!(
            to_yaml(&json!({"l": [{"a": 1, "b": [2]}, "x"]})),
            "l:\n- a: 1\n  b:\n  - 2\n- x\n",
            "kubectl's block style"
        );
    }

    #[test]
    fn a_list_is_rendered_item_by_item() {
        let lib = Library::builtin().expect("lib");
        let docs = parse_documents("-", STATEFULSET).expect("yaml");
        let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
        let (out, rendered) =
            render_document("-", 1, list, &lib, ClusterDefaults::default()).expect("render");
        assert_eq!(rendered.len(), 2);
        assert_eq!(rendered[0].outcome, Some(Outcome::Injected));
        assert_eq!(out["kind"], "List");
        assert_eq!(
            out["items"][0]["spec"]["template"]["metadata"]["annotations"]["velero-hook-injector.io/injected"],
            "postgres/postgres"
        );
        assert_eq!(out["items"][1]["kind"], "Service");
    }
}
