//! The `postgres` template against real PostgreSQL servers (13-18). PG 15 (Debian) and 18 (npm)
//! always; all versions with VHI_PG_MATRIX=full. See tests/db/setup.sh.

#[path = "common/db.rs"]
mod db;
#[path = "common/db_pg.rs"]
mod db_pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use db::{Phase, run_hook};
use db_pg::{PG_PASSWORD, PgAuth, PgServer};

fn tpl() -> velero_hook_injector::hooks::template::Template {
    db::template("postgres")
}

/// (1) pre exits 0 well within its timeout over TCP and over the socket, with a writer running;
/// there is no post hook to run (CHECKPOINT holds nothing).
fn pre_post_succeed(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let w = s.writer();
    let t = tpl();
    // Service-link variable that must be ignored.
    let c = s.container().with("POSTGRES_PORT", "tcp://10.96.0.12:5432");
    let r = run_hook(&t, Phase::Pre, &c).expect("pre hook");
    r.assert_ok("pre over 127.0.0.1");
    eprintln!("MEASURE postgres PG{major} pre={:?}", r.elapsed);
    assert!(r.stdout.contains("CHECKPOINT completed"), "{r}");
    assert!(r.elapsed < r.timeout / 2, "pre too slow: {r}");
    let sock = c
        .clone()
        .with("PGHOST", &s.sock.display().to_string())
        .with("POSTGRES_PASSWORD", "");
    run_hook(&t, Phase::Pre, &sock)
        .expect("pre")
        .assert_ok("pre over the socket, trust auth");
    assert!(
        run_hook(&t, Phase::Post, &c).is_none(),
        "postgres needs no post hook"
    );
    assert!(
        w.progresses(3, Duration::from_secs(10)),
        "writes must go on"
    );
    w.stop();
}

/// (2) the CHECKPOINT really happens: the requested-checkpoint counter and the redo LSN advance;
/// without the hook they do not (negative control, so this check can fail).
fn checkpoint_effect(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let w = s.writer();
    let (c0, lsn0) = (s.checkpoints_requested(), s.redo_lsn());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.checkpoints_requested(),
        c0,
        "control: no checkpoint is requested without the hook"
    );
    assert_eq!(
        s.redo_lsn(),
        lsn0,
        "control: redo LSN is stable without the hook"
    );
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    let c1 = db::wait_for(Duration::from_secs(5), || {
        let c = s.checkpoints_requested();
        (c > c0).then_some(c)
    });
    assert!(
        c1.is_some(),
        "PG {major}: checkpoint counter did not advance after the pre hook"
    );
    assert_ne!(
        s.redo_lsn(),
        lsn0,
        "PG {major}: redo LSN did not advance after the pre hook"
    );
    w.stop();
}

/// (3) a snapshot taken between pre and post restores: the server starts, recovers, and holds
/// every row committed before the pre hook returned.
fn restore_from_snapshot(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let w = s.writer();
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    let committed = w.committed();
    let restored = s.restore_from_snapshot();
    let after_copy = w.committed();
    w.stop();
    assert_eq!(
        restored.rows_upto(committed),
        committed,
        "PG {major}: rows committed before pre returned are missing after restore"
    );
    let max: u64 = restored
        .psql("SELECT coalesce(max(n), 0) FROM t")
        .expect("max")
        .parse()
        .expect("n");
    assert!(
        max <= after_copy + 1,
        "restored rows from the future? {max} > {after_copy}"
    );
    assert!(
        restored.log().contains("redo") || restored.log().contains("recover"),
        "PG {major}: expected crash recovery in the restored server log:\n{}",
        restored.log()
    );
}

/// (4) failures are loud: wrong password, no password, non-superuser, server down.
fn failures_are_loud(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let t = tpl();
    let mut s = PgServer::init(&v, PgAuth::Password);
    s.psql("CREATE ROLE app LOGIN PASSWORD 'app-pw' NOSUPERUSER")
        .expect("role");
    let base = s.container();
    // Bitnami-style: the superuser password in a file, the app user in POSTGRES_USER.
    let pwfile = s.tmp.path().join("postgres-password");
    std::fs::write(&pwfile, PG_PASSWORD).expect("pw file");
    let bitnami = base
        .clone()
        .with("POSTGRES_USER", "app")
        .with("POSTGRES_PASSWORD", "app-pw")
        .with(
            "POSTGRES_POSTGRES_PASSWORD_FILE",
            &pwfile.display().to_string(),
        );
    let r = run_hook(&t, Phase::Pre, &bitnami).expect("pre");
    r.assert_ok("bitnami superuser password file");
    assert!(r.stdout.contains("user: postgres"), "{r}");
    // Bitnami's port variable instead of PGPORT.
    let mut bitnami_port = bitnami
        .clone()
        .with("POSTGRESQL_PORT_NUMBER", &s.port.to_string());
    bitnami_port.unset("PGPORT");
    run_hook(&t, Phase::Pre, &bitnami_port)
        .expect("pre")
        .assert_ok("bitnami POSTGRESQL_PORT_NUMBER");
    let mut sclorg = base.clone().with("POSTGRESQL_ADMIN_PASSWORD", PG_PASSWORD);
    sclorg.unset("POSTGRES_PASSWORD");
    run_hook(&t, Phase::Pre, &sclorg)
        .expect("pre")
        .assert_ok("sclorg admin password");
    let r = run_hook(
        &t,
        Phase::Pre,
        &base.clone().with("POSTGRES_PASSWORD", "wrong"),
    )
    .expect("pre");
    r.assert_fails_with("wrong password", "password authentication failed");
    assert!(!r.stderr.contains("wrong"), "the password leaked: {r}");
    let mut none = base.clone();
    none.unset("POSTGRES_PASSWORD");
    run_hook(&t, Phase::Pre, &none)
        .expect("pre")
        .assert_fails_with("no password", "CHECKPOINT failed");
    let app_only = base
        .clone()
        .with("POSTGRES_USER", "app")
        .with("POSTGRES_PASSWORD", "app-pw");
    run_hook(&t, Phase::Pre, &app_only)
        .expect("pre")
        .assert_fails_with("non-superuser", "CHECKPOINT");
    let c0 = s.checkpoints_requested();
    s.shutdown();
    let r = run_hook(&t, Phase::Pre, &base).expect("pre");
    r.assert_fails_with("server down", "CHECKPOINT failed");
    assert!(
        r.stderr.contains("refused") || r.stderr.contains("No such file"),
        "{r}"
    );
    let _ = c0;
}

/// (5) pre twice: both succeed and both checkpoint.
fn idempotent(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let w = s.writer();
    let c0 = s.checkpoints_requested();
    let c = s.container();
    let start = Instant::now();
    run_hook(&tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre #1");
    run_hook(&tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre #2");
    assert!(start.elapsed() < Duration::from_secs(30));
    let c1 = db::wait_for(Duration::from_secs(5), || {
        let x = s.checkpoints_requested();
        (x >= c0 + 2).then_some(x)
    });
    assert!(
        c1.is_some(),
        "PG {major}: expected two requested checkpoints"
    );
    assert!(run_hook(&tpl(), Phase::Post, &c).is_none());
    w.stop();
}

/// (6) the same pre hook in an Alpine-like userland (BusyBox sh and applets).
fn busybox_userland(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let c0 = s.checkpoints_requested();
    let Some(r) = db::run_hook_busybox(&tpl(), Phase::Pre, &s.container()) else {
        return;
    };
    r.assert_ok("pre under busybox sh");
    let advanced = db::wait_for(Duration::from_secs(5), || {
        (s.checkpoints_requested() > c0).then_some(())
    });
    assert!(
        advanced.is_some(),
        "PG {major}: no checkpoint under busybox"
    );
}

/// Runs the restore hook in a thread, as Velero would once the container runs; the server is
/// started `delay` later, so the hook first meets a server that is not up yet.
fn restore_hook_racing(r: &mut PgServer, c: db::Container, delay: Duration) -> db::HookRun {
    let t = tpl();
    let h = std::thread::spawn(move || run_hook(&t, Phase::Restore, &c).expect("restore hook"));
    std::thread::sleep(delay);
    r.spawn();
    h.join().expect("hook thread")
}

/// (7) good copy: the restore hook, started before the restored server is up, waits for it
/// to finish recovery, exits 0 and names what the writer wrote; a second run says the same and
/// changes nothing.
fn restore_hook_good(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let w = s.writer();
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    let committed = w.committed();
    let mut r = s.snapshot();
    w.stop();
    let c = r.container();
    let run = restore_hook_racing(&mut r, c.clone(), Duration::from_secs(2));
    run.assert_ok("restore hook on a good copy");
    eprintln!(
        "MEASURE postgres PG{major} restore={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(run.stdout.contains("restore check passed"), "{run}");
    assert!(
        run.stdout.contains(&format!("PostgreSQL {major}.")),
        "{run}"
    );
    assert!(run.stdout.contains("primary"), "{run}");
    assert!(
        run.stdout.contains("postgres (1 tables"),
        "the writer's database and table: {run}"
    );
    assert!(
        run.elapsed >= Duration::from_secs(1),
        "the hook must have waited: {run}"
    );
    assert_eq!(r.rows_upto(committed), committed, "PG {major}: rows lost");
    let before = r.psql("SELECT count(*) FROM t").expect("count");
    let again = run_hook(&tpl(), Phase::Restore, &c).expect("restore hook");
    again.assert_ok("second run");
    assert_eq!(
        r.psql("SELECT count(*) FROM t").expect("count"),
        before,
        "the restore hook changed data"
    );
    restore_line_in_pod_log(&c);
}

/// The restore check's result line also reaches the pod's own log (`kubectl logs`): VHI_PODLOG
/// stands in for the main process's stdout (/proc/1/fd/1). A target that cannot be written, or
/// a FIFO nobody reads (a log pipe nobody drains), changes neither the exit code nor the line.
fn restore_line_in_pod_log(c: &db::Container) {
    let target = c.tmp.join("pid1-stdout");
    std::fs::write(&target, "").expect("pod log stand-in");
    let mut w = c.clone();
    w.set("VHI_PODLOG", &target.display().to_string());
    let run = run_hook(&tpl(), Phase::Restore, &w).expect("restore hook");
    run.assert_ok("restore hook with a writable pod log");
    let pod_log = std::fs::read_to_string(&target).expect("pod log");
    assert!(
        pod_log.starts_with("velero-hook[postgres]: restore check passed") && pod_log == run.stdout,
        "the pod log gets the hook's result line, once: {pod_log:?} vs {run}"
    );
    let mut u = c.clone();
    u.set("VHI_PODLOG", "/nonexistent/dir/stdout");
    let run = run_hook(&tpl(), Phase::Restore, &u).expect("restore hook");
    run.assert_ok("restore hook with no pod log");
    assert!(run.stdout.contains("restore check passed"), "{run}");
    let fifo = c.tmp.join("pid1-fifo");
    db::sh(std::process::Command::new("mkfifo").arg(&fifo)).expect("mkfifo");
    let mut f = c.clone();
    f.set("VHI_PODLOG", &fifo.display().to_string());
    let run = run_hook(&tpl(), Phase::Restore, &f).expect("restore hook");
    run.assert_ok("restore hook with a pod log nobody reads");
    assert!(run.stdout.contains("restore check passed"), "{run}");
}

/// (7) bad copies: every broken restore makes the hook fail within its deadline, saying why.
fn restore_hook_bad(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    let w = s.writer();
    assert!(w.progresses(10, Duration::from_secs(20)), "writer runs");
    let wait = |c: db::Container| c.with("VHI_RESTORE_WAIT_SECONDS", "8");
    let bounded = |run: &db::HookRun| {
        assert!(
            run.elapsed < Duration::from_secs(20),
            "the hook must give up at its own deadline (8 s): {run}"
        );
    };

    // A copy without its WAL: PostgreSQL cannot find a checkpoint record and never starts.
    let mut r = s.snapshot();
    for e in std::fs::read_dir(r.data.join("pg_wal")).expect("pg_wal") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::remove_file(p).expect("rm wal");
        }
    }
    let c = wait(r.container());
    let run = restore_hook_racing(&mut r, c, Duration::ZERO);
    run.assert_fails_with("copy without WAL", "not up within 8s");
    assert!(run.stderr.contains("pg_wal"), "{run}");
    bounded(&run);

    // A zeroed pg_control.
    let mut r = s.snapshot();
    std::fs::write(r.data.join("global/pg_control"), vec![0u8; 8192]).expect("zero");
    let c = wait(r.container());
    let run = restore_hook_racing(&mut r, c, Duration::ZERO);
    run.assert_fails_with("zeroed pg_control", "not up within 8s");
    bounded(&run);

    // Left in recovery: a standby.signal without a primary to stream from.
    let mut r = s.snapshot();
    std::fs::write(r.data.join("standby.signal"), "").expect("signal");
    let c = wait(r.container());
    let pod_log = c.tmp.join("pid1-stdout");
    std::fs::write(&pod_log, "").expect("pod log stand-in");
    let c = c.with("VHI_PODLOG", &pod_log.display().to_string());
    let run = restore_hook_racing(&mut r, c, Duration::ZERO);
    run.assert_fails_with("left in recovery", "not streaming from a primary");
    bounded(&run);
    // The failure's line reaches the pod's own log too (lib/podlog.sh).
    let line = std::fs::read_to_string(&pod_log).expect("pod log");
    assert!(
        line.starts_with("velero-hook[postgres]: ERROR: ") && run.stderr.ends_with(&line),
        "the pod log gets the ERROR line: {line:?} vs {run}"
    );

    // A good copy, but the restored pod's password does not match the database's: the hook
    // fails as soon as the server says so, not at its deadline (here 420 s).
    let mut r = s.snapshot();
    r.start();
    let run = run_hook(
        &tpl(),
        Phase::Restore,
        &r.container().with("POSTGRES_PASSWORD", "not-the-password"),
    )
    .expect("hook");
    run.assert_fails_with("wrong password", "the server refuses postgres");
    assert!(
        run.stderr.contains("password authentication failed"),
        "{run}"
    );
    assert!(run.elapsed < Duration::from_secs(20), "fails fast: {run}");
    w.stop();

    // An empty volume: the image initialises a new cluster, which starts fine but is empty.
    let fresh = PgServer::init_with(&v, PgAuth::TrustLocal, true);
    let run = run_hook(&tpl(), Phase::Restore, &wait(fresh.container())).expect("hook");
    run.assert_fails_with("empty volume", "without a user table");
    let ok = run_hook(
        &tpl(),
        Phase::Restore,
        &wait(fresh.container()).with("VHI_RESTORE_ALLOW_EMPTY", "1"),
    )
    .expect("hook");
    ok.assert_ok("an empty database the user declared");
}

/// The template's dump-mode hooks (what the webhook injects for file-system backup when it can
/// give the pod a dump volume) in place of the default ones.
fn dump_tpl() -> velero_hook_injector::hooks::template::Template {
    let mut t = tpl();
    t.hooks = t
        .fs_backup
        .clone()
        .and_then(|f| f.dump)
        .expect("postgres has a dump mode");
    t
}

/// The dump volume of a simulated container (the webhook mounts it at /vhi-dump).
fn dump_volume(root: &std::path::Path) -> std::path::PathBuf {
    let d = root.join("vhi-dump");
    std::fs::create_dir_all(&d).expect("dump volume");
    d
}

/// pgbench transactions in a loop until the returned flag is set (joined by the caller).
fn bench_load(s: &PgServer) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (sock, port, flag) = (s.sock.clone(), s.port, stop.clone());
    let h = std::thread::spawn(move || {
        let mut rounds = 0;
        while !flag.load(Ordering::SeqCst) {
            let _ = db::sh(
                std::process::Command::new("/usr/lib/postgresql/15/bin/pgbench")
                    .env("PGPASSWORD", PG_PASSWORD)
                    .arg("-h")
                    .arg(&sock)
                    .arg("-p")
                    .arg(port.to_string())
                    .args(["-U", "postgres", "-n", "-c", "3", "-T", "1", "postgres"]),
            );
            rounds += 1;
        }
        rounds
    });
    (stop, h)
}

/// Rows 1..=`from` (committed before the pre hook started) are all there, the rows form one
/// prefix 1..=max with max <= `upto` (committed when it returned): one point in time, nothing
/// torn; pgbench's balances agree.
fn assert_consistent(r: &PgServer, from: u64, upto: u64, what: &str) {
    let (count, max): (u64, u64) = {
        let o = r
            .psql("SELECT count(*), coalesce(max(n), 0) FROM t")
            .expect("count");
        let (a, b) = o.split_once('|').expect("two columns");
        (a.parse().expect("n"), b.parse().expect("n"))
    };
    assert!(
        max >= from && max <= upto && count == max,
        "{what}: rows 1..={from} were committed before pre started, {upto} when it returned; restored {count} rows up to {max} (a consistent copy holds exactly 1..=max)"
    );
    let sums = r.pgbench_sums().expect("pgbench tables");
    assert!(
        sums.iter().all(|x| *x == sums[0]),
        "{what}: pgbench balances disagree (a torn copy): {sums:?}"
    );
}

/// (8) dump mode under file-system backup: the pre hook dumps while the writer and pgbench
/// commit; the dump volume is copied file by file (no freeze) while they go on; the restore
/// starts a fresh cluster initialised on the empty data volume, as the image does, and the
/// restore hook loads the copy's dump once. Missing, truncated and not-fresh cases fail loudly.
fn dump_mode_fsb(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    if !db_pg::client_available(&v) {
        return;
    }
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    s.pgbench(&["-i", "-q", "-s", "1"]).expect("pgbench -i");
    let w = s.writer();
    let (stop, bench) = bench_load(&s);
    let dump = dump_volume(s.tmp.path());
    let c = s
        .container()
        .with("VHI_DUMP_DIR", &dump.display().to_string());
    let from = w.committed();
    let pre = run_hook(&dump_tpl(), Phase::Pre, &c).expect("dump-mode pre hook");
    pre.assert_ok("dump-mode pre");
    eprintln!(
        "MEASURE postgres PG{major} dump={:?} {}",
        pre.elapsed,
        pre.stdout.trim()
    );
    let committed = w.committed();
    assert!(pre.stdout.contains("dumped every database"), "{pre}");
    // The image's own client wrote it (Debian's 15 stands in for 13 and 14, which it can dump).
    let client = major.max(15);
    let text = std::fs::read_to_string(dump.join("pg_dumpall.sql")).expect("dump");
    let by = text
        .lines()
        .find(|l| l.starts_with("-- Dumped by pg_dump version"))
        .unwrap_or("no pg_dump version line");
    assert!(
        by.starts_with(&format!("-- Dumped by pg_dump version {client}.")),
        "PG {major}: the dump must come from pg_dumpall {client}: {by}"
    );
    // Velero's node agent copies the dump volume while the database keeps committing.
    let backup = tempfile::tempdir().expect("backup store");
    db::fsb_copy(
        &dump,
        &backup.path().join("vhi-dump"),
        Duration::from_millis(5),
    );
    assert!(
        w.progresses(5, Duration::from_secs(10)),
        "writes went on during the copy"
    );
    stop.store(true, Ordering::SeqCst);
    let rounds = bench.join().expect("bench");
    assert!(rounds > 0);
    w.stop();

    // Restore: the data volume is empty, the image initialises it with the same env; the dump
    // volume comes from the copy.
    let fresh = PgServer::init_with(&v, PgAuth::TrustLocal, true);
    let rdump = dump_volume(fresh.tmp.path());
    db::fsb_copy(&backup.path().join("vhi-dump"), &rdump, Duration::ZERO);
    let rc = fresh
        .container()
        .with("VHI_DUMP_DIR", &rdump.display().to_string());
    let run = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("load hook");
    run.assert_ok("load into the fresh cluster");
    eprintln!(
        "MEASURE postgres PG{major} load={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    assert!(
        run.stdout.contains("loaded dump") && run.stdout.contains("into the freshly initialised"),
        "the path it took: {run}"
    );
    assert!(
        run.stdout.contains("postgres (5 tables"),
        "t and pgbench's four: {run}"
    );
    assert_consistent(&fresh, from, committed, &format!("PG {major} dump mode"));
    let before = fresh.psql("SELECT count(*) FROM t").expect("count");
    let again = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("load hook");
    again.assert_ok("second run");
    assert!(again.stdout.contains("was loaded before"), "{again}");
    assert_eq!(fresh.psql("SELECT count(*) FROM t").expect("count"), before);

    let wait = |c: db::Container| c.with("VHI_RESTORE_WAIT_SECONDS", "8");
    // No dump in the backup.
    let empty = PgServer::init_with(&v, PgAuth::TrustLocal, true);
    let ec = wait(empty.container()).with(
        "VHI_DUMP_DIR",
        &dump_volume(empty.tmp.path()).display().to_string(),
    );
    run_hook(&dump_tpl(), Phase::Restore, &ec)
        .expect("load hook")
        .assert_fails_with("missing dump", "no dump at")
        .assert_fails_with("missing dump, no data", "nothing to restore from");
    // A dump cut short (half its bytes).
    let cut = dump_volume(empty.tmp.path()).join("pg_dumpall.sql");
    let full = std::fs::read(rdump.join("pg_dumpall.sql")).expect("dump");
    std::fs::write(&cut, &full[..full.len() / 2]).expect("cut");
    run_hook(&dump_tpl(), Phase::Restore, &ec)
        .expect("load hook")
        .assert_fails_with("truncated dump", "is truncated");
    assert_eq!(
        empty
            .psql("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND oid >= 16384")
            .expect("tables"),
        "0",
        "nothing of a truncated dump is loaded"
    );
    // A load that began and did not finish is reported, never repeated over its half.
    std::fs::write(&cut, &full).expect("whole dump");
    let last = String::from_utf8_lossy(&full)
        .lines()
        .last()
        .expect("end marker")
        .to_owned();
    let id = last
        .split("id=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .expect("id");
    std::fs::write(cut.with_file_name(format!("loading-{id}")), "then").expect("marker");
    run_hook(&dump_tpl(), Phase::Restore, &ec)
        .expect("load hook")
        .assert_fails_with("interrupted load", "did not finish");

    // Pre-hook limits, against a stand-in client in the container's PATH: too little room, and
    // a pg_dumpall that never ends. The previous complete dump stays; no partial file is left.
    let fake = s.tmp.path().join("fake-bin");
    std::fs::create_dir_all(&fake).expect("fake bin");
    let script = |name: &str, body: &str| {
        let p = fake.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
        db::sh(std::process::Command::new("chmod").arg("755").arg(&p)).expect("chmod");
    };
    let path = format!(
        "{}:{}:{}",
        fake.display(),
        v.client.display(),
        db::CONTAINER_PATH
    );
    let previous = std::fs::read(dump.join("pg_dumpall.sql")).expect("previous dump");
    if major > 15 {
        // An image whose client is older than its server (Debian's 15 here): pg_dumpall refuses
        // the newer server; the hook must say so and keep the previous dump, not write a bad one.
        let old = run_hook(
            &dump_tpl(),
            Phase::Pre,
            &c.clone().with("PATH", db::CONTAINER_PATH),
        )
        .expect("pre");
        old.assert_fails_with(
            "pg_dumpall 15 against a newer server",
            "server version mismatch",
        );
        assert_eq!(
            std::fs::read(dump.join("pg_dumpall.sql")).expect("dump"),
            previous,
            "the previous complete dump is kept"
        );
        assert!(
            !dump.join("pg_dumpall.sql.partial").exists(),
            "no partial dump left"
        );
    }
    script(
        "df",
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'; echo 'vhi 100 99 1 99% /vhi-dump'",
    );
    run_hook(&dump_tpl(), Phase::Pre, &c.clone().with("PATH", &path))
        .expect("pre")
        .assert_fails_with("full dump volume", "KiB free");
    std::fs::remove_file(fake.join("df")).expect("rm df");
    script("pg_dumpall", "sleep 30");
    let slow = run_hook(
        &dump_tpl(),
        Phase::Pre,
        &c.clone().with("PATH", &path).with("VHI_DUMP_SECONDS", "2"),
    )
    .expect("pre");
    slow.assert_fails_with("endless pg_dumpall", "not done within 2s");
    assert!(slow.elapsed < Duration::from_secs(10), "bounded: {slow}");
    assert_eq!(
        std::fs::read(dump.join("pg_dumpall.sql")).expect("dump"),
        previous,
        "the previous complete dump is kept"
    );
    assert!(
        !dump.join("pg_dumpall.sql.partial").exists(),
        "no partial dump left"
    );

    // The same two hooks in an Alpine-like userland (BusyBox sh, df, timeout, tail, grep).
    std::fs::remove_file(fake.join("pg_dumpall")).expect("rm fake");
    if let Some(r) = db::run_hook_busybox(&dump_tpl(), Phase::Pre, &c) {
        r.assert_ok("dump under busybox");
        let bb = PgServer::init_with(&v, PgAuth::TrustLocal, true);
        let bdump = dump_volume(bb.tmp.path());
        db::fsb_copy(&dump, &bdump, Duration::ZERO);
        let bc = bb
            .container()
            .with("VHI_DUMP_DIR", &bdump.display().to_string());
        let run = db::run_hook_busybox(&dump_tpl(), Phase::Restore, &bc).expect("busybox");
        run.assert_ok("load under busybox");
        assert!(run.stdout.contains("postgres (5 tables"), "{run}");
    }
}

/// A server's simulated container with its dump volume at `dir` holding a copy of `store` (the
/// backup's copy of the dump volume, restored by file-system restore), and a short wait.
fn restored(s: &PgServer, dir: &std::path::Path, store: &std::path::Path) -> db::Container {
    let _ = std::fs::remove_dir_all(dir);
    db::fsb_copy(store, dir, Duration::ZERO);
    s.container()
        .with("VHI_DUMP_DIR", &dir.display().to_string())
        .with("VHI_RESTORE_WAIT_SECONDS", "60")
}

/// (8c) dump mode against what Velero does with the data volume. Kept out of file-system
/// backup, it is still snapshotted where Velero can snapshot, and a PV with reclaim policy Retain
/// comes back as it was. The restore hook loads nothing over the database the dump was taken
/// from and checks it instead, whether it comes back as a crash-consistent snapshot (taken after
/// the pre hook, rows committed since included) or as the retained volume; a snapshot that lost a
/// table file fails that check; a backup without a usable dump checks what came back; another
/// database's tables are never loaded over, nor is a dump that does not say where it came from.
/// Table u has no key: a load over the database would duplicate its row.
fn dump_mode_restore_paths(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    if !db_pg::client_available(&v) {
        return;
    }
    let mut s = PgServer::init(&v, PgAuth::TrustLocal);
    s.psql("CREATE TABLE u (k int); INSERT INTO u VALUES (1)")
        .expect("u");
    // u's file is not in the WAL a recovery replays after this, so a copy that lost it shows.
    s.psql("CHECKPOINT").expect("checkpoint");
    let w = s.writer();
    assert!(w.progresses(10, Duration::from_secs(20)), "writer runs");
    let dump = dump_volume(s.tmp.path());
    let c = s
        .container()
        .with("VHI_DUMP_DIR", &dump.display().to_string());
    run_hook(&dump_tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("dump");
    let dumped = w.committed();
    let store = tempfile::tempdir().expect("backup store");
    let store = store.path().join("vhi-dump");
    db::fsb_copy(&dump, &store, Duration::ZERO);
    let text = std::fs::read_to_string(store.join("pg_dumpall.sql")).expect("dump");
    let ident = s
        .psql("SELECT system_identifier FROM pg_control_system()")
        .expect("identifier");
    assert!(
        text.trim_end().ends_with(&format!(" origin={ident}")),
        "the dump records where it comes from: {:?}",
        text.lines().last()
    );
    assert!(
        w.progresses(10, Duration::from_secs(20)),
        "commits after the dump"
    );
    let snapped = w.committed();
    assert!(snapped > dumped);
    // u's file must be older than the snapshots' redo point: WAL replay recreates the file of a
    // table created after it, and the lost-file case below would then come back whole.
    s.psql("CHECKPOINT").expect("checkpoint");
    let mut snap = s.snapshot();
    let mut torn = s.snapshot();
    let lost = s.psql("SELECT pg_relation_filepath('u')").expect("path");
    let total = w.stop();

    // A snapshot of the data volume came back (CSI): crash recovery, then the hook.
    let sc = restored(&snap, &snap.tmp.path().join("vhi-dump"), &store);
    snap.spawn();
    let run = run_hook(&dump_tpl(), Phase::Restore, &sc).expect("hook");
    run.assert_ok("the snapshot of the dump's own database");
    eprintln!("MEASURE PG{major} snapshot path: {}", run.stdout.trim());
    assert!(
        run.stdout
            .contains("nothing loaded: the data volume came back with the database dump")
            && run.stdout.contains(&format!("(identity {ident})"))
            && run.stdout.contains("restore check passed"),
        "{run}"
    );
    assert_eq!(snap.rows_upto(snapped), snapped, "rows since the dump kept");
    assert_eq!(snap.psql("SELECT count(*) FROM u").expect("u"), "1");
    let again = run_hook(&dump_tpl(), Phase::Restore, &sc).expect("hook");
    again.assert_ok("second run");
    assert_eq!(snap.psql("SELECT count(*) FROM u").expect("u"), "1");
    // The same snapshot that lost a table's file: the hook reads every table, and fails.
    std::fs::remove_file(torn.data.join(&lost)).expect("rm table file");
    let tc = restored(&torn, &torn.tmp.path().join("vhi-dump"), &store);
    torn.spawn();
    run_hook(&dump_tpl(), Phase::Restore, &tc)
        .expect("hook")
        .assert_fails_with("a snapshot that lost a table file", "could not open file");

    // The retained volume came back: the same data directory, a new server on it.
    s.shutdown();
    s.start();
    let rdir = s.tmp.path().join("vhi-dump-restored");
    let rc = restored(&s, &rdir, &store);
    let run = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("hook");
    run.assert_ok("the retained volume");
    assert!(
        run.stdout
            .contains("nothing loaded: the data volume came back with the database dump"),
        "{run}"
    );
    assert_eq!(s.rows_upto(total), total, "every row kept");
    assert_eq!(s.psql("SELECT count(*) FROM u").expect("u"), "1");
    // The same path in an Alpine-like userland (BusyBox sh and applets).
    if let Some(bb) = db::run_hook_busybox(&dump_tpl(), Phase::Restore, &rc) {
        bb.assert_ok("the retained volume under busybox");
        assert!(bb.stdout.contains("restore check passed"), "{bb}");
        assert_eq!(s.psql("SELECT count(*) FROM u").expect("u"), "1");
    }
    assert!(
        !std::fs::read_dir(&rdir).expect("dump dir").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with("load")),
        "no load began"
    );
    // No usable dump in the backup, the data came back: checked, nothing loaded.
    std::fs::remove_file(rdir.join("pg_dumpall.sql")).expect("rm dump");
    let run = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("hook");
    run.assert_ok("data back, no dump");
    assert!(
        run.stdout.contains("nothing loaded: no dump at")
            && run.stdout.contains("restore check passed"),
        "{run}"
    );
    let full = std::fs::read(store.join("pg_dumpall.sql")).expect("dump");
    std::fs::write(rdir.join("pg_dumpall.sql"), &full[..full.len() / 2]).expect("cut");
    let run = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("hook");
    run.assert_ok("data back, dump cut short");
    assert!(run.stdout.contains("is truncated (no end marker)"), "{run}");
    // A dump that does not say where it came from (an older one): its origin cannot be
    // compared, so it is not loaded over the tables that are there, and the hook says so.
    let old = String::from_utf8_lossy(&full).replace(&format!(" origin={ident}"), "");
    std::fs::write(rdir.join("pg_dumpall.sql"), old).expect("old dump");
    run_hook(&dump_tpl(), Phase::Restore, &rc)
        .expect("hook")
        .assert_fails_with("a dump without its origin over data", "(not recorded)");
    assert_eq!(s.psql("SELECT count(*) FROM u").expect("u"), "1");

    // Another database on the data volume (a volume not from this backup, or tables the image's
    // init scripts made): the dump is not loaded over it, and the hook fails saying how to choose.
    let other = PgServer::init(&v, PgAuth::TrustLocal);
    other
        .psql("INSERT INTO t VALUES (1), (2), (3)")
        .expect("rows");
    let oc = restored(&other, &other.tmp.path().join("vhi-dump"), &store);
    let run = run_hook(&dump_tpl(), Phase::Restore, &oc).expect("hook");
    run.assert_fails_with("another database's tables", "NOT loaded, nothing changed");
    assert!(
        run.stderr.contains("another database") && run.stderr.contains("empty the data volume"),
        "{run}"
    );
    assert_eq!(other.psql("SELECT count(*) FROM t").expect("t"), "3");
    assert_eq!(
        other.psql("SELECT to_regclass('u') IS NULL").expect("u"),
        "t",
        "nothing of the dump loaded"
    );
}

/// (9) the control: without dump mode, a file-by-file copy of the live data directory (what
/// file-system backup takes) while pgbench and checkpoints run. Some run of the loop must
/// restore wrong: the server does not start, or rows committed before the copy are missing, or
/// pgbench's balances disagree.
fn control_live_copy_is_unsafe(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let mut seen = Vec::new();
    for round in 1..=6 {
        let s = PgServer::init(&v, PgAuth::TrustLocal);
        s.pgbench(&["-i", "-q", "-s", "2"]).expect("pgbench -i");
        let w = s.writer();
        let (stop, bench) = bench_load(&s);
        let cstop = Arc::new(AtomicBool::new(false));
        let checkpoints = {
            let (flag, srv_sock, port) = (cstop.clone(), s.sock.clone(), s.port);
            std::thread::spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    let _ = db::sh(
                        std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
                            .env("PGPASSWORD", PG_PASSWORD)
                            .arg("-h")
                            .arg(&srv_sock)
                            .arg("-p")
                            .arg(port.to_string())
                            .args(["-U", "postgres", "-d", "postgres", "-c", "CHECKPOINT"]),
                    );
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        let before = w.committed();
        let mut r = s.live_file_copy(Duration::from_millis(2));
        cstop.store(true, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let _ = bench.join();
        let _ = checkpoints.join();
        w.stop();
        let outcome = if !r.try_start(Duration::from_secs(30)) {
            let log = r.log();
            let line = log
                .lines()
                .find(|l| l.contains("PANIC") || l.contains("FATAL"))
                .unwrap_or("no start within 30 s")
                .to_owned();
            Some(format!("server does not start: {line}"))
        } else {
            match (r.rows_upto(before), r.pgbench_sums()) {
                (n, _) if n != before => Some(format!(
                    "{} of the {before} rows committed before the copy are missing",
                    before - n
                )),
                (_, Ok(sums)) if sums.iter().any(|x| *x != sums[0]) => {
                    Some(format!("pgbench balances disagree: {sums:?}"))
                }
                (_, Err(e)) => Some(format!("pgbench tables unreadable: {e}")),
                _ => None,
            }
        };
        eprintln!(
            "CONTROL PG{major} round {round}: {}",
            outcome.as_deref().unwrap_or("restored consistent")
        );
        if let Some(o) = outcome {
            seen.push(o);
            break;
        }
    }
    assert!(
        !seen.is_empty(),
        "PG {major}: six live file copies all restored consistent; the control did not show the danger"
    );
}

macro_rules! pg_matrix {
    ($($m:ident => $major:expr),* $(,)?) => {$(
        mod $m {
            #[test]
            fn s1_pre_post_succeed() { super::pre_post_succeed($major) }
            #[test]
            fn s2_checkpoint_effect() { super::checkpoint_effect($major) }
            #[test]
            fn s3_restore_from_snapshot() { super::restore_from_snapshot($major) }
            #[test]
            fn s4_failures_are_loud() { super::failures_are_loud($major) }
            #[test]
            fn s5_idempotent() { super::idempotent($major) }
            #[test]
            fn s6_busybox_userland() { super::busybox_userland($major) }
            #[test]
            fn s7_restore_hook_good_copy() { super::restore_hook_good($major) }
            #[test]
            fn s7_restore_hook_bad_copy() { super::restore_hook_bad($major) }
            #[test]
            fn s8_dump_mode_fsb() { super::dump_mode_fsb($major) }
            #[test]
            fn s8c_dump_mode_restore_paths() { super::dump_mode_restore_paths($major) }
            #[test]
            fn s9_control_live_file_copy() { super::control_live_copy_is_unsafe($major) }
        }
    )*};
}

pg_matrix!(pg13 => 13, pg14 => 14, pg15 => 15, pg16 => 16, pg17 => 17, pg18 => 18);

/// Dump-mode cost on a realistic data set: `VHI_PG_MEASURE=1` (scale `VHI_PG_MEASURE_SCALE`,
/// default 20: about 300 MB) with the image's own client. Prints MEASURE lines; asserts only
/// that the load is right.
fn measure_dump_mode(major: u32) {
    if std::env::var("VHI_PG_MEASURE").ok().as_deref() != Some("1") {
        eprintln!("measure_dump_mode_pg{major}: set VHI_PG_MEASURE=1 to run it");
        return;
    }
    let Some(v) = db_pg::available(major) else {
        return;
    };
    if !db_pg::client_available(&v) {
        return;
    }
    let scale = std::env::var("VHI_PG_MEASURE_SCALE").unwrap_or_else(|_| "20".to_owned());
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    s.pgbench(&["-i", "-q", "-s", &scale]).expect("pgbench -i");
    let size = s
        .psql("SELECT pg_size_pretty(pg_database_size('postgres'))")
        .expect("size");
    let w = s.writer();
    let dump = dump_volume(s.tmp.path());
    let c = s
        .container()
        .with("VHI_DUMP_DIR", &dump.display().to_string());
    let pre = run_hook(&dump_tpl(), Phase::Pre, &c).expect("pre");
    pre.assert_ok("dump");
    let committed = w.stop();
    let bytes = std::fs::metadata(dump.join("pg_dumpall.sql"))
        .expect("dump")
        .len();
    let fresh = PgServer::init_with(&v, PgAuth::TrustLocal, true);
    let rdump = dump_volume(fresh.tmp.path());
    db::fsb_copy(&dump, &rdump, Duration::ZERO);
    let rc = fresh
        .container()
        .with("VHI_DUMP_DIR", &rdump.display().to_string());
    let run = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("load");
    run.assert_ok("load");
    assert_eq!(fresh.rows_upto(committed), fresh.rows_upto(u64::MAX));
    let sums = fresh.pgbench_sums().expect("sums");
    assert!(sums.iter().all(|x| *x == sums[0]), "{sums:?}");
    // The same backup restored with the data volume's snapshot: nothing loaded, only checked.
    let mut snap = s.snapshot();
    let sc = restored(&snap, &snap.tmp.path().join("vhi-dump"), &dump);
    snap.spawn();
    let back = run_hook(&dump_tpl(), Phase::Restore, &sc).expect("check");
    back.assert_ok("came back");
    assert!(back.stdout.contains("nothing loaded"), "{back}");
    eprintln!(
        "MEASURE postgres dump mode PG{major} ({}) pgbench -s {scale}: database {size}, dump {bytes} bytes, pre hook {:?}, restore hook {:?} (load), {:?} (snapshot came back: recovery and check)",
        v.client_source, pre.elapsed, run.elapsed, back.elapsed
    );
}

#[test]
fn measure_dump_mode_pg15() {
    measure_dump_mode(15)
}

#[test]
fn measure_dump_mode_pg18() {
    measure_dump_mode(18)
}

/// (8b) dump mode: the restore hook does not load into the image's temporary init server. The
/// official image initialises an empty volume with a server on the socket only
/// (`listen_addresses ''`), runs its setup, stops it (fast: sessions are cut), and only then
/// starts the real server. Here the hook runs from the start, the temporary server's socket is
/// where the hook's psql looks first (Debian's default, /var/run/postgresql), and the setup lasts
/// 1.5 s, shorter than the load: a hook that loaded into the temporary server would be cut off
/// and fail. It must wait for the real server and load there. PostgreSQL 15 (Debian client).
#[test]
fn s8b_dump_load_waits_out_the_image_init_server_pg15() {
    let Some(v) = db_pg::available(15) else {
        return;
    };
    let default_socket_dir = std::path::Path::new("/var/run/postgresql");
    if !default_socket_dir.is_dir() {
        assert!(!db::required(), "no {}", default_socket_dir.display());
        eprintln!("SKIPPED s8b: no {}", default_socket_dir.display());
        return;
    }
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    s.pgbench(&["-i", "-q", "-s", "10"]).expect("pgbench -i");
    s.psql("INSERT INTO t SELECT generate_series(1, 1000)")
        .expect("rows");
    let dump = dump_volume(s.tmp.path());
    let c = s
        .container()
        .with("VHI_DUMP_DIR", &dump.display().to_string());
    run_hook(&dump_tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("dump");

    let mut fresh = PgServer::init_with(&v, PgAuth::TrustLocal, true);
    fresh.shutdown();
    fresh.spawn_listening("");
    db::wait_for(Duration::from_secs(30), || fresh.psql("SELECT 1").ok())
        .expect("the temporary server answers on its socket");
    let link = default_socket_dir.join(format!(".s.PGSQL.{}", fresh.port));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(fresh.sock.join(format!(".s.PGSQL.{}", fresh.port)), &link)
        .expect("socket link");
    let rdump = dump_volume(fresh.tmp.path());
    db::fsb_copy(&dump, &rdump, Duration::ZERO);
    let rc = fresh
        .container()
        .with("VHI_DUMP_DIR", &rdump.display().to_string())
        .with("VHI_RESTORE_WAIT_SECONDS", "90");
    let t = dump_tpl();
    let hook = std::thread::spawn(move || run_hook(&t, Phase::Restore, &rc).expect("load hook"));
    std::thread::sleep(Duration::from_millis(1500));
    fresh.shutdown();
    fresh.spawn();
    let run = hook.join().expect("hook thread");
    let _ = std::fs::remove_file(&link);
    run.assert_ok("load after the image's init server");
    assert!(run.stdout.contains("loaded dump"), "{run}");
    db::wait_for(Duration::from_secs(30), || fresh.psql("SELECT 1").ok()).expect("up");
    assert_eq!(
        fresh.rows_upto(1000),
        1000,
        "the rows are in the real server"
    );
    assert_eq!(
        fresh
            .psql("SELECT count(*) FROM pgbench_accounts")
            .expect("accounts"),
        "1000000"
    );
}

/// Runs `phase`'s hook of `t` in a thread (a restore hook that waits while the test starts
/// servers).
fn hook_thread(
    t: velero_hook_injector::hooks::template::Template,
    phase: Phase,
    c: db::Container,
) -> std::thread::JoinHandle<db::HookRun> {
    std::thread::spawn(move || run_hook(&t, phase, &c).expect("hook"))
}

/// A primary and its streaming standby as the Bitnami chart runs them
/// (`architecture=replication`: the read replica cloned by pg_basebackup, its env with
/// `POSTGRES_REPLICATION_MODE=slave`), the writer's rows replicated; `None` when skipped.
fn bitnami_pair(major: u32) -> Option<(PgServer, PgServer)> {
    let v = db_pg::available(major)?;
    if !db_pg::client_available(&v) {
        return None;
    }
    let p = PgServer::init(&v, PgAuth::Password);
    p.add_replication_user();
    let mut s = PgServer::clone_standby(&p);
    s.start();
    Some((p, s))
}

/// (10) snapshot mode on a primary + read replica pair: the pre hook runs on both with the env
/// the chart gives each (on the standby CHECKPOINT is a restartpoint: its redo LSN advances),
/// each data directory is copied atomically, and both are restored: the standby, started first,
/// streams from the restored primary; each restore check waits for its server, reports its role
/// and the rows, which are all there.
fn standby_pair_snapshot(major: u32) {
    let Some((p, s)) = bitnami_pair(major) else {
        return;
    };
    let (pc, sc) = (p.bitnami_container(None), s.bitnami_container(Some(&p)));
    let w = p.writer();
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    // The standby's pod first: its copy must not be newer than its primary's (s10b).
    let r = run_hook(&tpl(), Phase::Pre, &pc).expect("pre");
    r.assert_ok("pre on the primary");
    let committed = w.committed();
    assert!(
        s.replays_rows(committed, Duration::from_secs(30)),
        "the standby replicates"
    );
    let redo = s.redo_lsn();
    let r = run_hook(&tpl(), Phase::Pre, &sc).expect("pre");
    r.assert_ok("pre on the standby");
    assert!(r.stdout.contains("user: postgres"), "{r}");
    assert_ne!(
        s.redo_lsn(),
        redo,
        "PG {major}: CHECKPOINT on the standby made a restartpoint"
    );
    let mut rs = s.snapshot();
    assert!(w.progresses(10, Duration::from_secs(20)), "writes go on");
    let mut rp = p.snapshot();
    let written = w.stop();
    rs.follow(rp.port);
    let rsc = rs.bitnami_container(Some(&rp));
    let rpc = rp.bitnami_container(None);
    let standby_hook = hook_thread(tpl(), Phase::Restore, rsc);
    rs.spawn();
    std::thread::sleep(Duration::from_secs(3));
    let primary_hook = hook_thread(tpl(), Phase::Restore, rpc);
    rp.spawn();
    let pr = primary_hook.join().expect("primary hook");
    pr.assert_ok("restore check on the restored primary");
    assert!(pr.stdout.contains(", primary,"), "{pr}");
    assert!(pr.stdout.contains("postgres (1 tables, 1 opened"), "{pr}");
    let sr = standby_hook.join().expect("standby hook");
    sr.assert_ok("restore check on the restored standby");
    eprintln!(
        "MEASURE postgres PG{major} pair snapshot: {}",
        sr.stdout.trim()
    );
    assert!(
        sr.stdout
            .contains(&format!("standby streaming from 127.0.0.1:{}", rp.port)),
        "{sr}"
    );
    assert!(sr.stdout.contains("postgres (1 tables, 1 opened"), "{sr}");
    assert!(
        sr.elapsed >= Duration::from_secs(3),
        "it waited for its primary: {sr}"
    );
    // The same check as an app user (auth.enablePostgresUser=false): it cannot see the WAL
    // receiver's details, passes, and says what it could not compare.
    rp.psql("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
        .expect("app role");
    db::wait_for(Duration::from_secs(30), || {
        rs.psql("SELECT 1 FROM pg_roles WHERE rolname = 'app'")
            .ok()
            .filter(|r| r == "1")
    })
    .expect("the role replicates");
    let pw = rs.tmp.path().join("app-password");
    std::fs::write(&pw, "app-pw").expect("pw");
    let app = run_hook(
        &tpl(),
        Phase::Restore,
        &rs.bitnami_container(Some(&rp))
            .with("POSTGRES_USER", "app")
            .with("POSTGRES_PASSWORD_FILE", &pw.display().to_string()),
    )
    .expect("hook");
    app.assert_ok("the standby's check as the app user");
    assert!(
        app.stdout
            .contains("replay not compared: app lacks pg_read_all_stats"),
        "{app}"
    );
    assert!(app.stdout.contains("postgres (1 tables, 0 opened"), "{app}");
    // The advised set-up: the standby's volume left out of the backup, so the restore gives it
    // an empty volume and the image clones it from the restored primary.
    let mut fresh = PgServer::clone_standby(&rp);
    fresh.start();
    let r = run_hook(&tpl(), Phase::Restore, &fresh.bitnami_container(Some(&rp))).expect("hook");
    r.assert_ok("the check on a standby re-cloned from the restored primary");
    assert!(r.stdout.contains("standby streaming from"), "{r}");
    assert_eq!(fresh.rows_upto(committed), committed, "re-cloned rows");
    assert_eq!(rp.rows_upto(committed), committed, "primary rows");
    assert!(
        rs.replays_rows(rp.rows(), Duration::from_secs(30)),
        "the restored standby catches up with the rows its copy lacked"
    );
    assert!(rp.rows() <= written + 1, "no rows from the future");
    rp.psql("INSERT INTO t VALUES (100000000)").expect("write");
    assert!(
        rs.replays_rows(rp.rows(), Duration::from_secs(30)),
        "the restored standby replicates the restored primary's new writes"
    );
}

/// (11) dump mode on the pair: the primary dumps; the restore gives both pods empty volumes.
/// The primary is initialised as the image does (with its replication user) and its load hook
/// loads the dump; the standby is cloned from it before the load, as the image clones an empty
/// replica volume, and its restore check (the snapshot-mode one: a replica never loads) waits
/// while it holds no user table and passes once the rows have replicated, reporting a standby.
fn standby_pair_dump(major: u32) {
    let Some((p, s)) = bitnami_pair(major) else {
        return;
    };
    let w = p.writer();
    assert!(w.progresses(20, Duration::from_secs(20)), "writer runs");
    let dump = dump_volume(p.tmp.path());
    let pc = p
        .bitnami_container(None)
        .with("VHI_DUMP_DIR", &dump.display().to_string());
    let committed = w.committed();
    run_hook(&dump_tpl(), Phase::Pre, &pc)
        .expect("dump")
        .assert_ok("dump on the primary");
    w.stop();
    drop(s);

    let fresh = PgServer::init_with(&p.version, PgAuth::Password, true);
    fresh.add_replication_user();
    let mut standby = PgServer::clone_standby(&fresh);
    standby.start();
    let started = Instant::now();
    let standby_hook = hook_thread(
        tpl(),
        Phase::Restore,
        standby.bitnami_container(Some(&fresh)),
    );
    std::thread::sleep(Duration::from_secs(3));
    let rdump = dump_volume(fresh.tmp.path());
    db::fsb_copy(&dump, &rdump, Duration::ZERO);
    let rc = fresh
        .bitnami_container(None)
        .with("VHI_DUMP_DIR", &rdump.display().to_string());
    let load = run_hook(&dump_tpl(), Phase::Restore, &rc).expect("load");
    load.assert_ok("load on the fresh primary");
    let sr = standby_hook.join().expect("standby hook");
    sr.assert_ok("restore check on the re-cloned standby");
    eprintln!(
        "MEASURE postgres PG{major} pair dump: standby check {:?} {}",
        sr.elapsed,
        sr.stdout.trim()
    );
    assert!(sr.stdout.contains("standby streaming from"), "{sr}");
    assert!(sr.stdout.contains("postgres (1 tables"), "{sr}");
    assert!(
        sr.elapsed >= Duration::from_secs(3) && started.elapsed() >= sr.elapsed,
        "it waited for the load: {sr}"
    );
    assert!(
        standby.replays_rows(committed, Duration::from_secs(30)),
        "PG {major}: the loaded rows replicate to the standby: {:?} {:?} of {committed}",
        standby.psql("SELECT count(*) FROM t"),
        fresh.psql("SELECT count(*) FROM t"),
    );
    assert_eq!(fresh.rows_upto(committed), committed);
    // Never a wait without end: a standby whose primary never gets a table fails at its deadline.
    let empty = PgServer::init_with(&p.version, PgAuth::Password, true);
    empty.add_replication_user();
    let mut lone = PgServer::clone_standby(&empty);
    lone.start();
    let r = run_hook(
        &tpl(),
        Phase::Restore,
        &lone
            .bitnami_container(Some(&empty))
            .with("VHI_RESTORE_WAIT_SECONDS", "8"),
    )
    .expect("hook");
    r.assert_fails_with("a standby of an empty primary", "came back as standby");
    assert!(r.elapsed < Duration::from_secs(30), "bounded: {r}");
}

/// (12) PostgreSQL with only an app user in the env (Bitnami `auth.enablePostgresUser=false`
/// with `auth.username=app`): the pre hook says what to grant or set; with pg_checkpoint
/// granted (15+) it checkpoints; the restore check works as the app user and opens the tables it
/// may read; dump mode refuses with the fix.
fn app_user_only(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::Password);
    s.psql("CREATE ROLE app LOGIN CREATEDB PASSWORD 'app-pw'")
        .expect("role");
    s.psql("CREATE DATABASE app OWNER app").expect("db");
    let pw = s.tmp.path().join("app-password");
    std::fs::write(&pw, "app-pw").expect("pw");
    let mut c = s
        .bitnami_container(None)
        .with("POSTGRES_USER", "app")
        .with("POSTGRES_PASSWORD_FILE", &pw.display().to_string())
        .with("POSTGRES_DATABASE", "app");
    for k in [
        "POSTGRES_REPLICATION_MODE",
        "POSTGRES_REPLICATION_USER",
        "POSTGRES_REPLICATION_PASSWORD_FILE",
    ] {
        c.unset(k);
    }
    let r = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
    r.assert_fails_with("app user", "GRANT pg_checkpoint TO \"app\"");
    assert!(r.stderr.contains("auth.enablePostgresUser=true"), "{r}");
    assert!(!r.stderr.contains("ERROR:  must"), "no raw psql error: {r}");
    if major >= 15 {
        s.psql("GRANT pg_checkpoint TO app").expect("grant");
        let c0 = s.checkpoints_requested();
        let r = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
        r.assert_ok("pre with pg_checkpoint");
        assert!(r.stdout.contains("user: app"), "{r}");
        // The checkpointer reports its counters after CHECKPOINT has returned: wait for them.
        let advanced = db::wait_for(Duration::from_secs(5), || {
            (s.checkpoints_requested() > c0).then_some(())
        });
        assert!(advanced.is_some(), "PG {major}: it checkpointed");
    }
    // The app's own table, and one it may not read (postgres's t).
    db::sh(
        std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .env("PGPASSWORD", "app-pw")
            .args(["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&s.sock)
            .arg("-p")
            .arg(s.port.to_string())
            .args([
                "-U",
                "app",
                "-d",
                "app",
                "-c",
                "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)",
            ]),
    )
    .expect("app table");
    let mut r = s.snapshot();
    r.start();
    let mut rc = c.clone();
    rc.set("POSTGRESQL_PORT_NUMBER", &r.port.to_string());
    let run = run_hook(&tpl(), Phase::Restore, &rc).expect("restore");
    run.assert_ok("restore check as the app user");
    eprintln!(
        "MEASURE postgres PG{major} app user restore: {}",
        run.stdout.trim()
    );
    assert!(run.stdout.contains("app (1 tables, 1 opened"), "{run}");
    assert!(run.stdout.contains("postgres (1 tables, 0 opened"), "{run}");
    let dump = dump_volume(s.tmp.path());
    let d = run_hook(
        &dump_tpl(),
        Phase::Pre,
        &c.clone().with("VHI_DUMP_DIR", &dump.display().to_string()),
    )
    .expect("dump");
    d.assert_fails_with("dump as the app user", "pg_dumpall needs a superuser");
    assert!(!dump.join("pg_dumpall.sql").exists());
}

/// (13) warnings are reported, not taken for answers: a database whose recorded collation
/// version is not the library's (psql prints a WARNING on every connection to it) and a client
/// locale the system lacks (Debian's psql wrapper, a perl script, prints locale warnings). The
/// checks pass and name the warning. And a restored copy that lost a table's file fails.
fn warnings_and_missing_files(major: u32) {
    let Some(v) = db_pg::available(major) else {
        return;
    };
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    s.psql("INSERT INTO t VALUES (1)").expect("row");
    // An ICU database where the server has ICU (15+), else the C database with a recorded
    // version its library cannot have.
    let icu = major >= 15
        && s.psql("CREATE DATABASE icu LOCALE_PROVIDER icu ICU_LOCALE 'en' TEMPLATE template0")
            .is_ok();
    let (db, warning) = if icu {
        ("icu", "collation version mismatch")
    } else {
        ("postgres", "has no actual collation version")
    };
    if major >= 15 {
        s.psql(&format!(
            "UPDATE pg_database SET datcollversion = '0.0' WHERE datname = '{db}'"
        ))
        .expect("collversion");
    } else {
        eprintln!("PG {major}: no datcollversion before 15; the locale case only");
    }
    let c = s.container();
    let cases: Vec<(&str, db::Container)> = vec![
        ("collation", c.clone()),
        (
            "locale",
            c.clone()
                .with("LC_ALL", "xx_XX.UTF-8")
                .with("PATH", &format!("/usr/bin:{}", db::CONTAINER_PATH)),
        ),
    ];
    for (what, c) in cases {
        if what == "collation" && major < 15 {
            continue;
        }
        let needle = if what == "locale" { "locale" } else { warning };
        let pre = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
        pre.assert_ok(&format!("pre with a {what} warning"));
        let run = run_hook(&tpl(), Phase::Restore, &c).expect("restore");
        run.assert_ok(&format!("restore check with a {what} warning"));
        eprintln!(
            "MEASURE postgres PG{major} {what} warning: {}",
            run.stdout.trim()
        );
        assert!(run.stdout.contains(", primary,"), "{run}");
        assert!(
            run.stdout.contains("warnings:") && run.stdout.contains(needle),
            "the {what} warning is reported: {run}"
        );
        assert!(run.elapsed < Duration::from_secs(20), "no wait: {run}");
    }

    // The restore check in an Alpine-like userland (BusyBox sh), warnings and all.
    if major >= 15
        && let Some(r) = db::run_hook_busybox(&tpl(), Phase::Restore, &s.container())
    {
        r.assert_ok("restore check under busybox");
        assert!(r.stdout.contains(warning), "{r}");
    }

    // A copy without one table's file: it starts (nothing reads t during recovery) and the
    // check fails on opening t. The CHECKPOINT first: no WAL after it touches t.
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    let file = s.psql("SELECT pg_relation_filepath('t')").expect("path");
    let mut r = s.snapshot();
    std::fs::remove_file(r.data.join(&file)).expect("rm relation file");
    r.start();
    let run = run_hook(&tpl(), Phase::Restore, &r.container()).expect("restore");
    run.assert_fails_with("a copy missing t's file", "could not open file");
    assert!(
        run.stderr.contains("cannot read database postgres"),
        "{run}"
    );
}

macro_rules! pg_roles {
    ($($m:ident => $major:expr),* $(,)?) => {$(
        mod $m {
            #[test]
            fn s10_standby_pair_snapshot() { super::standby_pair_snapshot($major) }
            #[test]
            fn s10b_standby_ahead_quiet_primary() { super::standby_ahead_of_primary($major, true) }
            #[test]
            fn s10b_standby_ahead_busy_primary() { super::standby_ahead_of_primary($major, false) }
            #[test]
            fn s11_standby_pair_dump() { super::standby_pair_dump($major) }
            #[test]
            fn s12_app_user_only() { super::app_user_only($major) }
            #[test]
            fn s13_warnings_and_missing_files() { super::warnings_and_missing_files($major) }
        }
    )*};
}

pg_roles!(roles13 => 13, roles14 => 14, roles15 => 15, roles16 => 16, roles17 => 17, roles18 => 18);

/// (10b) the standby's copy taken after its primary's, with writes in between (Velero copies one
/// pod after the other, the primary's pod first by name): the restored standby holds rows the
/// restored primary does not have. Its restore check must fail and say to re-clone it, within
/// its deadline, whether the restored primary is still behind the standby (`quiet`) or has
/// written past it (the standby then stops at WAL that differs from its own).
fn standby_ahead_of_primary(major: u32, quiet: bool) {
    let Some((p, s)) = bitnami_pair(major) else {
        return;
    };
    p.psql("INSERT INTO t SELECT generate_series(1, 1000)")
        .expect("rows");
    let mut rp = p.snapshot();
    p.psql("INSERT INTO t SELECT generate_series(1001, 20000)")
        .expect("rows after the primary's copy");
    assert!(s.replays_rows(20000, Duration::from_secs(30)), "replicated");
    let mut rs = s.snapshot();
    rs.follow(rp.port);
    rp.start();
    if !quiet {
        rp.psql("INSERT INTO t SELECT generate_series(1001, 30000)")
            .expect("new writes on the restored primary");
    }
    rs.spawn();
    let r = run_hook(
        &tpl(),
        Phase::Restore,
        &rs.bitnami_container(Some(&rp))
            .with("VHI_RESTORE_WAIT_SECONDS", "20"),
    )
    .expect("hook");
    eprintln!(
        "MEASURE postgres PG{major} standby ahead (quiet={quiet}): {}",
        r.stderr.trim()
    );
    r.assert_fails_with(
        "a standby ahead of its primary",
        "Re-clone it from its primary",
    );
    assert!(r.elapsed < Duration::from_secs(40), "bounded: {r}");
}

/// The template's annotations for a 63-character container name (the longest Kubernetes
/// allows), snapshot mode under the 8 KiB budget, dump mode under its own 12 KiB (its restore
/// hook carries the restore check too; src/hooks/template.rs). Prints MEASURE lines.
#[test]
fn annotation_bytes_with_the_longest_container_name() {
    let name = "c".repeat(63);
    let t = tpl();
    let bytes = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    };
    let snapshot = bytes(&t.annotations(&name));
    let dump = bytes(&t.dump_annotations(&name).expect("dump mode"));
    eprintln!(
        "MEASURE postgres annotations, 63-char container: snapshot {snapshot} B, dump {dump} B"
    );
    assert!(snapshot <= 8192 && dump <= 12 * 1024, "{snapshot} {dump}");
}

/// The restore check's cost with many tables (each opened, one row read): `VHI_PG_MEASURE=1`,
/// `VHI_PG_MEASURE_TABLES` tables (default 5000) of 100 rows each on PostgreSQL 15. Prints a
/// MEASURE line; asserts only that the check passes and counts them.
#[test]
fn measure_restore_check_many_tables_pg15() {
    if std::env::var("VHI_PG_MEASURE").ok().as_deref() != Some("1") {
        eprintln!("measure_restore_check_many_tables_pg15: set VHI_PG_MEASURE=1 to run it");
        return;
    }
    let Some(v) = db_pg::available(15) else {
        return;
    };
    let tables: u32 = std::env::var("VHI_PG_MEASURE_TABLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let s = PgServer::init(&v, PgAuth::TrustLocal);
    s.psql(&format!(
        "DO $$BEGIN FOR i IN 1..{tables} LOOP EXECUTE format('CREATE TABLE m%s AS SELECT generate_series(1, 100) n', i); END LOOP; END$$"
    ))
    .expect("tables");
    let run = run_hook(&tpl(), Phase::Restore, &s.container()).expect("restore");
    run.assert_ok("restore check over many tables");
    let want = format!("postgres ({} tables, {} opened", tables + 1, tables + 1);
    assert!(run.stdout.contains(&want), "{run}");
    eprintln!(
        "MEASURE postgres restore check, {} tables: {:?}",
        tables + 1,
        run.elapsed
    );
}
