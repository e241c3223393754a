//! Hook rendering and shell-level checks for every template, plus the engines without a server
//! here: Kafka (argv-only `sync`, run for real) and MongoDB (script logic against a stub shell;
//! no MongoDB server is started). Also proves the runner catches a hook whose background child
//! keeps the exec's output open.

#[path = "common/db.rs"]
mod db;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use db::{Container, Phase, run_hook};
use velero_hook_injector::hooks::template::{Library, Template};

fn scripts(t: &Template) -> Vec<(Phase, String)> {
    let ann = t.annotations("db");
    let mut out = Vec::new();
    for (phase, prefix) in [
        (Phase::Pre, "pre.hook.backup.velero.io/command"),
        (Phase::Post, "post.hook.backup.velero.io/command"),
        (Phase::Restore, "post.hook.restore.velero.io/command"),
    ] {
        if let Some(cmd) = ann.get(prefix) {
            let argv = velero_hook_injector::hooks::velero::parse_command(cmd);
            if argv.first().map(String::as_str) == Some("/bin/sh") {
                assert_eq!(
                    argv[1], "-c",
                    "{}: shell hooks are /bin/sh -c SCRIPT",
                    t.name
                );
                assert_eq!(argv.len(), 3, "{}: /bin/sh -c takes one script", t.name);
                out.push((phase, argv[2].clone()));
            }
        }
    }
    out
}

#[test]
fn every_shell_hook_parses_in_dash_and_busybox_and_avoids_bashisms() {
    let lib = Library::builtin().expect("library");
    let mut checked = 0;
    for t in lib.iter() {
        for (phase, script) in scripts(t) {
            for shell in [["/usr/bin/dash", "-n"], ["/usr/bin/busybox", "sh"]] {
                if !Path::new(shell[0]).exists() {
                    assert!(!db::required(), "{} missing", shell[0]);
                    eprintln!("!!!!!!!! SKIPPED syntax check with {} (missing)", shell[0]);
                    continue;
                }
                let mut cmd = std::process::Command::new(shell[0]);
                if shell[0].ends_with("busybox") {
                    cmd.args(["sh", "-n", "-c", &script]);
                } else {
                    cmd.args(["-n", "-c", &script]);
                }
                let r = db::sh(&mut cmd);
                assert!(r.is_ok(), "{} {phase:?}: {} -n: {r:?}", t.name, shell[0]);
            }
            for bashism in [
                "[[",
                "function ",
                "<<<",
                "source ",
                "echo -e",
                "pipefail",
                "$'",
            ] {
                assert!(
                    !script.contains(bashism),
                    "{} {phase:?}: bashism {bashism:?}",
                    t.name
                );
            }
            for leak in [
                "--password",
                "-p\"$",
                " -a \"$",
                "-a $",
                "echo \"$pw",
                "$PGPASSWORD",
            ] {
                assert!(
                    !script.contains(leak),
                    "{} {phase:?}: secret may reach argv/output via {leak:?}",
                    t.name
                );
            }
            assert!(
                !script.lines().any(|l| l.trim_start().starts_with("local ")),
                "{} {phase:?}: `local` is not POSIX",
                t.name
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "expected the shell hooks of all templates, got {checked}"
    );
}

/// The hook sources pass shellcheck as POSIX sh, libraries checked through the scripts that
/// include them (`-x`) and on their own.
#[test]
fn hook_sources_pass_shellcheck() {
    let shellcheck = Path::new("/usr/bin/shellcheck");
    if !db::have(shellcheck, "shellcheck (Debian shellcheck)") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/scripts");
    let mut files = Vec::new();
    for sub in std::fs::read_dir(&dir)
        .expect("templates/scripts")
        .flatten()
    {
        for f in std::fs::read_dir(sub.path()).expect("dir").flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "sh") {
                files.push(p.strip_prefix(&dir).expect("rel").display().to_string());
            }
        }
    }
    assert!(files.len() >= 20, "{files:?}");
    let out = std::process::Command::new(shellcheck)
        .current_dir(&dir)
        .args(["--shell=sh", "-x"])
        .args(&files)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn every_template_renders_velero_annotations() {
    let lib = Library::builtin().expect("library");
    for t in lib.iter() {
        let ann = t.annotations("db");
        assert!(
            ann.contains_key("pre.hook.backup.velero.io/command"),
            "{}: no pre hook",
            t.name
        );
        for (k, v) in &ann {
            if k.ends_with("/command") {
                assert!(v.starts_with('['), "{}: {k} is not a JSON array", t.name);
                assert!(!v.contains("\n "), "{}: {k} must be compact JSON", t.name);
            }
            if k.ends_with("timeout") {
                let d = velero_hook_injector::hooks::velero::parse_go_duration(v)
                    .unwrap_or_else(|| panic!("{}: {k}={v}", t.name));
                assert!(d > Duration::ZERO && d <= Duration::from_secs(4 * 3600));
            }
        }
        assert!(
            t.description.len() > 200,
            "{}: description must say what is and is not guaranteed",
            t.name
        );
    }
}

#[test]
fn kafka_is_argv_only_sync_and_says_crash_consistent() {
    let t = db::template("kafka");
    let ann = t.annotations("kafka");
    assert_eq!(ann["pre.hook.backup.velero.io/command"], r#"["sync"]"#);
    assert_eq!(ann["pre.hook.backup.velero.io/on-error"], "Continue");
    assert_eq!(ann["pre.hook.backup.velero.io/timeout"], "60s");
    assert!(!ann.keys().any(|k| k.starts_with("post.")), "{ann:?}");
    assert!(
        t.warning
            .as_deref()
            .is_some_and(|w| w.contains("crash-consistent"))
    );
    assert!(t.description.contains("crash-consistent"));
    let tmp = tempfile::tempdir().expect("tmp");
    let mut c = Container::new(tmp.path());
    c.name = "kafka".into();
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_ok("sync");
    assert!(run_hook(&t, Phase::Post, &c).is_none());
}

/// The runner must treat a hook whose background child keeps stdout open as hung, like
/// `kubectl exec` (no EOF); and the same child with its streams redirected must return at once.
#[test]
fn runner_catches_a_background_child_holding_the_output() {
    let leaky = Template::from_yaml(
        "leaky.yaml",
        "name: leaky\nengine: x\ndescription: x\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: [/bin/sh, -c, 'sleep 30 & echo started'], onError: Continue, timeout: 2s}\n",
    )
    .expect("leaky");
    let tmp = tempfile::tempdir().expect("tmp");
    let c = Container::new(tmp.path());
    let r = run_hook(&leaky, Phase::Pre, &c).expect("pre");
    assert!(
        r.timed_out,
        "a held-open stdout must count as a hung exec: {r}"
    );
    assert!(!r.ok());
    let detached = Template::from_yaml(
        "detached.yaml",
        "name: detached\nengine: x\ndescription: x\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: [/bin/sh, -c, 'sleep 30 </dev/null >/dev/null 2>&1 & echo started'], onError: Continue, timeout: 2s}\n",
    )
    .expect("detached");
    let r = run_hook(&detached, Phase::Pre, &c).expect("pre");
    r.assert_ok("detached child");
    assert!(r.elapsed < Duration::from_secs(1), "{r}");
}

/// The hook sees only PATH and the container's variables, and no stdin.
#[test]
fn runner_clears_the_environment_and_closes_stdin() {
    let t = Template::from_yaml(
        "env.yaml",
        "name: env\nengine: x\ndescription: x\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: [/bin/sh, -c, 'env | sort; cat; echo stdin-closed'], onError: Continue, timeout: 5s}\n",
    )
    .expect("env");
    let tmp = tempfile::tempdir().expect("tmp");
    let c = Container::new(tmp.path()).with("POSTGRES_USER", "app");
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_ok("env");
    assert!(r.stdout.contains("POSTGRES_USER=app"));
    assert!(r.stdout.contains("stdin-closed"));
    assert!(!r.stdout.contains("HOME="), "environment leaked: {r}");
    assert!(!r.stdout.contains("CARGO"), "environment leaked: {r}");
}

/// A fake `mongosh`: keeps an fsync lock count in $STUB_DIR/count; refuses a login other than
/// root / stub-pw the way mongosh does ("MongoServerError: Authentication failed."), and with
/// $STUB_DIR/auth present a command without login; with $STUB_DIR/tls present (a server in
/// requireTLS mode) drops a connection without --tls, and with $STUB_DIR/mtls also one without
/// a client certificate; records its argv (one [word] each) and the mode of its script file.
const MONGOSH_STUB: &str = r#"#!/bin/sh
f=
for a in "$@"; do f=$a; done
printf '[%s]' "$@" >>"$STUB_DIR/calls"; echo >>"$STUB_DIR/calls"
stat -c %a "$f" >>"$STUB_DIR/modes"
n=$(cat "$STUB_DIR/count" 2>/dev/null || echo 0)
case " $* " in *" --tls "*) ;; *) [ ! -f "$STUB_DIR/tls" ] || { echo "MongoServerSelectionError: connection 1 to 127.0.0.1:27017 closed"; exit 1; } ;; esac
case " $* " in *" --tlsCertificateKeyFile="*) ;; *) [ ! -f "$STUB_DIR/mtls" ] || { echo "MongoServerSelectionError: connection 1 to 127.0.0.1:27017 closed"; exit 1; } ;; esac
if grep -q 'auth(' "$f"; then grep -q 'auth("root", "stub-pw")' "$f" || { echo "MongoServerError: Authentication failed."; exit 1; }
elif [ -f "$STUB_DIR/auth" ]; then echo "MongoServerError: Command listDatabases requires authentication"; exit 1; fi
if grep -q 'lock: true' "$f"; then n=$((n + 1)); echo "$n" >"$STUB_DIR/count"; echo "lockCount=$n"; exit 0; fi
if grep -q 'listDatabases' "$f"; then
  if [ -f "$STUB_DIR/down" ]; then echo "MongoNetworkError: connect ECONNREFUSED"; exit 1; fi
  echo "7.0.12 $(cat "$STUB_DIR/dbs" 2>/dev/null)"; exit 0
fi
if grep -q 'fsyncUnlock' "$f"; then
  if [ "$n" = 0 ]; then echo 'fsyncUnlock failed (not locked?): {"ok":0}'; exit 2; fi
  echo 0 >"$STUB_DIR/count"; echo "lockCount=0"; exit 0
fi
exit 1
"#;

fn mongo_container(tmp: &Path) -> Container {
    let stub = tmp.join("bin");
    std::fs::create_dir_all(&stub).expect("bin");
    let sh = stub.join("mongosh");
    std::fs::write(&sh, MONGOSH_STUB).expect("stub");
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Container::new(tmp)
        .with("PATH", &format!("{}:/usr/bin:/bin", stub.display()))
        .with("STUB_DIR", &tmp.display().to_string())
        .with("MONGO_INITDB_ROOT_USERNAME", "root")
        .with("MONGO_INITDB_ROOT_PASSWORD", "stub-pw")
}

fn lock_count(tmp: &Path) -> String {
    std::fs::read_to_string(tmp.join("count"))
        .unwrap_or_else(|_| "0".into())
        .trim()
        .to_owned()
}

/// MongoDB script logic against the stub (no server): lock, no stacking, unlock, post twice,
/// watchdog expiry reported by post, wrong password, no shell. Never on argv: the password.
#[test]
fn mongodb_hook_logic_against_a_stub_shell() {
    let t = db::template("mongodb");
    let tmp = tempfile::tempdir().expect("tmp");
    let c = mongo_container(tmp.path());
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_ok("pre");
    assert!(
        r.elapsed < Duration::from_secs(5),
        "pre must not wait for the watchdog: {r}"
    );
    assert_eq!(lock_count(tmp.path()), "1");
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_ok("pre #2");
    assert!(r.stdout.contains("not stacking"), "{r}");
    assert_eq!(
        lock_count(tmp.path()),
        "1",
        "pre twice must not stack locks"
    );
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    assert_eq!(lock_count(tmp.path()), "0");
    let r = run_hook(&t, Phase::Post, &c).expect("post");
    r.assert_ok("post #2");
    assert!(r.stdout.contains("nothing to release"), "{r}");

    // Dead-man: the watchdog unlocks, and post then reports the backup as possibly inconsistent.
    let short = c.clone().with("VHI_LOCK_HOLD_SECONDS", "5");
    run_hook(&t, Phase::Pre, &short)
        .expect("pre")
        .assert_ok("pre");
    assert_eq!(lock_count(tmp.path()), "1");
    assert!(
        db::wait_for(Duration::from_secs(15), || (lock_count(tmp.path()) == "0")
            .then_some(()))
        .is_some(),
        "the watchdog did not unlock"
    );
    run_hook(&t, Phase::Post, &short)
        .expect("post")
        .assert_fails_with("post after expiry", "expired");

    let bad = c.clone().with("MONGO_INITDB_ROOT_PASSWORD", "wrong");
    run_hook(&t, Phase::Pre, &bad)
        .expect("pre")
        .assert_fails_with("wrong password", "refused the login of root");
    assert_eq!(lock_count(tmp.path()), "0");

    let calls = std::fs::read_to_string(tmp.path().join("calls")).expect("calls");
    assert!(!calls.contains("stub-pw"), "password on argv: {calls}");
    let modes = std::fs::read_to_string(tmp.path().join("modes")).expect("modes");
    assert!(
        modes.lines().all(|m| m == "600"),
        "script file modes: {modes}"
    );
    let left: Vec<_> = std::fs::read_dir(c.tmp.join("velero-hook-mongodb"))
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".js"))
        .collect();
    assert!(
        left.is_empty(),
        "credential script files left behind: {left:?}"
    );

    // Restore check: the user databases come back (summary line), only system ones (fails),
    // a server that never answers (fails at its own deadline).
    std::fs::write(tmp.path().join("dbs"), "shop (12 MiB)").expect("dbs");
    let r = run_hook(&t, Phase::Restore, &c).expect("restore");
    r.assert_ok("restore check");
    assert!(
        r.stdout.contains("MongoDB 7.0.12") && r.stdout.contains("shop (12 MiB)"),
        "{r}"
    );
    std::fs::write(tmp.path().join("dbs"), "").expect("dbs");
    run_hook(&t, Phase::Restore, &c)
        .expect("restore")
        .assert_fails_with("only system databases", "only its system databases");
    std::fs::write(tmp.path().join("down"), "").expect("down");
    let r = run_hook(
        &t,
        Phase::Restore,
        &c.clone().with("VHI_RESTORE_WAIT_SECONDS", "3"),
    )
    .expect("restore");
    r.assert_fails_with("server down", "no answer within 3s");
    assert!(r.stderr.contains("ECONNREFUSED"), "{r}");

    let no_shell = c.clone().with("PATH", "/usr/bin:/bin");
    run_hook(&t, Phase::Pre, &no_shell)
        .expect("pre")
        .assert_fails_with("no mongosh", "neither mongosh nor mongo");
}

/// The container env of the Bitnami mongodb chart with `tls.enabled` (a stub shell, no server:
/// none can be installed here): MONGODB_EXTRA_FLAGS puts mongod in requireTLS mode and the
/// chart hands the client flags in MONGODB_CLIENT_EXTRA_FLAGS.
fn bitnami_tls_container(tmp: &Path) -> Container {
    let mut c = mongo_container(tmp);
    c.unset("MONGO_INITDB_ROOT_USERNAME");
    c.unset("MONGO_INITDB_ROOT_PASSWORD");
    let tls = "--tlsCertificateKeyFile=/certs/mongodb.pem --tlsCAFile=/certs/mongodb-ca-cert";
    c.with("MONGODB_ROOT_USER", "root")
        .with("MONGODB_ROOT_PASSWORD", "stub-pw")
        .with("MONGODB_PORT_NUMBER", "27018")
        .with("ALLOW_EMPTY_PASSWORD", "no")
        .with(
            "MONGODB_EXTRA_FLAGS",
            &format!("--tlsMode=requireTLS {tls}"),
        )
        .with("MONGODB_CLIENT_EXTRA_FLAGS", &format!("--tls {tls}"))
}

/// MongoDB TLS and credentials against the stub: the chart's client flags reach the shell as
/// separate words (and MONGODB_SHELL_EXTRA_FLAGS wins, as in the image); without them a
/// requireTLS server drops the hooks; a refused or missing login fails the restore hook at
/// once, not at its deadline; a Bitnami secondary logs in with the primary's root password.
#[test]
fn mongodb_tls_and_credentials_against_a_stub_shell() {
    let t = db::template("mongodb");
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("tls"), "").expect("tls");
    std::fs::write(tmp.path().join("mtls"), "").expect("mtls");
    std::fs::write(tmp.path().join("auth"), "").expect("auth");
    std::fs::write(tmp.path().join("dbs"), "shop (12 MiB)").expect("dbs");
    let c = bitnami_tls_container(tmp.path());
    run_hook(&t, Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre, TLS");
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post, TLS");
    let r = run_hook(&t, Phase::Restore, &c).expect("restore");
    r.assert_ok("restore check, TLS");
    assert!(r.stdout.contains("shop (12 MiB)"), "{r}");
    let calls = std::fs::read_to_string(tmp.path().join("calls")).expect("calls");
    assert!(
        calls.lines().all(|l| l.contains(
            "[--port][27018][--tls][--tlsCertificateKeyFile=/certs/mongodb.pem][--tlsCAFile=/certs/mongodb-ca-cert]"
        )),
        "the client flags must reach every shell call as words: {calls}"
    );
    assert!(!calls.contains("stub-pw"), "password on argv: {calls}");

    // The newer name wins over the chart's, as in the image.
    let shell = c.clone().with(
        "MONGODB_SHELL_EXTRA_FLAGS",
        "--tls --tlsCAFile=/certs/ca.pem",
    );
    run_hook(
        &t,
        Phase::Restore,
        &shell.clone().with("VHI_RESTORE_WAIT_SECONDS", "2"),
    )
    .expect("restore")
    .assert_fails_with("no client certificate for mTLS", "closed");
    let mut no_flags = c.clone().with("VHI_RESTORE_WAIT_SECONDS", "3");
    no_flags.unset("MONGODB_CLIENT_EXTRA_FLAGS");
    run_hook(&t, Phase::Pre, &no_flags)
        .expect("pre")
        .assert_fails_with("plain text to requireTLS", "closed");
    run_hook(&t, Phase::Restore, &no_flags)
        .expect("restore")
        .assert_fails_with("plain text to requireTLS", "no answer within 3s");

    // Refused and missing logins: at once, with the fix.
    let slow = c.clone().with("VHI_RESTORE_WAIT_SECONDS", "600");
    let r = run_hook(
        &t,
        Phase::Restore,
        &slow.clone().with("MONGODB_ROOT_PASSWORD", "wrong"),
    )
    .expect("restore");
    r.assert_fails_with("wrong password", "refused the login of root");
    assert!(r.stderr.contains("MONGODB_ROOT_PASSWORD"), "no fix: {r}");
    assert!(r.elapsed < Duration::from_secs(10), "not at once: {r}");
    let mut none = slow.clone();
    none.unset("MONGODB_ROOT_PASSWORD");
    let r = run_hook(&t, Phase::Restore, &none).expect("restore");
    r.assert_fails_with("no credentials, auth on", "requires authentication");
    assert!(r.elapsed < Duration::from_secs(10), "not at once: {r}");

    // A Bitnami replica-set secondary: the primary's root password, from a file.
    let pwfile = tmp.path().join("pw");
    std::fs::write(&pwfile, "stub-pw").expect("pw");
    let mut secondary = none
        .clone()
        .with("MONGODB_REPLICA_SET_MODE", "secondary")
        .with(
            "MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD_FILE",
            &pwfile.display().to_string(),
        );
    secondary.unset("MONGODB_ROOT_USER");
    run_hook(&t, Phase::Restore, &secondary)
        .expect("restore")
        .assert_ok("secondary with the primary's root password");
}
