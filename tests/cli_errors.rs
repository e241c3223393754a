//! The binary's errors: one clear message and its causes, one per line, and the usual exit code,
//! whatever RUST_BACKTRACE / RUST_LIB_BACKTRACE say (users have them set for their own tools).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_velero-hook-injector");

fn run(args: &[&str], backtrace: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("KUBECONFIG");
    if backtrace {
        cmd.env("RUST_BACKTRACE", "full")
            .env("RUST_LIB_BACKTRACE", "1");
    } else {
        cmd.env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
    }
    cmd.output().expect("run the binary")
}

#[test]
fn errors_are_one_message_with_causes_and_never_a_backtrace() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: [a], onError: fail, timeout: 2m}\n",
    )
    .expect("write");
    let bad = bad.to_str().expect("utf-8 path");
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().expect("utf-8 path");

    // (arguments, exit code, the exact first line, what a cause line must say)
    let cases: Vec<(Vec<&str>, i32, String, Option<&str>)> = vec![
        (
            vec!["templates", "validate", bad],
            1,
            format!(
                "Error: {bad}:6: hooks.preBackup.onError: unknown variant `fail`, expected `Fail` or `Continue` at line 6 column 38"
            ),
            None,
        ),
        (
            vec!["templates", "--templates", bad, "list"],
            1,
            "Error: loading custom templates".to_owned(),
            Some("unknown variant `fail`"),
        ),
        (
            vec!["templates", "show", "nope"],
            1,
            "Error: no template \"nope\"; known: ".to_owned(),
            None,
        ),
        (
            vec!["render", missing],
            1,
            format!("Error: reading {missing}"),
            Some("No such file or directory"),
        ),
        (
            vec!["render", "--check", missing],
            2,
            format!("Error: reading {missing}"),
            Some("No such file or directory"),
        ),
    ];
    for (args, code, first, cause) in cases {
        let out = run(&args, true);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines[0].starts_with(&first), "{args:?}: {stderr}");
        assert!(
            lines[1..].iter().all(|l| l.starts_with("  caused by: ")),
            "{args:?}: only cause lines may follow the message: {stderr}"
        );
        match cause {
            Some(c) => assert!(
                lines[1..].iter().any(|l| l.contains(c)),
                "{args:?}: no cause {c:?}: {stderr}"
            ),
            None => assert_eq!(lines.len(), 1, "{args:?}: {stderr}"),
        }
        assert!(
            !stderr.to_lowercase().contains("backtrace"),
            "{args:?}: {stderr}"
        );
        // The same text with the variables unset: they change nothing users see.
        let plain = run(&args, false);
        assert_eq!(String::from_utf8_lossy(&plain.stderr), stderr, "{args:?}");
        assert_eq!(plain.status.code(), Some(code), "{args:?}");
    }
}

const MANIFESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/manifests/bad-hooks.yaml"
);

/// `velero-hook-injector ... | head -1`: the reader closes the pipe early. Every printing
/// command ends quietly, as `cat` does (SIGPIPE's default), never with a panic message.
#[test]
fn a_closed_stdout_ends_printing_commands_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    for args in [
        &["templates", "show", "postgres"][..],
        &["templates", "list"][..],
        &["render", MANIFESTS][..],
        &["render", "--check", "--output", "json", MANIFESTS][..],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Closed before the first write: that write finds no reader, whatever the output size.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0),
            "{args:?}: ended with {:?}, as a pipeline does not expect",
            out.status
        );
    }
}
