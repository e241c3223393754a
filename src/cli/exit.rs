//! How a command ends: the error report for people (never a backtrace) and the exit codes
//! (`render --check` and `audit`: 0 clean, 1 findings, 2 error, 3 some `--apply` patch failed;
//! `restore-report`: 0 every database passed, 1 not every one did, 2 error, 4 not finished).

/// Exit code of a command that failed (`render --check` and `audit` use [`exit_with`]'s codes).
pub(crate) const FAILURE: u8 = 1;

/// An error for people: `Error: <message>`, then one `  caused by: <cause>` line per cause that
/// adds something (causes whose text the line before already contains are skipped). Never a
/// backtrace.
pub(crate) fn error_report(error: &anyhow::Error) -> String {
    let mut out = format!("Error: {error}\n");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
        }
        previous = text;
    }
    out
}

/// Ends the process with the CI exit code: 0 clean, 1 findings, 2 error.
pub(crate) fn exit_with(result: anyhow::Result<bool>) -> ! {
    exit_code(result.map(i32::from))
}

/// Exit code when some `audit --apply` patch failed.
pub(crate) const EXIT_PATCH_FAILED: i32 = 3;

/// Exit code of `restore-report` when some database failed or was not run (or none was found).
pub(crate) const EXIT_NOT_ALL_PASSED: i32 = 1;

/// Exit code of `restore-report` when the restore is not finished (nothing failed so far).
pub(crate) const EXIT_NOT_FINISHED: i32 = 4;

/// Ends the process with `code`, or 2 after printing the error.
pub(crate) fn exit_code(result: anyhow::Result<i32>) -> ! {
    let code = result.unwrap_or_else(|e| {
        eprint!("{}", error_report(&e));
        2
    });
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn error_report_is_the_message_and_its_causes_one_per_line() {
        let e = anyhow::Error::new(std::io::Error::other("disk on fire"))
            .context("reading a.yaml")
            .context("loading custom templates");
        assert_eq!(
            error_report(&e),
            "Error: loading custom templates\n  caused by: reading a.yaml\n  caused by: disk on fire\n"
        );
        // A cause already quoted by the message before it is not printed twice.
        let e = anyhow::Error::new(Repeats(std::io::Error::other("gone")));
        assert_eq!(error_report(&e), "Error: outer: gone\n");
    }
}
