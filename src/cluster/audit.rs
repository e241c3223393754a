//! `audit` and `render --check`: report pods whose Velero hooks are missing, break Velero's rules,
//! or differ from the current template.
//!
//! The Kubernetes-facing part is thin ([`connect`], [`list_pods`]); everything else — which pods
//! to check, the findings ([`crate::hooks::rules`]), the report and its table and JSON forms — is pure.

use std::fmt::Write as _;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;
use serde_json::Value;

use crate::admission::render::{self, RenderError, Rendered};
use crate::cluster::schedules::{self, Schedule};
use crate::hooks::rules::{self, Finding, Severity};
use crate::hooks::template::Library;
use crate::hooks::velero;
use crate::pod::backup_method::ClusterDefaults;

/// Page size of pod list requests (the API server answers with a continue token past it).
pub const PAGE_SIZE: u32 = 500;

/// Why an audit could not run (exit code 2, as opposed to findings).
///
/// Each message already includes kube's error text, whose own source chain repeats it, so the
/// kube error is deliberately not exposed as `source` (an error chain would print it twice).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The kubeconfig could not be read or has no such context.
    #[error("kubeconfig: {0}")]
    Kubeconfig(kube::config::KubeconfigError),
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(
        "no Kubernetes configuration found (set KUBECONFIG, pass --kubeconfig, or run in a pod with a service account): {0}"
    )]
    Infer(kube::config::InferConfigError),
    /// The client could not be built from the configuration (TLS, proxy, auth plugin).
    #[error("creating the Kubernetes client: {}", chain(.0))]
    Client(kube::Error),
    /// The API server refused or failed the list request.
    #[error("listing pods in {scope}: {}{hint}", chain(.error))]
    List {
        /// What was listed.
        scope: String,
        /// The API error.
        error: kube::Error,
        /// A fix for common causes (RBAC).
        hint: String,
    },
}

/// An error and its sources as one line, skipping sources whose text is already included
/// (kube's connection errors say only `client error (Connect)`; the cause is further down).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = e.source();
    }
    text
}

/// What the audit assumes and reads about Velero.
#[derive(Clone, Debug)]
pub struct Velero {
    /// The cluster's Backup defaults (`--default-volumes-to-fs-backup`).
    pub defaults: ClusterDefaults,
    /// Velero's namespace, where its Schedules are read.
    pub namespace: String,
}

/// Where to look for pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace (`-A`).
    AllNamespaces,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Namespace(ns) => write!(f, "namespace {ns}"),
            Scope::AllNamespaces => f.write_str("all namespaces"),
        }
    }
}

/// How to reach the cluster, as kubectl's flags say it.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// `--kubeconfig`: a kubeconfig file instead of `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a kubeconfig context instead of the current one.
    pub context: Option<String>,
}

/// A client configured like kubectl: `--kubeconfig`/`--context` when given, otherwise
/// `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account. The client's default
/// namespace is the context's namespace (used when neither `-n` nor `-A` is given).
pub async fn connect(opts: &ClientOptions) -> Result<kube::Client, AuditError> {
    if opts.kubeconfig.is_none() && opts.context.is_none() {
        let config = kube::Config::infer().await.map_err(AuditError::Infer)?;
        return kube::Client::try_from(config).map_err(AuditError::Client);
    }
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(AuditError::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(AuditError::Kubeconfig)?
        }
        None => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(AuditError::Kubeconfig)?,
    };
    kube::Client::try_from(config).map_err(AuditError::Client)
}

/// Lists every pod in `scope`, following continue tokens page by page.
pub async fn list_pods(client: &kube::Client, scope: &Scope) -> Result<Vec<Pod>, AuditError> {
    let api: Api<Pod> = match scope {
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        Scope::AllNamespaces => Api::all(client.clone()),
    };
    let mut pods = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await.map_err(|error| {
            let hint = match &error {
                kube::Error::Api(status) if status.code == 403 => format!(
                    " (fix: the audit needs RBAC permission to list pods in {scope}: kubectl auth can-i list pods{})",
                    match scope {
                        Scope::Namespace(ns) => format!(" -n {ns}"),
                        Scope::AllNamespaces => " -A".to_owned(),
                    }
                ),
                _ => String::new(),
            };
            AuditError::List {
                scope: scope.to_string(),
                error,
                hint,
            }
        })?;
        pods.extend(page.items);
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    Ok(pods)
}

/// Lists the pods in `scope` and checks them.
pub async fn audit(
    client: &kube::Client,
    scope: &Scope,
    library: &Library,
    defaults: ClusterDefaults,
) -> Result<Report, AuditError> {
    let pods = list_pods(client, scope).await?;
    Ok(audit_pods(scope.to_string(), &pods, library, defaults))
}

/// One pod (or pod template) with findings.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReport {
    /// Namespace, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name, or `Kind/name` of a manifest.
    pub name: String,
    /// Manifest file, for `render --check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What is wrong, errors first.
    pub findings: Vec<Finding>,
}

impl PodReport {
    fn label(&self) -> String {
        match (&self.file, &self.namespace) {
            (Some(file), _) => format!("{file}: {}", self.name),
            (None, Some(ns)) => format!("{ns}/{}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// Counts over a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Pods (or pod templates) examined.
    pub checked: usize,
    /// Of those, pods with at least one finding.
    pub with_findings: usize,
    /// Error findings.
    pub errors: usize,
    /// Warning findings.
    pub warnings: usize,
}

/// The result of an audit or `render --check`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What was examined, e.g. `namespace shop` or the manifest files.
    pub scope: String,
    /// Counts.
    pub summary: Summary,
    /// Pods with findings, in the order they were examined.
    pub pods: Vec<PodReport>,
}

impl Report {
    /// Builds a report; `checked` is how many pods were examined in all.
    pub fn new(scope: String, checked: usize, pods: Vec<PodReport>) -> Self {
        let all = || pods.iter().flat_map(|p| p.findings.iter());
        let summary = Summary {
            checked,
            with_findings: pods.len(),
            errors: all().filter(|f| f.severity == Severity::Error).count(),
            warnings: all().filter(|f| f.severity == Severity::Warning).count(),
        };
        Self {
            scope,
            summary,
            pods,
        }
    }

    /// True when anything was found (exit code 1).
    pub fn has_findings(&self) -> bool {
        !self.pods.is_empty()
    }

    /// JSON for machines: `{scope, summary, pods: [{namespace, name, findings: [{severity, key,
    /// rule, message}]}]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// A table for people: one row per finding, the message wrapped below it, and a summary.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        if self.pods.is_empty() {
            let _ = writeln!(
                out,
                "No findings: {} pod{} checked in {}.",
                s.checked,
                plural(s.checked),
                self.scope
            );
            return out;
        }
        let rows: Vec<(String, &Finding)> = self
            .pods
            .iter()
            .flat_map(|p| {
                let label = p.label();
                p.findings.iter().map(move |f| (label.clone(), f))
            })
            .collect();
        let w_pod = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0).max(3);
        let w_rule = rows
            .iter()
            .map(|(_, f)| f.rule_id.len())
            .max()
            .unwrap_or(0)
            .max(4);
        let _ = writeln!(
            out,
            "{:<w_pod$}  {:<8}  {:<w_rule$}  KEY",
            "POD", "SEVERITY", "RULE"
        );
        for (label, f) in rows {
            let _ = writeln!(
                out,
                "{label:<w_pod$}  {:<8}  {:<w_rule$}  {}",
                f.severity.as_str(),
                f.rule_id,
                f.key
            );
            for line in wrap(&f.message, 96) {
                let _ = writeln!(out, "    {line}");
            }
        }
        let _ = writeln!(
            out,
            "\n{} of {} pod{} checked in {} ha{} findings: {} error{}, {} warning{}.",
            s.with_findings,
            s.checked,
            plural(s.checked),
            self.scope,
            if s.with_findings == 1 { "s" } else { "ve" },
            s.errors,
            plural(s.errors),
            s.warnings,
            plural(s.warnings)
        );
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Greedy word wrap; words longer than `width` stay whole.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// True when Velero would never run hooks for this pod, so they are not worth checking: it is
/// excluded from backups, or it has finished (Velero skips Succeeded/Failed pods).
fn out_of_scope(pod: &Pod) -> bool {
    let excluded = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(velero::EXCLUDE_LABEL))
        .is_some_and(|v| v == "true");
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    excluded || finished
}

/// Checks pods (pure) under the cluster's Backup `defaults`: every pod that Velero would run
/// hooks for is examined; only those with findings are listed.
pub fn audit_pods(
    scope: String,
    pods: &[Pod],
    library: &Library,
    defaults: ClusterDefaults,
) -> Report {
    audit_pods_with_schedules(scope, pods, &[], library, defaults)
}

/// [`audit_pods`], and each pod also against Velero's `schedules` (the rules that need them:
/// spec hooks the pod's annotation hooks silence, data PVCs a Schedule would snapshot).
pub fn audit_pods_with_schedules(
    scope: String,
    pods: &[Pod],
    schedules: &[Schedule],
    library: &Library,
    defaults: ClusterDefaults,
) -> Report {
    let checked: Vec<&Pod> = pods.iter().filter(|p| !out_of_scope(p)).collect();
    let reports = checked
        .iter()
        .filter_map(|pod| {
            let mut findings = rules::check_pod_with(pod, library, defaults);
            findings.extend(schedules::findings(pod, schedules, library, defaults));
            findings.sort_by_key(|f| f.severity);
            (!findings.is_empty()).then(|| PodReport {
                namespace: pod.metadata.namespace.clone(),
                name: pod
                    .metadata
                    .name
                    .clone()
                    .or_else(|| pod.metadata.generate_name.clone())
                    .unwrap_or_default(),
                file: None,
                findings,
            })
        })
        .collect();
    Report::new(scope, checked.len(), reports)
}

/// The pod (template) of a rendered manifest as a Pod, for the rules; `None` for kinds
/// without pods or a pod spec that does not deserialise (render already reported that).
pub fn pod_of_manifest(manifest: &Value) -> Option<Pod> {
    let kind = manifest.get("kind")?.as_str()?;
    let template = manifest.pointer(render::pod_template_pointer(kind)?)?;
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let (Some(m), Some(ns)) = (
        metadata.as_object_mut(),
        manifest.pointer("/metadata/namespace"),
    ) {
        m.entry("namespace").or_insert_with(|| ns.clone());
    }
    let mut pod = serde_json::json!({"metadata": metadata, "spec": template.get("spec")?.clone()});
    if kind == "StatefulSet" {
        // Its pods also get a volume per claim template, which the pod template does not list.
        let claims = manifest
            .pointer("/spec/volumeClaimTemplates")
            .unwrap_or(&Value::Null);
        let name = manifest
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        render::add_claim_template_volumes(&mut pod, &render::manifest_claims(claims), name);
    }
    serde_json::from_value(pod).ok()
}

/// Findings for one rendered manifest (`render --check`): the pod as the webhook would leave it.
/// `None` for kinds without pods.
pub fn check_rendered(
    file: &str,
    rendered: &Rendered,
    library: &Library,
    defaults: ClusterDefaults,
) -> Option<PodReport> {
    rendered.outcome?;
    let pod = pod_of_manifest(&rendered.manifest)?;
    Some(PodReport {
        namespace: pod.metadata.namespace.clone(),
        name: rendered.subject.clone(),
        file: Some(file.to_owned()),
        findings: rules::check_pod_with(&pod, library, defaults),
    })
}

/// The result of `render --check` over some manifests.
#[derive(Debug)]
pub struct ManifestCheck {
    /// Findings per pod template.
    pub report: Report,
    /// The admission warnings rendering produced, as `Kind/name: message` (kubectl would print
    /// them; `render` sends them to stderr).
    pub warnings: Vec<String>,
    /// `Kind/name` of every manifest read, pod-bearing or not (to say what was found when
    /// nothing could be checked).
    pub seen: Vec<String>,
}

/// `render --check`: renders every document of `inputs` (`(file name, text)`, `-` for stdin) as
/// the webhook run with the Backup `defaults` would, and checks each resulting pod (template)
/// against the rules.
pub fn check_manifests(
    inputs: &[(String, String)],
    library: &Library,
    defaults: ClusterDefaults,
) -> Result<ManifestCheck, RenderError> {
    let mut checked = 0;
    let mut pods = Vec::new();
    let mut warnings = Vec::new();
    let mut seen = Vec::new();
    for (file, text) in inputs {
        for (i, doc) in render::parse_documents(file, text)?.into_iter().enumerate() {
            let (_, rendered) = render::render_document(file, i + 1, doc, library, defaults)?;
            for rendered in rendered {
                seen.push(rendered.subject.clone());
                warnings.extend(
                    rendered
                        .warnings
                        .iter()
                        .map(|w| format!("{}: {w}", rendered.subject)),
                );
                if let Some(report) = check_rendered(file, &rendered, library, defaults) {
                    checked += 1;
                    if !report.findings.is_empty() {
                        pods.push(report);
                    }
                }
            }
        }
    }
    let names: Vec<&str> = inputs
        .iter()
        .map(|(f, _)| if f == "-" { "stdin" } else { f.as_str() })
        .collect();
    Ok(ManifestCheck {
        report: Report::new(names.join(", "), checked, pods),
        warnings,
        seen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_whole() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("averylongword x", 4), vec!["averylongword", "x"]);
        assert!(wrap("", 10).is_empty());
    }
}
