//! The `mysql` (FTWRL holder) and `mariadb` (BACKUP STAGE holder) templates against a real
//! MariaDB 10.11 server (Debian mariadb-server). Oracle MySQL 8.x is not tested here.

#[path = "common/db.rs"]
mod db;
#[path = "common/db_maria.rs"]
mod db_maria;

use std::process::Command;
use std::time::{Duration, Instant};

use db::{Phase, run_hook};
use db_maria::{MariaServer, ROOT_PASSWORD};
use velero_hook_injector::hooks::template::Template;

/// Seconds the lock is held between pre and post in the effect tests.
const HELD: Duration = Duration::from_secs(3);

fn pw_var(name: &str) -> &'static str {
    if name == "mariadb" {
        "MARIADB_ROOT_PASSWORD"
    } else {
        "MYSQL_ROOT_PASSWORD"
    }
}

/// (1) pre returns promptly (EOF on both streams although the holder lives on) and leaves one
/// holder session; post removes it. Both exit 0.
fn pre_post_succeed(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    let t = db::template(name);
    let c = s.container(pw_var(name));
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_ok("pre");
    eprintln!("MEASURE {name} MariaDB-10.11 pre={:?}", r.elapsed);
    assert!(
        r.elapsed < Duration::from_secs(10),
        "pre must return promptly: {r}"
    );
    assert!(r.stdout.contains("held until the post hook"), "{r}");
    assert_eq!(s.holder_sessions(), 1, "exactly one holder after pre");
    let r = run_hook(&t, Phase::Post, &c).expect("post");
    r.assert_ok("post");
    eprintln!("MEASURE {name} MariaDB-10.11 post={:?}", r.elapsed);
    assert!(r.stdout.contains("released the lock"), "{r}");
    assert_eq!(s.holder_sessions(), 0, "holder gone after post");
    assert!(w.progresses(3, Duration::from_secs(10)));

    // TCP through MYSQL_HOST/MYSQL_TCP_PORT, as a Bitnami-style admin user (*_ROOT_USER).
    s.sql(
        "CREATE USER vhiadmin@'127.0.0.1' IDENTIFIED BY 'adm-pw'; \
         GRANT RELOAD, PROCESS, CONNECTION ADMIN ON *.* TO vhiadmin@'127.0.0.1'",
    )
    .expect("admin user");
    let root_user = if name == "mariadb" {
        "MARIADB_ROOT_USER"
    } else {
        "MYSQL_ROOT_USER"
    };
    let mut tcp = c
        .clone()
        .with("MYSQL_HOST", "127.0.0.1")
        .with("MYSQL_TCP_PORT", &s.port.to_string())
        .with(root_user, "vhiadmin")
        .with(pw_var(name), "adm-pw");
    tcp.unset("MYSQL_UNIX_PORT");
    run_hook(&t, Phase::Pre, &tcp)
        .expect("pre")
        .assert_ok("pre over TCP as vhiadmin");
    assert_eq!(s.holder_sessions(), 1);
    let pre_end = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let during = w.commits_between(pre_end, Instant::now());
    run_hook(&t, Phase::Post, &tcp)
        .expect("post")
        .assert_ok("post over TCP as vhiadmin");
    assert!(during <= 1, "{during} commits while locked over TCP");
    assert_eq!(s.holder_sessions(), 0);
    w.stop();
}

/// (2) writes really block between pre and post and resume after post.
fn writes_block(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    let t = db::template(name);
    let c = s.container(pw_var(name));
    run_hook(&t, Phase::Pre, &c).expect("pre").assert_ok("pre");
    let pre_end = Instant::now();
    std::thread::sleep(HELD);
    let post_start = Instant::now();
    let during = w.commits_between(pre_end, post_start);
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    assert!(
        during <= 1,
        "{name}: {during} commits went through while the lock was held"
    );
    assert!(
        w.progresses(5, Duration::from_secs(10)),
        "{name}: writes did not resume after post: {:?}",
        w.errors()
    );
    w.stop();
}

/// Control for (2): the Velero-docs style session-scoped hook protects nothing, and the same
/// measurement sees it (so `writes_block` can fail).
#[test]
fn control_session_scoped_ftwrl_protects_nothing() {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    let naive = Template::from_yaml(
        "naive.yaml",
        r#"
name: naive
engine: mysql
description: Velero docs example
match: {images: [mysql]}
hooks:
  preBackup:
    command: [/bin/sh, -c, 'mariadb --socket="$MYSQL_UNIX_PORT" -uroot -e "FLUSH TABLES WITH READ LOCK"']
    onError: Fail
    timeout: 30s
"#,
    )
    .expect("naive template");
    let r = run_hook(&naive, Phase::Pre, &s.container("MYSQL_PWD")).expect("pre");
    r.assert_ok("the naive hook exits 0");
    let pre_end = Instant::now();
    std::thread::sleep(HELD);
    let during = w.commits_between(pre_end, Instant::now());
    assert!(
        during > 5,
        "session-scoped FTWRL should not block anything, yet only {during} commits"
    );
    w.stop();
}

/// (3) a snapshot taken between pre and post restores with every row committed before pre
/// returned, and (writes being blocked) nothing committed after it but an in-flight one.
fn restore_from_snapshot(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    let t = db::template(name);
    let c = s.container(pw_var(name));
    run_hook(&t, Phase::Pre, &c).expect("pre").assert_ok("pre");
    let committed = w.committed();
    std::thread::sleep(Duration::from_secs(1));
    let restored = s.restore_from_snapshot();
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    w.stop();
    let (count, max) = restored.rows(committed);
    assert_eq!(
        count, committed,
        "{name}: rows committed before pre returned are missing after restore"
    );
    assert!(
        max <= committed + 1,
        "{name}: snapshot holds rows up to {max}, committed after the lock ({committed})"
    );
    assert_eq!(
        restored.holder_sessions(),
        0,
        "restored server has no holder"
    );
}

/// (4) failures are loud and never leave the database locked.
fn failures_are_loud(name: &str) {
    if !db_maria::available() {
        return;
    }
    let mut s = MariaServer::init();
    let w = s.writer();
    let t = db::template(name);
    let c = s.container(pw_var(name));

    let bad = c.clone().with(pw_var(name), "wrong");
    let r = run_hook(&t, Phase::Pre, &bad).expect("pre");
    r.assert_fails_with("wrong password", "Access denied");
    assert!(
        !r.stderr.contains("wrong") && !r.stdout.contains("wrong"),
        "password echoed: {r}"
    );
    assert_eq!(s.holder_sessions(), 0);
    run_hook(&t, Phase::Post, &bad)
        .expect("post")
        .assert_ok("post after a failed pre has nothing to release");

    let mut random = c.clone().with("MYSQL_RANDOM_ROOT_PASSWORD", "yes");
    random.unset(pw_var(name));
    run_hook(&t, Phase::Pre, &random)
        .expect("pre")
        .assert_fails_with("random root password", "ROOT_PASSWORD_FILE");

    // Password from a file, as Kubernetes secrets are mounted.
    let f = s.tmp.path().join("root-pw");
    std::fs::write(&f, ROOT_PASSWORD).expect("pw file");
    let mut file = c
        .clone()
        .with(&format!("{}_FILE", pw_var(name)), &f.display().to_string());
    file.unset(pw_var(name));
    run_hook(&t, Phase::Pre, &file)
        .expect("pre")
        .assert_ok("password file");
    run_hook(&t, Phase::Post, &file)
        .expect("post")
        .assert_ok("post with password file");

    // The holder expires before post: post fails loudly, writes flow again.
    let short = c.clone().with("VHI_LOCK_HOLD_SECONDS", "2");
    run_hook(&t, Phase::Pre, &short)
        .expect("pre")
        .assert_ok("pre");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.holder_sessions(), 0, "holder expired by itself");
    assert!(
        w.progresses(3, Duration::from_secs(10)),
        "writes resume after expiry"
    );
    run_hook(&t, Phase::Post, &short)
        .expect("post")
        .assert_fails_with("post after expiry", "expired");
    run_hook(&t, Phase::Post, &short)
        .expect("post")
        .assert_ok("second post after expiry: already reported");

    // A table lock in the way: the pre hook gives up (lock_wait_timeout) and releases.
    let mut blocker = db::Proc::spawn(
        Command::new("/usr/bin/mariadb")
            .env("MYSQL_PWD", ROOT_PASSWORD)
            .arg("--no-defaults")
            .arg(format!("--socket={}", s.sock.display()))
            .args([
                "--user=root",
                "-e",
                "LOCK TABLES app.t WRITE; SELECT SLEEP(60)",
            ]),
    );
    std::thread::sleep(Duration::from_millis(500));
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_fails_with("lock wait timeout", "no lock is held");
    assert!(r.elapsed < Duration::from_secs(40), "{r}");
    assert_eq!(s.holder_sessions(), 0, "no holder left behind");
    blocker.stop("KILL");
    assert!(w.progresses(3, Duration::from_secs(15)), "writes resume");

    // Server down after pre: post fails loudly (cannot confirm) and kills the local holder.
    run_hook(&t, Phase::Pre, &c).expect("pre").assert_ok("pre");
    s.shutdown();
    w.stop();
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_fails_with("server down at post", "ended badly");
    // Server down at pre.
    run_hook(&t, Phase::Pre, &c)
        .expect("pre")
        .assert_fails_with("server down at pre", "no lock is held");
}

/// (5) pre twice reuses the holder; post twice is fine.
fn idempotent(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    let t = db::template(name);
    let c = s.container(pw_var(name));
    run_hook(&t, Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre #1");
    let r = run_hook(&t, Phase::Pre, &c).expect("pre");
    r.assert_ok("pre #2");
    assert!(r.stdout.contains("reusing"), "{r}");
    assert_eq!(s.holder_sessions(), 1, "pre twice must not stack holders");
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post #1");
    let r = run_hook(&t, Phase::Post, &c).expect("post");
    r.assert_ok("post #2");
    assert!(r.stdout.contains("nothing to release"), "{r}");
    assert_eq!(s.holder_sessions(), 0);
    assert!(w.progresses(3, Duration::from_secs(10)));
    w.stop();
}

/// (6) the same hooks in an Alpine-like userland (BusyBox sh, setsid, sed, ...).
fn busybox_userland(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    let t = db::template(name);
    let c = s.container(pw_var(name));
    let Some(r) = db::run_hook_busybox(&t, Phase::Pre, &c) else {
        return;
    };
    r.assert_ok("pre under busybox");
    assert!(r.elapsed < Duration::from_secs(10), "{r}");
    assert_eq!(s.holder_sessions(), 1);
    let pre_end = Instant::now();
    std::thread::sleep(HELD);
    let during = w.commits_between(pre_end, Instant::now());
    db::run_hook_busybox(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post under busybox");
    assert!(
        during <= 1,
        "{name}: {during} commits while locked (busybox)"
    );
    assert_eq!(s.holder_sessions(), 0);
    db::run_hook_busybox(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post #2 under busybox");
    assert!(w.progresses(3, Duration::from_secs(10)));
    w.stop();
}

/// Runs the restore hook in a thread; the restored server is started `delay` later with `extra`.
fn restore_hook_racing(
    name: &str,
    r: &mut MariaServer,
    extra: &[&str],
    wait: &str,
    delay: Duration,
) -> db::HookRun {
    let t = db::template(name);
    let c = r
        .container(pw_var(name))
        .with("VHI_RESTORE_WAIT_SECONDS", wait);
    let h = std::thread::spawn(move || run_hook(&t, Phase::Restore, &c).expect("restore hook"));
    std::thread::sleep(delay);
    r.spawn(extra);
    h.join().expect("hook thread")
}

/// (7) good copy: the restore hook, started before the restored server, waits for InnoDB
/// recovery, exits 0 and names the writer's schema; a second run changes nothing.
fn restore_hook_good(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    let t = db::template(name);
    let c = s.container(pw_var(name));
    run_hook(&t, Phase::Pre, &c).expect("pre").assert_ok("pre");
    let committed = w.committed();
    let mut r = s.snapshot();
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    w.stop();
    let run = restore_hook_racing(name, &mut r, &[], "600", Duration::from_secs(2));
    run.assert_ok("restore hook on a good copy");
    eprintln!(
        "MEASURE {name} restore={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(run.stdout.contains("restore check passed"), "{run}");
    assert!(run.stdout.contains("MariaDB"), "{run}");
    assert!(
        run.stdout.contains("app (1 tables"),
        "the writer's schema: {run}"
    );
    assert_eq!(r.rows(committed).0, committed, "{name}: rows lost");
    let before = r.rows(u64::MAX / 2);
    run_hook(&t, Phase::Restore, &r.container(pw_var(name)))
        .expect("hook")
        .assert_ok("second run");
    assert_eq!(
        r.rows(u64::MAX / 2),
        before,
        "the restore hook changed data"
    );
}

/// (7) bad copies: each broken restore makes the hook fail within its deadline, saying why.
fn restore_hook_bad(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let w = s.writer();
    assert!(w.progresses(10, Duration::from_secs(20)), "writer runs");
    let bounded = |run: &db::HookRun| {
        assert!(
            run.elapsed < Duration::from_secs(25),
            "the hook must give up at its own deadline (8 s): {run}"
        );
    };
    // A copy without its redo log (ib_logfile0): InnoDB cannot recover, the server is not usable.
    let mut r = s.snapshot();
    std::fs::remove_file(r.data.join("ib_logfile0")).expect("rm redo log");
    let run = restore_hook_racing(name, &mut r, &[], "8", Duration::ZERO);
    eprintln!("MEASURE {name} no-redo-log: {}", run.stderr.trim());
    assert!(!run.ok(), "a copy without its redo log must fail: {run}");
    assert!(
        run.stderr.contains("no answer within 8s") || run.stderr.contains("InnoDB did not start"),
        "{run}"
    );
    bounded(&run);
    // Forced recovery: the server starts only by skipping recovery steps.
    let mut r = s.snapshot();
    let run = restore_hook_racing(
        name,
        &mut r,
        &["--innodb-force-recovery=1"],
        "8",
        Duration::ZERO,
    );
    run.assert_fails_with("forced recovery", "innodb_force_recovery=1");
    bounded(&run);
    // A server that never starts (a datadir it cannot read).
    let mut r = s.snapshot();
    std::fs::write(r.data.join("ibdata1"), vec![0u8; 1 << 20]).expect("zero");
    std::fs::remove_file(r.data.join("ib_logfile0")).expect("rm redo log");
    let run = restore_hook_racing(name, &mut r, &[], "8", Duration::ZERO);
    assert!(!run.ok(), "a zeroed system tablespace must fail: {run}");
    bounded(&run);
    w.stop();
    // An empty volume: a freshly initialised server with no schema.
    let fresh = MariaServer::init_with(true);
    let c = fresh
        .container(pw_var(name))
        .with("VHI_RESTORE_WAIT_SECONDS", "8");
    run_hook(&db::template(name), Phase::Restore, &c)
        .expect("hook")
        .assert_fails_with("empty volume", "without a user table");
}

macro_rules! maria_matrix {
    ($($m:ident => $name:expr),* $(,)?) => {$(
        mod $m {
            #[test]
            fn s1_pre_post_succeed() { super::pre_post_succeed($name) }
            #[test]
            fn s2_writes_block() { super::writes_block($name) }
            #[test]
            fn s3_restore_from_snapshot() { super::restore_from_snapshot($name) }
            #[test]
            fn s4_failures_are_loud() { super::failures_are_loud($name) }
            #[test]
            fn s5_idempotent() { super::idempotent($name) }
            #[test]
            fn s6_busybox_userland() { super::busybox_userland($name) }
            #[test]
            fn s7_restore_hook_good_copy() { super::restore_hook_good($name) }
            #[test]
            fn s7_restore_hook_bad_copy() { super::restore_hook_bad($name) }
        }
    )*};
}

maria_matrix!(mysql_template => "mysql", mariadb_template => "mariadb");
