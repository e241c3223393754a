//! The `mysql` (FTWRL holder) and `mariadb` (BACKUP STAGE holder) templates against a real
//! MariaDB 10.11 server (Debian mariadb-server), and their dump mode for file-system backup
//! (s8) with its control (s9). Oracle MySQL 8.x is not tested here.

#[path = "common/db.rs"]
mod db;
#[path = "common/db_maria.rs"]
mod db_maria;

use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use db::{Phase, run_hook};
use db_maria::{IMAGE_ENV, MariaServer, ROOT_PASSWORD};
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
        .assert_fails_with("random root password", "ROOT_PASSWORD[_FILE]");

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
    assert!(run.stdout.contains(", primary,"), "reports the role: {run}");
    assert_eq!(r.rows(committed).0, committed, "{name}: rows lost");
    // A client that prints a warning on stderr (a world-writable option file it ignores): the
    // check still reads its answers and passes, and reports the warning.
    let home = r.tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let cnf = home.join(".my.cnf");
    std::fs::write(&cnf, "[client]\n").expect("cnf");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cnf, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let c = r
        .container(pw_var(name))
        .with("HOME", &home.display().to_string());
    let run = run_hook(&t, Phase::Restore, &c).expect("hook");
    run.assert_ok("restore check with a client warning");
    assert!(run.stdout.contains("client warning"), "{run}");
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
    // A copy that lost one table's file (app/t.ibd): the server starts, lists the table, and
    // cannot read it ("Tablespace is missing"): the check fails. The copy is of a cleanly
    // stopped server: from a running one, recovery would rebuild a young table's file from the
    // redo log.
    let mut s = s;
    s.shutdown();
    let mut r = s.live_file_copy(Duration::ZERO);
    std::fs::remove_file(r.data.join("app").join("t.ibd")).expect("rm t.ibd");
    let run = restore_hook_racing(name, &mut r, &[], "30", Duration::ZERO);
    eprintln!("MEASURE {name} missing-ibd: {}", run.stderr.trim());
    run.assert_fails_with("a copy without app/t.ibd", "cannot be read");
    assert!(run.stderr.contains("app"), "names the table: {run}");
    bounded(&run);
    // An empty volume: a freshly initialised server with no schema.
    let fresh = MariaServer::init_with(true);
    let c = fresh
        .container(pw_var(name))
        .with("VHI_RESTORE_WAIT_SECONDS", "8");
    run_hook(&db::template(name), Phase::Restore, &c)
        .expect("hook")
        .assert_fails_with("empty volume", "has no user table");
}

/// The template's dump-mode hooks (what the webhook injects for file-system backup when it can
/// give the pod a dump volume) in place of the default ones.
fn dump_tpl(name: &str) -> Template {
    let mut t = db::template(name);
    t.hooks = t
        .fs_backup
        .clone()
        .and_then(|f| f.dump)
        .unwrap_or_else(|| panic!("{name} has a dump mode"));
    t
}

/// The application of the dump-mode tests, in schema `db`: every commit of the writer inserts
/// row n into t and u and moves one unit between the two balances, in one transaction (a trigger
/// logs n in audit), so a torn copy shows; a MyISAM table, a view, a routine, an event; an
/// account with a grant on one table.
fn app_schema(s: &MariaServer, db: &str) {
    s.sql(&format!(
        "CREATE DATABASE IF NOT EXISTS {db}; \
         CREATE TABLE {db}.t (n BIGINT PRIMARY KEY) ENGINE=InnoDB; \
         CREATE TABLE {db}.u (n BIGINT PRIMARY KEY, pad CHAR(200) NOT NULL) ENGINE=InnoDB; \
         CREATE TABLE {db}.bal (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB; \
         INSERT INTO {db}.bal VALUES (1, 0), (2, 0); \
         CREATE TABLE {db}.audit (n BIGINT) ENGINE=InnoDB; \
         CREATE TRIGGER {db}.t_ai AFTER INSERT ON {db}.t FOR EACH ROW INSERT INTO {db}.audit VALUES (NEW.n); \
         CREATE TABLE {db}.legacy (k INT) ENGINE=MyISAM; INSERT INTO {db}.legacy VALUES (1); \
         CREATE VIEW {db}.vt AS SELECT COUNT(*) AS c FROM {db}.t; \
         CREATE FUNCTION {db}.twice(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x; \
         CREATE EVENT {db}.ev ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM {db}.audit WHERE n < 0; \
         CREATE USER reporter@'%' IDENTIFIED BY 'rep-pw'; GRANT SELECT ON {db}.t TO reporter@'%'"
    ))
    .expect("application schema");
}

/// The writer of [`app_schema`]: one transaction per commit, over the socket.
fn tx_writer(s: &MariaServer, db: &str) -> db::Writer {
    let (sock, db) = (s.sock.clone(), db.to_owned());
    db::Writer::start(move |n| {
        db::sh(
            Command::new("/usr/bin/mariadb")
                .env("MYSQL_PWD", ROOT_PASSWORD)
                .arg("--no-defaults")
                .arg(format!("--socket={}", sock.display()))
                .args(["--user=root", "-e"])
                .arg(format!(
                    "BEGIN; INSERT INTO {db}.t VALUES ({n}); INSERT INTO {db}.u VALUES ({n}, REPEAT('x', 200)); \
                     UPDATE {db}.bal SET v = v + 1 WHERE id = 1; UPDATE {db}.bal SET v = v - 1 WHERE id = 2; COMMIT"
                )),
        )
        .map(|_| ())
    })
}

/// [rows of t, max n, rows of u, rows of audit, balance 1, sum of balances].
fn tx_state(r: &MariaServer, db: &str) -> Result<Vec<i64>, String> {
    let o = r.sql(&format!(
        "SELECT COUNT(*), COALESCE(MAX(n), 0), (SELECT COUNT(*) FROM {db}.u), (SELECT COUNT(*) FROM {db}.audit), \
         (SELECT v FROM {db}.bal WHERE id = 1), (SELECT SUM(v) FROM {db}.bal) FROM {db}.t"
    ))?;
    o.split_whitespace()
        .map(|x| x.parse().map_err(|e| format!("{x:?}: {e}")))
        .collect()
}

/// Rows 1..=k with `from` <= k <= `upto` (one point in time between the rows committed before
/// the pre hook started and when it returned), and every transaction whole; returns k.
fn assert_consistent(r: &MariaServer, from: u64, upto: u64, what: &str) -> i64 {
    let v = tx_state(r, "app").expect("restored tables readable");
    let (t, max) = (v[0], v[1]);
    assert!(
        t == max && max >= from as i64 && max <= upto as i64,
        "{what}: rows 1..={from} were committed before pre started, {upto} when it returned; restored {t} rows up to {max}"
    );
    assert!(
        v[2] == t && v[3] == t && v[4] == t && v[5] == 0,
        "{what}: a transaction is torn: t={t} u={} audit={} balance={} sum={}",
        v[2],
        v[3],
        v[4],
        v[5]
    );
    t
}

/// (8) dump mode under file-system backup: the pre hook dumps while the writer commits; the dump
/// volume is copied file by file (no freeze) while it goes on; the restore starts a server on an
/// empty data directory initialised as the image does from the same env, and the restore hook
/// loads the copy's dump once. Missing, truncated, failing and not-fresh cases fail loudly.
fn dump_mode_fsb(name: &str) {
    if !db_maria::available() {
        return;
    }
    let t = dump_tpl(name);
    let s = MariaServer::init_like_image(IMAGE_ENV);
    app_schema(&s, "app");
    let w = tx_writer(&s, "app");
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    let c = s.image_container(IMAGE_ENV);
    let from = w.committed();
    let pre = run_hook(&t, Phase::Pre, &c).expect("dump-mode pre hook");
    pre.assert_ok("dump-mode pre");
    let committed = w.committed();
    eprintln!(
        "MEASURE {name} dump={:?} {}",
        pre.elapsed,
        pre.stdout.trim()
    );
    assert!(pre.stdout.contains("schemas app to"), "{pre}");
    assert!(
        pre.stdout.contains("WARNING: not transactional")
            && pre.stdout.contains("app.legacy MyISAM"),
        "the MyISAM table is named: {pre}"
    );
    assert_eq!(
        pre.stdout.contains("no accounts dumped"),
        name == "mysql",
        "{pre}"
    );
    // Velero's node agent copies the dump volume while the database keeps committing.
    let backup = tempfile::tempdir().expect("backup store");
    let stored = backup.path().join("vhi-dump");
    db::fsb_copy(&s.dump_dir(), &stored, Duration::from_millis(5));
    assert!(
        w.progresses(5, Duration::from_secs(10)),
        "writes went on during the copy"
    );
    w.stop();

    // Restore: an empty data volume that the image initialises from the same env; the dump
    // volume from the copy.
    let fresh = MariaServer::init_like_image(IMAGE_ENV);
    db::fsb_copy(&stored, &fresh.dump_dir(), Duration::ZERO);
    let rc = fresh.image_container(IMAGE_ENV);
    let run = run_hook(&t, Phase::Restore, &rc).expect("load hook");
    run.assert_ok("load into the fresh server");
    eprintln!(
        "MEASURE {name} load={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(
        run.stdout.contains("loaded dump")
            && run.stdout.contains("into the freshly initialised")
            && run.stdout.contains("app (6 tables"),
        "the path it took: {run}"
    );
    let k = assert_consistent(&fresh, from, committed, &format!("{name} dump mode"));
    assert_eq!(
        fresh
            .sql("SELECT app.twice(21), (SELECT c FROM app.vt), (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE trigger_schema = 'app'), (SELECT COUNT(*) FROM information_schema.EVENTS WHERE event_schema = 'app'), (SELECT COUNT(*) FROM app.legacy)")
            .expect("objects"),
        format!("42\t{k}\t1\t1\t1"),
        "routine, view, trigger, event and the MyISAM table came back"
    );
    // The accounts of the env keep the fresh server's passwords (the mysql schema was not loaded
    // over them); the healthcheck account works with the password the image just wrote.
    fresh
        .sql_tcp("root", ROOT_PASSWORD, "SELECT 1")
        .expect("root over TCP (root@'%')");
    assert_eq!(
        fresh
            .sql_tcp("appuser", "app-pw", "SELECT COUNT(*) FROM app.t")
            .expect("appuser"),
        k.to_string()
    );
    fresh
        .sql_tcp("healthcheck", &fresh.healthcheck_password(), "SELECT 1")
        .expect("healthcheck account of the fresh server");
    let reporter = fresh.sql_tcp("reporter", "rep-pw", "SELECT COUNT(*) FROM app.t");
    if name == "mariadb" {
        assert_eq!(reporter.expect("reporter came back"), k.to_string());
        assert!(
            fresh
                .sql_tcp("reporter", "rep-pw", "SELECT COUNT(*) FROM app.u")
                .is_err(),
            "its grant is on app.t only"
        );
    } else {
        assert!(
            reporter.is_err(),
            "mysql dump mode carries no accounts, as its hook says"
        );
    }
    let before = tx_state(&fresh, "app").expect("state");
    let again = run_hook(&t, Phase::Restore, &rc).expect("load hook");
    again.assert_ok("second run");
    assert!(again.stdout.contains("was loaded before"), "{again}");
    assert_eq!(
        tx_state(&fresh, "app").expect("state"),
        before,
        "second run changed data"
    );

    // No dump in the backup; a dump cut short; a dump that fails to load; then that load's
    // marker; all on a fresh server that must stay untouched.
    let wait = |c: db::Container| c.with("VHI_RESTORE_WAIT_SECONDS", "8");
    let empty = MariaServer::init_like_image(IMAGE_ENV);
    let ec = wait(empty.image_container(IMAGE_ENV));
    run_hook(&t, Phase::Restore, &ec)
        .expect("hook")
        .assert_fails_with("missing dump", "no dump at")
        .assert_fails_with("missing dump, no data", "nothing to restore from");
    let cut = empty.dump_dir().join("mysqldump.sql");
    let full = std::fs::read(stored.join("mysqldump.sql")).expect("dump");
    std::fs::write(&cut, &full[..full.len() / 2]).expect("cut");
    run_hook(&t, Phase::Restore, &ec)
        .expect("hook")
        .assert_fails_with("truncated dump", "is truncated");
    let mut bad = b"THIS IS NOT SQL;\n".to_vec();
    bad.extend_from_slice(&full);
    std::fs::write(&cut, &bad).expect("bad dump");
    run_hook(&t, Phase::Restore, &ec)
        .expect("hook")
        .assert_fails_with("failing load", "ERROR 1064 (42000) at line 1");
    run_hook(&t, Phase::Restore, &ec)
        .expect("hook")
        .assert_fails_with("after a failed load", "did not finish");
    assert_eq!(
        empty
            .sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE table_schema = 'app'")
            .expect("tables"),
        "0",
        "nothing loaded"
    );

    // Pre-hook limits: a full dump volume and an endless dump keep the previous complete dump.
    let fake = s.tmp.path().join("fake-bin");
    std::fs::create_dir_all(&fake).expect("fake bin");
    let script = |file: &str, body: &str| {
        let p = fake.join(file);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
        db::sh(Command::new("chmod").arg("755").arg(&p)).expect("chmod");
    };
    let path = format!("{}:{}", fake.display(), db::CONTAINER_PATH);
    let previous = std::fs::read(s.dump_dir().join("mysqldump.sql")).expect("previous dump");
    script(
        "df",
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'; echo 'vhi 100 99 1 99% /vhi-dump'",
    );
    run_hook(&t, Phase::Pre, &c.clone().with("PATH", &path))
        .expect("pre")
        .assert_fails_with("full dump volume", "KiB free");
    std::fs::remove_file(fake.join("df")).expect("rm df");
    script("mariadb-dump", "sleep 30");
    let slow = run_hook(
        &t,
        Phase::Pre,
        &c.clone().with("PATH", &path).with("VHI_DUMP_SECONDS", "2"),
    )
    .expect("pre");
    slow.assert_fails_with("endless dump", "not done within 2s");
    assert!(slow.elapsed < Duration::from_secs(10), "bounded: {slow}");
    script("mariadb-dump", "echo '-- no end line'");
    run_hook(&t, Phase::Pre, &c.clone().with("PATH", &path))
        .expect("pre")
        .assert_fails_with("dump without its end line", "has no end line");
    assert_eq!(
        std::fs::read(s.dump_dir().join("mysqldump.sql")).expect("dump"),
        previous,
        "the previous dump is kept"
    );
    assert!(
        !s.dump_dir().join("mysqldump.sql.partial").exists(),
        "no partial dump left"
    );

    // Both hooks in an Alpine-like userland (BusyBox sh, df, awk, timeout, tail, grep).
    if let Some(r) = db::run_hook_busybox(&t, Phase::Pre, &c) {
        r.assert_ok("dump under busybox");
        let bb = MariaServer::init_like_image(IMAGE_ENV);
        db::fsb_copy(&s.dump_dir(), &bb.dump_dir(), Duration::ZERO);
        let run = db::run_hook_busybox(&t, Phase::Restore, &bb.image_container(IMAGE_ENV))
            .expect("busybox");
        run.assert_ok("load under busybox");
        assert!(run.stdout.contains("app (6 tables"), "{run}");
    }

    // A server with no user schema yet (the app has not created one): no dump, and why.
    let root_only = [IMAGE_ENV[0], IMAGE_ENV[4]];
    let e = MariaServer::init_like_image(&root_only);
    run_hook(&t, Phase::Pre, &e.image_container(&root_only))
        .expect("pre")
        .assert_fails_with("no user schema", "no user schema yet");
}

/// The container of `s` with its dump volume holding a copy of `store` (the backup's copy of
/// the dump volume, restored by file-system restore), and a short wait.
fn restored(s: &MariaServer, store: &std::path::Path) -> db::Container {
    let _ = std::fs::remove_dir_all(s.dump_dir());
    db::fsb_copy(store, &s.dump_dir(), Duration::ZERO);
    s.image_container(IMAGE_ENV)
        .with("VHI_RESTORE_WAIT_SECONDS", "60")
}

/// Waits until `s`, just spawned, answers.
fn up(s: &MariaServer) {
    db::wait_for(Duration::from_secs(60), || s.sql("SELECT 1").ok())
        .unwrap_or_else(|| panic!("server up: {}", s.log()));
}

/// (8c) dump mode against what Velero does with the data volume. Kept out of file-system
/// backup, it is still snapshotted where Velero can snapshot, and a PV with reclaim policy Retain
/// comes back as it was. The restore hook loads nothing over the database the dump was taken
/// from and checks it instead, whether it comes back as a crash-consistent snapshot (taken after
/// the pre hook, transactions committed since included) or as the retained volume; a snapshot
/// that lost a table's file fails that check; a backup without a usable dump checks what came
/// back; another database's tables are never loaded over, nor is a dump that does not say where
/// it came from. A load would drop and recreate the tables from the dump, losing the rows
/// committed after it.
fn dump_mode_restore_paths(name: &str) {
    if !db_maria::available() {
        return;
    }
    let t = dump_tpl(name);
    let mut s = MariaServer::init_like_image(IMAGE_ENV);
    app_schema(&s, "app");
    let w = tx_writer(&s, "app");
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    let c = s.image_container(IMAGE_ENV);
    run_hook(&t, Phase::Pre, &c).expect("pre").assert_ok("dump");
    let dumped = w.committed();
    let backup = tempfile::tempdir().expect("backup store");
    let store = backup.path().join("vhi-dump");
    db::fsb_copy(&s.dump_dir(), &store, Duration::ZERO);
    let last = std::fs::read_to_string(store.join("mysqldump.sql"))
        .expect("dump")
        .lines()
        .last()
        .expect("end marker")
        .to_owned();
    let origin = last
        .split(" origin=")
        .nth(1)
        .expect("origin recorded")
        .to_owned();
    assert!(
        s.sql("SELECT @@server_uuid").is_err() && origin.len() == "2026-01-01 00:00:00".len(),
        "MariaDB has no server_uuid: the privilege table's creation time, {last:?}"
    );
    assert!(
        w.progresses(10, Duration::from_secs(20)),
        "commits after the dump"
    );
    let snapped = w.committed();
    let mut snap = s.snapshot();
    let mut torn = s.snapshot();
    w.stop();

    // A snapshot of the data volume came back (CSI): InnoDB recovery, then the hook.
    let sc = restored(&snap, &store);
    snap.spawn(&[]);
    let run = run_hook(&t, Phase::Restore, &sc).expect("hook");
    run.assert_ok("the snapshot of the dump's own database");
    eprintln!("MEASURE {name} snapshot path: {}", run.stdout.trim());
    assert!(
        run.stdout
            .contains("nothing loaded: the data volume came back with the database dump")
            && run.stdout.contains(&format!("(identity {origin})"))
            && run.stdout.contains("restore check passed"),
        "{run}"
    );
    let k = assert_consistent(
        &snap,
        snapped,
        i64::MAX as u64,
        &format!("{name} snapshot path"),
    );
    assert!(k as u64 > dumped, "rows since the dump kept");
    // The same snapshot that lost a table's file (the MyISAM one: InnoDB's redo log recreates a
    // tablespace written since its checkpoint): the check opens every table, and fails.
    std::fs::remove_file(torn.data.join("app").join("legacy.MYD")).expect("rm table file");
    let tc = restored(&torn, &store);
    torn.spawn(&[]);
    run_hook(&t, Phase::Restore, &tc)
        .expect("hook")
        .assert_fails_with("a snapshot that lost a table file", "copy incomplete");

    // The retained volume came back: the same data directory, a new server on it.
    s.shutdown();
    s.spawn(&[]);
    up(&s);
    let before = tx_state(&s, "app").expect("state");
    let rc = restored(&s, &store);
    let run = run_hook(&t, Phase::Restore, &rc).expect("hook");
    run.assert_ok("the retained volume");
    assert!(
        run.stdout
            .contains("nothing loaded: the data volume came back with the database dump"),
        "{run}"
    );
    assert_eq!(
        tx_state(&s, "app").expect("state"),
        before,
        "every row kept"
    );
    // The same path in an Alpine-like userland (BusyBox sh and applets).
    if let Some(bb) = db::run_hook_busybox(&t, Phase::Restore, &rc) {
        bb.assert_ok("the retained volume under busybox");
        assert!(bb.stdout.contains("restore check passed"), "{bb}");
        assert_eq!(
            tx_state(&s, "app").expect("state"),
            before,
            "nothing loaded"
        );
    }
    assert!(
        !std::fs::read_dir(s.dump_dir()).expect("dump dir").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with("load")),
        "no load began"
    );
    // No usable dump in the backup, the data came back: checked, nothing loaded.
    std::fs::remove_file(s.dump_dir().join("mysqldump.sql")).expect("rm dump");
    let run = run_hook(&t, Phase::Restore, &rc).expect("hook");
    run.assert_ok("data back, no dump");
    assert!(
        run.stdout.contains("nothing loaded: no dump at")
            && run.stdout.contains("restore check passed"),
        "{run}"
    );
    // A dump that does not say where it came from (an older one) is not loaded over the tables
    // that are there, and the hook says why.
    let full = std::fs::read_to_string(store.join("mysqldump.sql")).expect("dump");
    let old = full.replace(&format!(" origin={origin}"), "");
    std::fs::write(s.dump_dir().join("mysqldump.sql"), old).expect("old dump");
    run_hook(&t, Phase::Restore, &rc)
        .expect("hook")
        .assert_fails_with("a dump without its origin over data", "(not recorded)");
    assert_eq!(
        tx_state(&s, "app").expect("state"),
        before,
        "nothing loaded"
    );

    // Another database on the data volume (a volume not from this backup, or tables the image's
    // init scripts made): the dump is not loaded over it, and the hook fails saying how to choose.
    let other = MariaServer::init_like_image(IMAGE_ENV);
    other
        .sql("CREATE TABLE app.mine (k INT); INSERT INTO app.mine VALUES (7)")
        .expect("other data");
    let oc = restored(&other, &store);
    let run = run_hook(&t, Phase::Restore, &oc).expect("hook");
    run.assert_fails_with("another database's tables", "NOT loaded, nothing changed");
    assert!(
        run.stderr.contains("another database") && run.stderr.contains("empty the data volume"),
        "{run}"
    );
    assert_eq!(
        other
            .sql("SELECT (SELECT COUNT(*) FROM app.mine), (SELECT COUNT(*) FROM information_schema.TABLES WHERE table_schema = 'app')")
            .expect("other"),
        "1\t1",
        "nothing of the dump loaded"
    );
}

/// (9) the control: without dump mode, a file-by-file copy of the live data directory (what
/// file-system backup takes) while transactions commit and pages are flushed. Some run of the
/// loop must restore wrong: the server does not start, rows committed before the copy are
/// missing, a transaction is torn, or CHECK TABLE fails. The schema is named `shop`, which
/// sorts after the redo log (ib_logfile0), as kopia's walk goes; `app` sorts before it.
#[test]
fn s9_control_live_file_copy_is_unsafe() {
    if !db_maria::available() {
        return;
    }
    let mut seen = Vec::new();
    for round in 1..=6 {
        let db = if round % 2 == 1 { "shop" } else { "app" };
        let s = MariaServer::init_like_image(IMAGE_ENV);
        app_schema(&s, db);
        s.sql(&format!(
            "CREATE TABLE {db}.big (id INT PRIMARY KEY, v BIGINT NOT NULL, pad CHAR(200) NOT NULL) ENGINE=InnoDB; \
             INSERT INTO {db}.big SELECT seq, 0, 'p' FROM {db}.seq_1_to_20000; \
             SET GLOBAL innodb_max_dirty_pages_pct = 0"
        ))
        .expect("churn table");
        let w = tx_writer(&s, db);
        // Transfers between rows 10,000 apart (other pages): the sum of v stays 0.
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (flag, sock, db) = (stop.clone(), s.sock.clone(), db.to_owned());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !flag.load(Ordering::SeqCst) {
                    let r = i * 211 % 9800 + 1;
                    let _ = db::sh(
                        Command::new("/usr/bin/mariadb")
                            .env("MYSQL_PWD", ROOT_PASSWORD)
                            .arg("--no-defaults")
                            .arg(format!("--socket={}", sock.display()))
                            .args(["--user=root", "-e"])
                            .arg(format!(
                                "BEGIN; UPDATE {db}.big SET v = v + 1 WHERE id BETWEEN {r} AND {r} + 199; \
                                 UPDATE {db}.big SET v = v - 1 WHERE id BETWEEN {r} + 10000 AND {r} + 10199; COMMIT"
                            )),
                    );
                    i += 1;
                }
            })
        };
        assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
        let before = w.committed();
        let mut r = s.live_file_copy(Duration::from_millis(30));
        stop.store(true, Ordering::SeqCst);
        let _ = churn.join();
        w.stop();
        let outcome = if !r.try_start(Duration::from_secs(60)) {
            let log = r.log();
            let line = log
                .lines()
                .find(|l| l.contains("[ERROR]"))
                .unwrap_or("no answer within 60 s")
                .to_owned();
            Some(format!("server does not start: {line}"))
        } else {
            let state = tx_state(&r, db);
            let big = r.sql(&format!("SELECT SUM(v) FROM {db}.big"));
            let check = r.sql(&format!("CHECK TABLE {db}.t, {db}.u, {db}.big, {db}.bal"));
            match (state, big, check) {
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    Some(format!("tables unreadable: {e}"))
                }
                (Ok(v), Ok(b), Ok(ch)) => {
                    if v[0] < before as i64 {
                        Some(format!(
                            "{} of the {before} rows committed before the copy are missing",
                            before as i64 - v[0]
                        ))
                    } else if v[2] != v[0] || v[3] != v[0] || v[4] != v[0] || v[5] != 0 || b != "0"
                    {
                        Some(format!(
                            "torn transactions: t={} u={} audit={} balance={} sum={} big sum={b}",
                            v[0], v[2], v[3], v[4], v[5]
                        ))
                    } else if ch.lines().any(|l| !l.ends_with("\tOK")) {
                        Some(format!("CHECK TABLE: {}", ch.replace('\n', "; ")))
                    } else {
                        None
                    }
                }
            }
        };
        let errors = r.log().lines().filter(|l| l.contains("[ERROR]")).count();
        eprintln!(
            "CONTROL MariaDB schema {db} round {round}: {} ({errors} [ERROR] lines in the restored server's log)",
            outcome.as_deref().unwrap_or("restored consistent")
        );
        if let Some(o) = outcome {
            seen.push(o);
            break;
        }
    }
    assert!(
        !seen.is_empty(),
        "six live file copies of MariaDB all restored consistent; the control did not show the danger"
    );
}

/// Dump-mode cost on a realistic data set: `VHI_MARIA_MEASURE=1` (`VHI_MARIA_MEASURE_ROWS`
/// rows of about 1 KiB, default 400000: some 450 MB on disk) with the mariadb template. Prints a
/// MEASURE line; asserts only that the load is whole.
#[test]
fn measure_dump_mode_mariadb() {
    if std::env::var("VHI_MARIA_MEASURE").ok().as_deref() != Some("1") {
        eprintln!("measure_dump_mode_mariadb: set VHI_MARIA_MEASURE=1 to run it");
        return;
    }
    if !db_maria::available() {
        return;
    }
    let rows: u64 = std::env::var("VHI_MARIA_MEASURE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let t = dump_tpl("mariadb");
    let s = MariaServer::init_like_image(IMAGE_ENV);
    app_schema(&s, "app");
    s.sql(&format!(
        "CREATE TABLE app.data (id INT PRIMARY KEY, a CHAR(255) NOT NULL, b VARCHAR(1000) NOT NULL, KEY (a)) ENGINE=InnoDB; \
         INSERT INTO app.data SELECT seq, MD5(seq), REPEAT(SHA2(seq, 256), 12) FROM app.seq_1_to_{rows}; ANALYZE TABLE app.data"
    ))
    .expect("data set");
    let size = s
        .sql("SELECT ROUND(SUM(data_length + index_length) / 1048576) FROM information_schema.TABLES WHERE table_schema = 'app'")
        .expect("size");
    let w = tx_writer(&s, "app");
    let c = s.image_container(IMAGE_ENV);
    let pre = run_hook(&t, Phase::Pre, &c).expect("pre");
    pre.assert_ok("dump");
    let committed = w.stop();
    let bytes = std::fs::metadata(s.dump_dir().join("mysqldump.sql"))
        .expect("dump")
        .len();
    let fresh = MariaServer::init_like_image(IMAGE_ENV);
    db::fsb_copy(&s.dump_dir(), &fresh.dump_dir(), Duration::ZERO);
    let run = run_hook(&t, Phase::Restore, &fresh.image_container(IMAGE_ENV)).expect("load");
    run.assert_ok("load");
    assert_consistent(&fresh, 0, committed, "measure");
    assert_eq!(
        fresh.sql("SELECT COUNT(*) FROM app.data").expect("rows"),
        rows.to_string()
    );
    eprintln!(
        "MEASURE mariadb dump mode MariaDB 10.11, {rows} rows: schema {size} MiB on disk, dump {bytes} bytes, pre hook {:?}, restore hook {:?}",
        pre.elapsed, run.elapsed
    );
}

/// The env of a Bitnami chart's pod (architecture=replication) for template `name` (`mysql`:
/// the mysql chart's MYSQL_* names; `mariadb`: the mariadb chart's MARIADB_*), `role` `master` or
/// `slave`, with the root password in a file as `auth.usePasswordFiles` mounts it. A secondary
/// gets the primary's root as *_MASTER_ROOT_USER/_PASSWORD_FILE and no *_ROOT_PASSWORD.
fn bitnami(name: &str, s: &MariaServer, role: &str, primary_port: u16) -> db::Container {
    let x = if name == "mariadb" {
        "MARIADB"
    } else {
        "MYSQL"
    };
    let pw = s.tmp.path().join("root-password");
    std::fs::write(&pw, ROOT_PASSWORD).expect("password file");
    let pw = pw.display().to_string();
    let c = db::Container::new(s.tmp.path())
        .with("MYSQL_UNIX_PORT", &s.sock.display().to_string())
        .with(&format!("{x}_REPLICATION_MODE"), role)
        .with(&format!("{x}_REPLICATION_USER"), "repl")
        .with(
            &format!("{x}_REPLICATION_PASSWORD"),
            db_maria::REPL_PASSWORD,
        );
    if role == "slave" {
        c.with(&format!("{x}_MASTER_HOST"), "127.0.0.1")
            .with(
                &format!("{x}_MASTER_PORT_NUMBER"),
                &primary_port.to_string(),
            )
            .with(&format!("{x}_MASTER_ROOT_USER"), "root")
            .with(&format!("{x}_MASTER_ROOT_PASSWORD_FILE"), &pw)
    } else {
        c.with(&format!("{x}_ROOT_PASSWORD_FILE"), &pw)
            .with(&format!("{x}_DATABASE"), "app")
    }
}

/// A Bitnami-shaped primary and secondary with `app.t`, the secondary caught up, both with the
/// metadata_lock_info plugin (installed outside the binary log).
fn bitnami_pair() -> (MariaServer, MariaServer) {
    let p = MariaServer::init_bitnami_primary(0);
    assert!(p.wait_root(Duration::from_secs(60)), "primary: {}", p.log());
    p.sql("CREATE TABLE app.t (n BIGINT PRIMARY KEY) ENGINE=InnoDB")
        .expect("table");
    let s = MariaServer::init_bitnami_secondary(p.port);
    assert!(
        s.wait_root(Duration::from_secs(60)),
        "the secondary never got the primary's root by replication: {}",
        s.log()
    );
    for x in [&p, &s] {
        x.sql("SET SESSION sql_log_bin = 0; INSTALL SONAME 'metadata_lock_info'")
            .expect("plugin");
    }
    (p, s)
}

/// (10) Replication pair, snapshot mode: the secondary's hooks log in with the env the chart
/// gives it (the primary's root), the lock holds on the secondary (its applier waits), both
/// volumes copied atomically while locked come back, and the restore check reports each role;
/// a secondary whose primary does not come back fails it.
fn replica_pair_snapshot(name: &str) {
    if !db_maria::available() {
        return;
    }
    let (mut p, mut s) = bitnami_pair();
    let t = db::template(name);
    let pc = bitnami(name, &p, "master", 0);
    let sc = bitnami(name, &s, "slave", p.port);
    let w = p.writer();
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    // The env read as before (no replication mode): no password, refused at once with the fix.
    let mut old = sc.clone();
    old.unset(if name == "mariadb" {
        "MARIADB_REPLICATION_MODE"
    } else {
        "MYSQL_REPLICATION_MODE"
    });
    let run = run_hook(&t, Phase::Pre, &old).expect("pre");
    run.assert_fails_with("the secondary read as a standalone", "refused root");
    assert!(run.elapsed < Duration::from_secs(10), "at once: {run}");
    assert!(
        run.stderr.contains("ROOT_PASSWORD[_FILE]"),
        "the fix: {run}"
    );
    // The lock on the secondary alone: the primary commits, the secondary applies nothing.
    let run = run_hook(&t, Phase::Pre, &sc).expect("pre");
    run.assert_ok("pre on the secondary");
    assert_eq!(s.holder_sessions(), 1, "one holder on the secondary");
    let before = s.sql("SELECT COUNT(*) FROM app.t").expect("count");
    let c0 = w.committed();
    std::thread::sleep(HELD);
    assert!(w.committed() > c0 + 3, "the primary kept committing");
    assert_eq!(
        s.sql("SELECT COUNT(*) FROM app.t").expect("count"),
        before,
        "{name}: the secondary applied commits while locked"
    );
    run_hook(&t, Phase::Post, &sc)
        .expect("post")
        .assert_ok("post on the secondary");
    // Both locked, both copied atomically, both released.
    run_hook(&t, Phase::Pre, &pc)
        .expect("pre")
        .assert_ok("pre on the primary");
    let committed = w.committed();
    let locked = p.sql("SELECT COUNT(*) FROM app.t").expect("count");
    assert!(
        s.wait_rows(locked.parse().expect("n"), Duration::from_secs(30)),
        "the secondary caught up before its lock"
    );
    let pre = run_hook(&t, Phase::Pre, &sc).expect("pre");
    pre.assert_ok("pre on the secondary");
    eprintln!("MEASURE {name} secondary pre={:?}", pre.elapsed);
    let mut rp = p.snapshot();
    let mut rs = s.snapshot();
    for c in [&sc, &pc] {
        run_hook(&t, Phase::Post, c)
            .expect("post")
            .assert_ok("post");
    }
    w.stop();
    // Restore into a new cluster: the primary's service (its port) now leads to the restored
    // primary. The secondary comes back first: without its primary its check fails.
    let port = p.port;
    p.shutdown();
    s.shutdown();
    rs.spawn_on(db::free_port());
    let rsc = bitnami(name, &rs, "slave", port).with("VHI_RESTORE_WAIT_SECONDS", "6");
    let run = run_hook(&t, Phase::Restore, &rsc).expect("restore");
    run.assert_fails_with("a secondary without its primary", "not replicating");
    let rsc = bitnami(name, &rs, "slave", port);
    let h = std::thread::spawn({
        let t = t.clone();
        move || run_hook(&t, Phase::Restore, &rsc).expect("restore")
    });
    std::thread::sleep(Duration::from_secs(3));
    rp.spawn_on(port);
    let run = run_hook(&t, Phase::Restore, &bitnami(name, &rp, "master", 0)).expect("restore");
    run.assert_ok("restore check on the primary");
    eprintln!(
        "MEASURE {name} primary restore={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(run.stdout.contains(", primary,"), "{run}");
    assert!(run.stdout.contains("app (1 tables"), "{run}");
    let run = h.join().expect("hook thread");
    run.assert_ok("restore check on the secondary");
    eprintln!(
        "MEASURE {name} secondary restore={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(
        run.stdout
            .contains(&format!("replica of 127.0.0.1:{port}, replication running")),
        "{run}"
    );
    assert_eq!(rp.rows(committed).0, committed, "{name}: primary lost rows");
    let n: u64 = rp
        .sql("SELECT COUNT(*) FROM app.t")
        .expect("n")
        .parse()
        .expect("n");
    assert!(
        rs.wait_rows(n, Duration::from_secs(30)),
        "the restored secondary replicates the restored primary"
    );
    rp.sql("INSERT INTO app.t VALUES (999999999)")
        .expect("write");
    assert!(
        rs.wait_rows(n + 1, Duration::from_secs(30)),
        "new writes flow"
    );
}

/// (10b) Velero copies the pods one after the other: a secondary copied after writes the
/// primary's copy does not hold asks the restored primary for a binary-log position it never
/// wrote. Its restore check must fail (naming the source's error), not pass on a diverged copy.
#[test]
fn replica_copied_after_its_primary_fails_its_check() {
    if !db_maria::available() {
        return;
    }
    let (mut p, mut s) = bitnami_pair();
    let t = db::template("mariadb");
    let pc = bitnami("mariadb", &p, "master", 0);
    let sc = bitnami("mariadb", &s, "slave", p.port);
    let w = p.writer();
    assert!(w.progresses(10, Duration::from_secs(20)), "writer runs");
    run_hook(&t, Phase::Pre, &pc).expect("pre").assert_ok("pre");
    let mut rp = p.snapshot();
    run_hook(&t, Phase::Post, &pc)
        .expect("post")
        .assert_ok("post");
    assert!(
        w.progresses(20, Duration::from_secs(20)),
        "writes after the primary's copy"
    );
    w.stop();
    let n: u64 = p
        .sql("SELECT COUNT(*) FROM app.t")
        .expect("n")
        .parse()
        .expect("n");
    assert!(s.wait_rows(n, Duration::from_secs(30)), "caught up");
    run_hook(&t, Phase::Pre, &sc).expect("pre").assert_ok("pre");
    let mut rs = s.snapshot();
    run_hook(&t, Phase::Post, &sc)
        .expect("post")
        .assert_ok("post");
    let port = p.port;
    p.shutdown();
    s.shutdown();
    rp.spawn_on(port);
    rs.spawn_on(db::free_port());
    run_hook(&t, Phase::Restore, &bitnami("mariadb", &rp, "master", 0))
        .expect("restore")
        .assert_ok("the primary's copy is sound");
    let rsc = bitnami("mariadb", &rs, "slave", port).with("VHI_RESTORE_WAIT_SECONDS", "20");
    let run = run_hook(&t, Phase::Restore, &rsc).expect("restore");
    eprintln!(
        "MEASURE secondary ahead of its primary: {}",
        run.stderr.trim()
    );
    run.assert_fails_with(
        "a secondary ahead of its restored primary",
        "not replicating",
    );
}

/// (11) Refused credentials: a wrong password fails the pre hook, the restore check and the
/// dump-mode load at once, saying so with the fix (not after the whole wait, not blaming the
/// redo log); so does a random root password, unknown to the hooks.
fn refused_credentials(name: &str) {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let t = db::template(name);
    let c = s.container(pw_var(name)).with(pw_var(name), "wrong");
    for (phase, tpl) in [
        (Phase::Pre, t.clone()),
        (Phase::Restore, t.clone()),
        (Phase::Restore, dump_tpl(name)),
    ] {
        let c = c
            .clone()
            .with("VHI_DUMP_DIR", &s.dump_dir().display().to_string());
        std::fs::write(
            s.dump_dir().join("mysqldump.sql"),
            "SELECT 1;\n-- vhi-dump complete, id=t1\n",
        )
        .expect("dump");
        let run = run_hook(&tpl, phase, &c).expect("hook");
        eprintln!("MEASURE {name} refused {:?}: {:?}", phase, run.elapsed);
        run.assert_fails_with("a wrong password", "refused root");
        assert!(run.stderr.contains("1045"), "{run}");
        assert!(run.elapsed < Duration::from_secs(10), "at once: {run}");
    }
    assert_eq!(s.holder_sessions(), 0, "no lock held");
    // On a secondary the restore check retries a refused login until its deadline (after a
    // restore its accounts arrive by replication), then fails the same way.
    let x = if name == "mariadb" {
        "MARIADB"
    } else {
        "MYSQL"
    };
    let mut sc = s
        .container(pw_var(name))
        .with(&format!("{x}_REPLICATION_MODE"), "slave")
        .with(&format!("{x}_MASTER_ROOT_PASSWORD"), "wrong")
        .with("VHI_RESTORE_WAIT_SECONDS", "4");
    sc.unset(pw_var(name));
    let run = run_hook(&t, Phase::Restore, &sc).expect("restore");
    run.assert_fails_with("a secondary's wrong password", "refused root");
    assert!(
        run.stderr.contains("MASTER_ROOT_PASSWORD"),
        "the fix: {run}"
    );
    assert!(
        run.elapsed >= Duration::from_secs(4) && run.elapsed < Duration::from_secs(15),
        "retried until the deadline, then failed: {run}"
    );
    let mut c = s.container(pw_var(name));
    c.unset(pw_var(name));
    c.set("MYSQL_RANDOM_ROOT_PASSWORD", "yes");
    run_hook(&t, Phase::Pre, &c)
        .expect("pre")
        .assert_fails_with("random root password", "refused root");
}

/// (12) Replication pair, file-system backup in dump mode: the primary dumps; on restore both
/// volumes are empty, each image initialises its own (the secondary replays the new primary's
/// binary log from its first file), the primary's restore hook loads the dump, and the
/// secondary's (the snapshot restore check, no load) waits until it has the rows and reports
/// it replicates.
#[test]
fn replica_pair_dump_mode() {
    if !db_maria::available() {
        return;
    }
    let (mut p, mut s) = bitnami_pair();
    p.sql("INSERT INTO app.t SELECT seq FROM test.seq_1_to_5000")
        .expect("rows");
    assert!(s.wait_rows(5000, Duration::from_secs(30)), "caught up");
    let dump = dump_tpl("mariadb");
    let pc = bitnami("mariadb", &p, "master", 0)
        .with("VHI_DUMP_DIR", &p.dump_dir().display().to_string());
    run_hook(&dump, Phase::Pre, &pc)
        .expect("dump")
        .assert_ok("dump on the primary");
    let port = p.port;
    p.shutdown();
    s.shutdown();
    let p2 = MariaServer::init_bitnami_primary(port);
    assert!(p2.wait_root(Duration::from_secs(60)), "{}", p2.log());
    db::fsb_copy(&p.dump_dir(), &p2.dump_dir(), Duration::ZERO);
    let s2 = MariaServer::init_bitnami_secondary(port);
    let sc = bitnami("mariadb", &s2, "slave", port);
    let t = db::template("mariadb");
    let h = std::thread::spawn(move || run_hook(&t, Phase::Restore, &sc).expect("restore"));
    let pc = bitnami("mariadb", &p2, "master", 0)
        .with("VHI_DUMP_DIR", &p2.dump_dir().display().to_string());
    let load = run_hook(&dump, Phase::Restore, &pc).expect("load");
    load.assert_ok("the primary loads the dump");
    let run = h.join().expect("hook thread");
    run.assert_ok("the secondary's restore check");
    eprintln!(
        "MEASURE dump-mode pair: load {:?}, secondary check {:?} {}",
        load.elapsed,
        run.elapsed,
        run.stdout.trim()
    );
    assert!(run.stdout.contains("replication running"), "{run}");
    assert!(run.stdout.contains("app (1 tables"), "{run}");
    assert!(
        s2.wait_rows(5000, Duration::from_secs(30)),
        "the secondary has every row"
    );
}

/// The options of a one-node Galera cluster (Debian galera-4), its group port `gport` on
/// loopback; the node bootstraps a new cluster (what Bitnami's mariadb-galera does on its first
/// node with MARIADB_GALERA_CLUSTER_BOOTSTRAP).
fn galera_flags(gport: u16) -> Vec<String> {
    [
        "--wsrep-on=ON".to_owned(),
        format!("--wsrep-provider={GALERA}"),
        "--wsrep-cluster-address=gcomm://".into(),
        "--wsrep-new-cluster".into(),
        "--wsrep-cluster-name=galera".into(),
        "--wsrep-node-address=127.0.0.1".into(),
        format!(
            "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{gport};base_port={gport}"
        ),
        "--binlog-format=ROW".into(),
        "--innodb-autoinc-lock-mode=2".into(),
    ]
    .into()
}

const GALERA: &str = "/usr/lib/galera/libgalera_smm.so";

/// (13) A Galera node (Bitnami mariadb-galera's env): BACKUP STAGE BLOCK_COMMIT holds on it
/// (commits wait), the atomic copy comes back as a node of a new cluster, and its restore check
/// passes and says it is a Galera node.
#[test]
fn galera_node_snapshot() {
    if !db_maria::available()
        || !db::have(
            std::path::Path::new(GALERA),
            "galera-4 (Debian), one-node Galera",
        )
    {
        return;
    }
    let mut s = MariaServer::init();
    s.shutdown();
    s.flags = galera_flags(db::free_port());
    s.spawn(&[]);
    assert!(
        s.wait_root(Duration::from_secs(60)),
        "galera node: {}",
        s.log()
    );
    assert_eq!(
        s.sql("SHOW STATUS LIKE 'wsrep_local_state_comment'")
            .expect("state"),
        "wsrep_local_state_comment\tSynced"
    );
    let pw = s.tmp.path().join("root-password");
    std::fs::write(&pw, ROOT_PASSWORD).expect("password file");
    let c = db::Container::new(s.tmp.path())
        .with("MYSQL_UNIX_PORT", &s.sock.display().to_string())
        .with("MARIADB_GALERA_CLUSTER_NAME", "galera")
        .with("MARIADB_GALERA_CLUSTER_ADDRESS", "gcomm://")
        .with("MARIADB_ROOT_USER", "root")
        .with("MARIADB_ROOT_PASSWORD_FILE", &pw.display().to_string())
        .with("MARIADB_GALERA_MARIABACKUP_USER", "mariabackup");
    let t = db::template("mariadb");
    let w = s.writer();
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    let pre = run_hook(&t, Phase::Pre, &c).expect("pre");
    pre.assert_ok("pre on a Galera node");
    eprintln!("MEASURE galera node pre={:?}", pre.elapsed);
    assert_eq!(s.holder_sessions(), 1, "one holder");
    let pre_end = Instant::now();
    std::thread::sleep(HELD);
    let during = w.commits_between(pre_end, Instant::now());
    let committed = w.committed();
    let mut r = s.snapshot();
    run_hook(&t, Phase::Post, &c)
        .expect("post")
        .assert_ok("post on a Galera node");
    assert!(
        during <= 1,
        "{during} commits on the Galera node while locked"
    );
    assert!(w.progresses(5, Duration::from_secs(10)), "writes resume");
    w.stop();
    // The copy of a running node says it is not safe to bootstrap from; restoring a cluster from
    // one node's copy is that decision (Bitnami: MARIADB_GALERA_FORCE_SAFETOBOOTSTRAP=yes).
    let state = r.data.join("grastate.dat");
    let g = std::fs::read_to_string(&state).expect("grastate.dat");
    std::fs::write(
        &state,
        g.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"),
    )
    .expect("grastate.dat");
    r.flags = galera_flags(db::free_port());
    let rc = db::Container::new(r.tmp.path())
        .with("MYSQL_UNIX_PORT", &r.sock.display().to_string())
        .with("MARIADB_GALERA_CLUSTER_NAME", "galera")
        .with("MARIADB_ROOT_PASSWORD", ROOT_PASSWORD);
    let h = std::thread::spawn(move || run_hook(&t, Phase::Restore, &rc).expect("restore"));
    r.spawn(&[]);
    let run = h.join().expect("hook thread");
    run.assert_ok("restore check on the restored Galera node");
    eprintln!(
        "MEASURE galera restore={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(run.stdout.contains("Galera node of 1"), "{run}");
    assert_eq!(r.rows(committed).0, committed, "rows lost");
}

/// Measure (ignored by default; `cargo test --test db_mariadb measure_restore_check_tables --
/// --ignored --nocapture`): the restore check's cost on 2,000 user tables with a row each, every
/// one opened, against one table.
#[test]
#[ignore]
fn measure_restore_check_tables() {
    if !db_maria::available() {
        return;
    }
    let s = MariaServer::init();
    let t = db::template("mariadb");
    let c = s.container("MARIADB_ROOT_PASSWORD");
    let one = run_hook(&t, Phase::Restore, &c).expect("restore");
    one.assert_ok("one table");
    for batch in 0..20 {
        let sql: String = (batch * 100..batch * 100 + 100)
            .map(|i| {
                format!(
                    "CREATE TABLE app.t{i} (n INT PRIMARY KEY) ENGINE=InnoDB; \
                     INSERT INTO app.t{i} VALUES (1); "
                )
            })
            .collect();
        assert!(s.sql(&sql).is_ok(), "tables of batch {batch}");
    }
    let many = run_hook(&t, Phase::Restore, &c).expect("restore");
    many.assert_ok("2001 tables");
    assert!(many.stdout.contains("app (2001 tables"), "{many}");
    // Cold: a restarted server, no table open, nothing cached (as after a restore).
    let mut s = s;
    s.shutdown();
    s.spawn(&[]);
    assert!(s.wait_root(Duration::from_secs(60)), "restart");
    let cold = run_hook(&t, Phase::Restore, &c).expect("restore");
    cold.assert_ok("2001 tables, cold");
    eprintln!(
        "MEASURE restore check, MariaDB 10.11: 1 table {:?}, 2001 tables {:?} (warm), {:?} (cold)",
        one.elapsed, many.elapsed, cold.elapsed
    );
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
            #[test]
            fn s8_dump_mode_fsb() { super::dump_mode_fsb($name) }
            #[test]
            fn s8c_dump_mode_restore_paths() { super::dump_mode_restore_paths($name) }
            #[test]
            fn s10_replica_pair_snapshot() { super::replica_pair_snapshot($name) }
            #[test]
            fn s11_refused_credentials() { super::refused_credentials($name) }
        }
    )*};
}

maria_matrix!(mysql_template => "mysql", mariadb_template => "mariadb");
