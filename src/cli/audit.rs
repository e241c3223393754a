//! `audit` and `audit --apply`: report the pods of a cluster whose hooks are missing, break
//! Velero's rules or drifted from the template, and optionally patch them.

use anyhow::Context;

use velero_hook_injector::cluster::{audit, schedules};
use velero_hook_injector::reconcile::apply::{self, ApplyOptions};

use super::exit::EXIT_PATCH_FAILED;
use super::{OutputFormat, library};

pub(crate) fn print_report(report: &audit::Report, output: OutputFormat) {
    match output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{}", report.to_json()),
    }
}

/// Velero's Schedules, or none with one line on stderr saying why they are not compared:
/// Velero's CRDs are not installed, or they cannot be read (the pods are audited all the same).
async fn read_schedules(client: &kube::Client, namespace: &str) -> Vec<schedules::Schedule> {
    match schedules::list_schedules(client, namespace).await {
        Ok(Some(list)) => list,
        Ok(None) => {
            eprintln!(
                "info: no Velero Schedule resource in this cluster (schedules.velero.io is not installed), so no pod is compared with Schedules"
            );
            Vec::new()
        }
        Err(e) => {
            eprintln!(
                "warning: {e}; pods are not compared with Velero's Schedules (spec-hooks-shadowed, dump-data-volume-snapshotted)"
            );
            Vec::new()
        }
    }
}

/// `audit`: the exit code (0 clean, 1 findings, 3 some `--apply` patch failed).
pub(crate) fn audit_command(
    namespace: Option<String>,
    all_namespaces: bool,
    client: audit::ClientOptions,
    output: OutputFormat,
    templates: Option<&std::path::Path>,
    apply: Option<ApplyOptions>,
    velero: audit::Velero,
) -> anyhow::Result<i32> {
    let defaults = velero.defaults;
    let library = library(templates)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (report, run) = runtime.block_on(async {
        let client = audit::connect(&client).await?;
        let scope = if all_namespaces {
            audit::Scope::AllNamespaces
        } else {
            audit::Scope::Namespace(
                namespace.unwrap_or_else(|| client.default_namespace().to_owned()),
            )
        };
        let pods = audit::list_pods(&client, &scope).await?;
        let schedules = read_schedules(&client, &velero.namespace).await;
        let report = audit::audit_pods_with_schedules(
            scope.to_string(),
            &pods,
            &schedules,
            &library,
            defaults,
        );
        let run = match &apply {
            Some(opts) => Some(apply::apply_report(&client, &pods, &report, &library, opts).await),
            None => None,
        };
        Ok::<_, audit::AuditError>((report, run))
    })?;
    let Some(run) = run else {
        print_report(&report, output);
        return Ok(i32::from(report.has_findings()));
    };
    match output {
        OutputFormat::Table => print!("{}\n{}", report.to_table(), run.to_table()),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"audit": report, "apply": run}))?
        ),
    }
    Ok(if run.summary.failed > 0 {
        EXIT_PATCH_FAILED
    } else {
        i32::from(run.summary.remaining > 0)
    })
}
