//! `restore-report RESTORE`: per restored database, what our restore hook said, from the
//! Restore, its pods and the Velero server's log; with `--wait`, once the restore is done.

use std::time::Duration;

use anyhow::Context;

use velero_hook_injector::cluster::audit;
use velero_hook_injector::cluster::restore_report::Verdict;
use velero_hook_injector::cluster::restore_source::{self, Target};

use super::exit::{EXIT_NOT_ALL_PASSED, EXIT_NOT_FINISHED};
use super::{ReportFormat, library};

/// How often `--wait` reads the Restore again.
const POLL: Duration = Duration::from_secs(5);

/// The exit code of a report: 0 every database passed, 1 not every one did (failed, not run,
/// or none found), 4 the restore is not finished.
pub(crate) fn verdict_code(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::AllPassed => 0,
        Verdict::NotAllPassed => EXIT_NOT_ALL_PASSED,
        Verdict::NotFinished => EXIT_NOT_FINISHED,
    }
}

/// What `restore-report` was asked.
pub(crate) struct Args {
    pub(crate) target: Target,
    pub(crate) wait: Option<Duration>,
    pub(crate) output: ReportFormat,
    pub(crate) client: audit::ClientOptions,
    pub(crate) templates: Option<std::path::PathBuf>,
}

/// `restore-report`: prints the report and returns its exit code.
pub(crate) fn restore_report_command(args: Args) -> anyhow::Result<i32> {
    let library = library(args.templates.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let client = audit::connect(&args.client).await?;
        let report = match args.wait {
            Some(timeout) => {
                restore_source::report_when_finished(&client, &args.target, &library, POLL, timeout)
                    .await?
            }
            None => restore_source::report(&client, &args.target, &library).await?,
        };
        Ok::<_, anyhow::Error>(report)
    })?;
    match args.output {
        ReportFormat::Table => print!("{}", report.to_table()),
        ReportFormat::Json => println!("{}", report.to_json()),
    }
    Ok(verdict_code(report.verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_has_its_own_exit_code() {
        let codes = [
            verdict_code(Verdict::AllPassed),
            verdict_code(Verdict::NotAllPassed),
            verdict_code(Verdict::NotFinished),
        ];
        assert_eq!(codes[0], 0);
        // 2 is every command's error code; 3 is audit --apply's.
        assert!(codes[1..].iter().all(|c| ![0, 2, 3].contains(c)));
        assert_ne!(codes[1], codes[2]);
    }
}
