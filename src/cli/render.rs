//! `render` and `render --check`: manifests (files or stdin) as the webhook would leave their
//! pods, or checked against Velero's hook rules.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use velero_hook_injector::admission::render;
use velero_hook_injector::cluster::audit;
use velero_hook_injector::pod::backup_method::ClusterDefaults;

use super::audit::print_report;
use super::{OutputFormat, library};

pub(crate) fn render_command(
    files: &[PathBuf],
    print_patch: bool,
    templates: Option<&std::path::Path>,
    defaults: ClusterDefaults,
) -> anyhow::Result<()> {
    let library = library(templates)?;
    let inputs = read_inputs(files)?;
    let mut out = String::new();
    let mut first = true;
    let mut seen = Vec::new();
    let mut pod_bearing = false;
    for (name, text) in &inputs {
        for (i, doc) in render::parse_documents(name, text)?.into_iter().enumerate() {
            let (document, rendered) =
                render::render_document(name, i + 1, doc, &library, defaults)?;
            for r in &rendered {
                seen.push(r.subject.clone());
                pod_bearing |= r.outcome.is_some();
                for w in &r.warnings {
                    eprintln!("Warning: {}: {w}", r.subject);
                }
                if print_patch && r.outcome.is_some() {
                    // The patch is the webhook's, on the pod; for a workload, say where that
                    // pod sits so the paths are not read as the workload's own.
                    let kind = r.subject.split_once('/').map_or("", |(k, _)| k);
                    let scope = match render::pod_template_pointer(kind) {
                        Some(p) if !p.is_empty() => format!(
                            " (the patch the webhook returns for each of its pods: paths are relative to the pod template at {p})"
                        ),
                        _ => String::new(),
                    };
                    out.push_str(&format!(
                        "# {}{scope}\n{}\n",
                        r.subject,
                        serde_json::to_string_pretty(&r.patch)?
                    ));
                }
            }
            if !print_patch {
                if !first {
                    out.push_str("---\n");
                }
                out.push_str(&render::to_yaml(&document));
            }
            first = false;
        }
    }
    if !pod_bearing {
        eprintln!("Note: {}", nothing_pod_bearing(&inputs, &seen));
    }
    print!("{out}");
    Ok(())
}

/// What to tell a user whose input holds no Pod or pod template.
fn nothing_pod_bearing(inputs: &[(String, String)], seen: &[String]) -> String {
    let names: Vec<&str> = inputs
        .iter()
        .map(|(f, _)| if f == "-" { "stdin" } else { f.as_str() })
        .collect();
    let found = if seen.is_empty() {
        "no manifests".to_owned()
    } else {
        let mut kinds: Vec<&str> = seen
            .iter()
            .map(|s| s.split_once('/').map_or(s.as_str(), |(k, _)| k))
            .map(|k| if k.is_empty() { "(no kind)" } else { k })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        format!("only {}", kinds.join(", "))
    };
    format!(
        "{} holds no Pod or pod template ({found}): the webhook acts on Pods, and render reads the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs, also as the items of a kind: List (kubectl get -o yaml). Give it the workloads (e.g. helm template … | velero-hook-injector render --check -).",
        names.join(", ")
    )
}

/// Manifest inputs as (name, text): the files, or stdin for none or `-`.
fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(vec![("-".to_owned(), text)]);
    }
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))
                .map(|t| (f.display().to_string(), t))
        })
        .collect()
}

/// `render --check`: true when there are findings.
pub(crate) fn check_command(
    files: &[PathBuf],
    templates: Option<&std::path::Path>,
    output: OutputFormat,
    defaults: ClusterDefaults,
) -> anyhow::Result<bool> {
    let library = library(templates)?;
    let inputs = read_inputs(files)?;
    let checked = audit::check_manifests(&inputs, &library, defaults)?;
    if checked.report.summary.checked == 0 {
        // Exit 2, not 0: "clean" would pass a CI gate that examined nothing; the input is not
        // what --check checks, which is an error in the input (like an unparseable document).
        anyhow::bail!(
            "{} Nothing was checked.",
            nothing_pod_bearing(&inputs, &checked.seen)
        );
    }
    for w in &checked.warnings {
        eprintln!("Warning: {w}");
    }
    print_report(&checked.report, output);
    Ok(checked.report.has_findings())
}
