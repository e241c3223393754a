//! The `redis` template against a real Redis 7 server (Debian redis-server) in AOF, RDB-only
//! and no-persistence modes.

#[path = "common/db.rs"]
mod db;
#[path = "common/db_redis.rs"]
mod db_redis;

use std::process::Command;
use std::time::Duration;

use db::{Phase, run_hook};
use db_redis::{Mode, RedisServer};

const PW: &str = "redis-s3cret";

fn tpl() -> velero_hook_injector::hooks::template::Template {
    db::template("redis")
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Puts `n` keys of filler in one round trip (so rewrites and saves take measurable time).
fn fill(s: &RedisServer, n: u64) {
    let script = "for i=1,tonumber(ARGV[1]) do redis.call('SET','fill:'..i,string.rep('x',100)) end return 1";
    s.cli(&["EVAL", script, "0", &n.to_string()]).expect("fill");
}

/// (1) pre and post exit 0 in every mode, with a writer running; nothing is deleted.
fn pre_post_succeed(mode: Mode) {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(mode, Some(PW));
    let w = s.writer();
    let c = s.container();
    s.cli(&["SAVE"]).expect("save");
    let before = files(&s.data);
    let r = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
    r.assert_ok("pre");
    eprintln!("MEASURE redis {mode:?} pre={:?}", r.elapsed);
    match mode {
        Mode::Aof => assert!(r.stdout.contains("AOF mode"), "{r}"),
        Mode::Rdb => assert!(r.stdout.contains("RDB mode"), "{r}"),
        Mode::None => assert!(r.stdout.contains("cache only"), "{r}"),
    }
    run_hook(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    let after = files(&s.data);
    for f in &before {
        assert!(
            after.contains(f) || f.contains("appendonly"),
            "{f} was deleted"
        );
    }
    assert!(
        after.iter().any(|f| f.ends_with("dump.rdb")),
        "dump.rdb must survive"
    );
    assert!(w.progresses(3, Duration::from_secs(10)));
    w.stop();
}

/// (2a) AOF: a running rewrite is waited for, rewrites are paused until post, and post restores
/// exactly the previous value.
fn aof_effect() {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(Mode::Aof, Some(PW));
    s.cli(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "77"])
        .expect("set");
    fill(&s, 20_000);
    // ~20 000 keys x 150 us: the rewrite below takes about 3 s.
    s.cli(&["CONFIG", "SET", "rdb-key-save-delay", "150"])
        .expect("delay");
    let w = s.writer();
    s.cli(&["BGREWRITEAOF"]).expect("rewrite");
    assert_eq!(
        s.info("aof_rewrite_in_progress"),
        "1",
        "control: a rewrite is running"
    );
    let c = s.container();
    let r = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
    r.assert_ok("pre");
    assert_eq!(
        s.info("aof_rewrite_in_progress"),
        "0",
        "pre returned during a rewrite"
    );
    assert_eq!(s.info("aof_rewrite_scheduled"), "0");
    assert!(
        r.elapsed > Duration::from_millis(500),
        "pre did not wait for the rewrite: {r}"
    );
    assert_eq!(s.config("auto-aof-rewrite-percentage"), "0");
    assert!(w.progresses(5, Duration::from_secs(10)), "writes go on");
    run_hook(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    assert_eq!(s.config("auto-aof-rewrite-percentage"), "77");
    w.stop();
}

/// (2b) RDB only: LASTSAVE advances to a fresh, successful dump; without the hook it does not.
fn rdb_effect() {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(Mode::Rdb, Some(PW));
    let w = s.writer();
    let l0 = s.lastsave();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.lastsave(), l0, "control: no save happens by itself");
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    assert!(s.lastsave() > l0, "LASTSAVE did not advance");
    assert_eq!(s.info("rdb_last_bgsave_status"), "ok");
    assert_eq!(s.info("rdb_bgsave_in_progress"), "0");
    assert!(s.data.join("dump.rdb").exists());
    w.stop();
}

/// (3) restore from a snapshot taken between pre and post.
fn restore_from_snapshot(mode: Mode) {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(mode, Some(PW));
    let w = s.writer();
    let c = s.container();
    let before_pre = w.committed();
    run_hook(&tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre");
    let after_pre = w.committed();
    let restored = s.restore_from_snapshot();
    run_hook(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    w.stop();
    match mode {
        // AOF holds everything written before the snapshot.
        Mode::Aof => assert_eq!(restored.keys_upto(after_pre), after_pre),
        // The dump holds everything written before the hook's BGSAVE forked.
        Mode::Rdb => assert_eq!(restored.keys_upto(before_pre), before_pre),
        // A cache restores empty; the hook said so ("cache only").
        Mode::None => assert_eq!(restored.keys_upto(after_pre), 0),
    }
}

/// (4) failures are loud; a failing pre leaves the configuration as it was.
fn failures_are_loud(mode: Mode) {
    if !db_redis::available() {
        return;
    }
    let mut s = RedisServer::start(mode, Some(PW));
    let t = tpl();
    let c = s.container();
    let r = run_hook(&t, Phase::Pre, &c.clone().with("REDIS_PASSWORD", "wrong")).expect("pre");
    r.assert_fails_with("wrong password", "refused the password");
    assert!(
        !r.stderr.contains("wrong") || r.stderr.contains("WRONGPASS"),
        "{r}"
    );
    let mut none = c.clone();
    none.unset("REDIS_PASSWORD");
    run_hook(&t, Phase::Pre, &none)
        .expect("pre")
        .assert_fails_with("no password", "refused the password");
    let pwfile = s.tmp.path().join("redis-pw");
    std::fs::write(&pwfile, PW).expect("pw file");
    let file = none
        .clone()
        .with("REDIS_PASSWORD_FILE", &pwfile.display().to_string());
    run_hook(&t, Phase::Pre, &file)
        .expect("pre")
        .assert_ok("password file");
    run_hook(&t, Phase::Post, &file)
        .expect("post")
        .assert_ok("post with password file");
    if mode == Mode::Aof {
        // Post cannot reach the server: it fails loudly, naming the value to set back by hand.
        s.cli(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "55"])
            .expect("set");
        run_hook(&t, Phase::Pre, &c).expect("pre").assert_ok("pre");
        s.shutdown();
        let r = run_hook(&t, Phase::Post, &c).expect("post");
        r.assert_fails_with("server down at post", "ended badly");
        assert!(r.stderr.contains("back to 55"), "{r}");
    }
    if mode == Mode::Rdb {
        // The dump cannot be written: pre fails fast instead of waiting or claiming success.
        std::fs::remove_dir_all(&s.data).expect("rm data");
        let r = run_hook(&t, Phase::Pre, &c).expect("pre");
        r.assert_fails_with("bgsave fails", "BGSAVE failed");
        assert!(r.elapsed < Duration::from_secs(30), "{r}");
        std::fs::create_dir_all(&s.data).expect("data");
        s.shutdown();
    }
    if mode == Mode::None {
        s.shutdown();
    }
    run_hook(&t, Phase::Pre, &c)
        .expect("pre")
        .assert_fails_with("server down", "Connection refused");
}

/// (5) pre twice never saves 0 as the previous value; post twice is fine.
fn idempotent(mode: Mode) {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(mode, Some(PW));
    let c = s.container();
    s.cli(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "77"])
        .expect("set");
    let l0 = s.lastsave();
    run_hook(&tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre #1");
    let l1 = s.lastsave();
    run_hook(&tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre #2");
    if mode == Mode::Rdb {
        assert!(l1 > l0 && s.lastsave() > l1, "each pre writes a fresh dump");
    }
    run_hook(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post #1");
    run_hook(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post #2");
    assert_eq!(
        s.config("auto-aof-rewrite-percentage"),
        "77",
        "the original value must come back after pre twice + post twice"
    );
}

/// (6) the same hooks in an Alpine-like userland (BusyBox sh and applets).
fn busybox_userland(mode: Mode) {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(mode, Some(PW));
    let c = s.container();
    s.cli(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "77"])
        .expect("set");
    let l0 = s.lastsave();
    let Some(r) = db::run_hook_busybox(&tpl(), Phase::Pre, &c) else {
        return;
    };
    r.assert_ok("pre under busybox");
    match mode {
        Mode::Aof => assert_eq!(s.config("auto-aof-rewrite-percentage"), "0"),
        Mode::Rdb => assert!(s.lastsave() > l0, "no fresh dump under busybox"),
        Mode::None => assert!(r.stdout.contains("cache only")),
    }
    db::run_hook_busybox(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post under busybox");
    assert_eq!(s.config("auto-aof-rewrite-percentage"), "77");
}

/// Runs the restore hook in a thread; the restored server is launched `delay` later.
fn restore_hook_racing(r: &mut RedisServer, mode: Option<Mode>, wait: &str) -> db::HookRun {
    let t = tpl();
    let c = r.container().with("VHI_RESTORE_WAIT_SECONDS", wait);
    let h = std::thread::spawn(move || run_hook(&t, Phase::Restore, &c).expect("restore hook"));
    std::thread::sleep(Duration::from_secs(1));
    r.launch(mode);
    h.join().expect("hook thread")
}

/// (7) good copy: the restore hook waits for the restored server to load its data, exits 0
/// and counts the writer's keys; a second run changes nothing.
fn restore_hook_good(bin: &'static str, mode: Mode) {
    if !db_redis::available() || (bin == db_redis::VALKEY_SERVER && !db_redis::valkey_available()) {
        return;
    }
    let s = RedisServer::start_on(bin, mode, Some(PW));
    fill(&s, 2000);
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    let mut r = s.snapshot();
    run_hook(&tpl(), Phase::Post, &s.container())
        .expect("post")
        .assert_ok("post");
    let run = restore_hook_racing(&mut r, None, "600");
    run.assert_ok("restore hook on a good copy");
    eprintln!(
        "MEASURE redis {bin} {mode:?} restore={:?} {}",
        run.elapsed,
        run.stdout.trim()
    );
    let name = if bin == db_redis::VALKEY_SERVER {
        "Valkey 8"
    } else {
        "Redis 7"
    };
    assert!(run.stdout.contains(name), "{run}");
    assert!(run.stdout.contains("db0=2000"), "the writer's keys: {run}");
    let keys = r.keys_upto(2000);
    run_hook(&tpl(), Phase::Restore, &r.container())
        .expect("hook")
        .assert_ok("second run");
    assert_eq!(r.keys_upto(2000), keys, "the restore hook changed data");
}

/// Makes the server rewrite its AOF by itself as soon as it grows a little, as a busy server
/// with the default 100 % does once it has doubled: the event the pause exists for.
fn eager_rewrites(s: &RedisServer) {
    s.cli(&["CONFIG", "SET", "auto-aof-rewrite-min-size", "1"])
        .expect("min-size");
    s.cli(&["CONFIG", "SET", "auto-aof-rewrite-percentage", "1"])
        .expect("percentage");
}

/// (10) file-system backup: the AOF directory copied file by file while the writer runs and
/// the server would rewrite its AOF every few hundred milliseconds. With the hooks (rewrites
/// paused for the copy) the copy starts and holds every key written before the pre hook
/// returned, and the restore hook passes; the post hook puts the rewrite setting back.
fn fsb_copy_with_hooks() {
    if !db_redis::available() {
        return;
    }
    let s = RedisServer::start(Mode::Aof, Some(PW));
    fill(&s, 5000);
    eager_rewrites(&s);
    let w = s.writer();
    assert!(
        db::wait_for(Duration::from_secs(10), || (s.info("aof_rewrites") != "0")
            .then_some(()))
        .is_some(),
        "control: the server rewrites its AOF by itself"
    );
    let c = s.container();
    run_hook(&tpl(), Phase::Pre, &c)
        .expect("pre")
        .assert_ok("pre");
    let after_pre = w.committed();
    let rewrites = s.info("aof_rewrites");
    let mut r = s.fsb_copy(Duration::from_millis(700));
    assert_eq!(
        s.info("aof_rewrites"),
        rewrites,
        "a rewrite ran during the copy although the pre hook paused them"
    );
    run_hook(&tpl(), Phase::Post, &c)
        .expect("post")
        .assert_ok("post");
    assert_eq!(s.config("auto-aof-rewrite-percentage"), "1");
    let committed = w.stop();
    let run = restore_hook_racing(&mut r, None, "120");
    run.assert_ok("restore hook on the file-system copy");
    assert_eq!(
        r.keys_upto(after_pre),
        after_pre,
        "keys written before the pre hook returned are missing"
    );
    eprintln!(
        "MEASURE redis fsb: {after_pre} keys before pre returned, {} in the copy of {committed}",
        r.keys_upto(committed)
    );
}

/// (11) the control: the same copy without the hooks. A rewrite between copying the files
/// leaves a manifest and AOF files of different generations (or a file deleted under the
/// copy), and the restored server refuses to start, or comes back without keys that were
/// written long before the copy began. Shown on at least one of a few rounds, or the test fails.
fn fsb_copy_without_hooks_is_unsafe() {
    if !db_redis::available() {
        return;
    }
    for round in 1..=5 {
        let s = RedisServer::start(Mode::Aof, Some(PW));
        fill(&s, 5000);
        eager_rewrites(&s);
        let w = s.writer();
        std::thread::sleep(Duration::from_secs(1));
        let before = w.committed();
        let mut r = s.fsb_copy(Duration::from_millis(700));
        w.stop();
        r.launch(None);
        let up = db::wait_for(Duration::from_secs(15), || {
            (r.cli(&["PING"]).ok()?.trim() == "PONG").then_some(())
        });
        let outcome = match up {
            None => Some(format!(
                "the restored server did not start: {}",
                r.log()
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
            Some(()) if r.keys_upto(before) < before => Some(format!(
                "{} of {before} keys written before the copy are missing",
                before - r.keys_upto(before)
            )),
            Some(()) => None,
        };
        r.shutdown();
        if let Some(why) = outcome {
            eprintln!("MEASURE redis fsb control: round {round}: {why}");
            return;
        }
    }
    panic!(
        "the live AOF copy without hooks came back whole in 5 rounds: the control shows nothing"
    );
}

/// Copy time of a realistic data set, against the hold bound (VHI_REDIS_MEASURE=1; size in MB
/// by VHI_REDIS_MEASURE_MB, default 512).
#[test]
fn measure_fsb_copy_redis() {
    if std::env::var_os("VHI_REDIS_MEASURE").is_none() || !db_redis::available() {
        eprintln!("measure_fsb_copy_redis: set VHI_REDIS_MEASURE=1 to run");
        return;
    }
    let mb: u64 = std::env::var("VHI_REDIS_MEASURE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let s = RedisServer::start(Mode::Aof, Some(PW));
    // 1000 bytes of hex per key: the RDB base file's compression cannot shrink it.
    let script = "local b=tonumber(ARGV[1]) for i=b+1,b+1000 do local v={} for j=1,25 do v[j]=redis.sha1hex(i..':'..j) end redis.call('SET','big:'..i,table.concat(v)) end return 1";
    for m in 0..mb {
        s.cli(&["EVAL", script, "0", &(m * 1000).to_string()])
            .expect("fill");
    }
    // Most of the data in the base file, as on a server that has run a while (a rewrite the
    // server started itself may be running: then that one does it).
    let _ = s.cli(&["BGREWRITEAOF"]);
    db::wait_for(Duration::from_secs(600), || {
        (s.info("aof_rewrite_in_progress") == "0").then_some(())
    })
    .expect("rewrite done");
    let w = s.writer();
    let c = s.container();
    let pre = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
    pre.assert_ok("pre");
    let t = std::time::Instant::now();
    let r = s.fsb_copy(Duration::ZERO);
    let copy = t.elapsed();
    let post = run_hook(&tpl(), Phase::Post, &c).expect("post");
    post.assert_ok("post");
    w.stop();
    let bytes: u64 = files(&r.data)
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    // kopia also hashes every byte (and encrypts, and uploads): a read-and-hash pass of the
    // copy, a lower bound for its cost on this machine.
    let t = std::time::Instant::now();
    db::sh(
        Command::new("sh")
            .arg("-c")
            .arg("tar -C \"$1\" -cf - . | sha256sum")
            .arg("sh")
            .arg(&r.data),
    )
    .expect("tar | sha256sum");
    let hashed = t.elapsed();
    let rate = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    eprintln!(
        "MEASURE redis fsb copy: {bytes} bytes, file-by-file copy {copy:?} ({:.0} MB/s), read+sha256 {hashed:?} ({:.0} MB/s), pre {:?}, post {:?}",
        rate(copy),
        rate(hashed),
        pre.elapsed,
        post.elapsed
    );
}

/// (7) bad copies: each broken restore makes the hook fail within its deadline, saying why.
fn restore_hook_bad(bin: &'static str) {
    if !db_redis::available() || (bin == db_redis::VALKEY_SERVER && !db_redis::valkey_available()) {
        return;
    }
    let s = RedisServer::start_on(bin, Mode::Rdb, Some(PW));
    fill(&s, 500);
    run_hook(&tpl(), Phase::Pre, &s.container())
        .expect("pre")
        .assert_ok("pre");
    // A corrupt dump.rdb: the server refuses to start.
    let mut r = s.snapshot();
    std::fs::write(
        r.data.join("dump.rdb"),
        b"REDIS0011\xfa garbage, not an RDB",
    )
    .expect("corrupt");
    let run = restore_hook_racing(&mut r, None, "6");
    run.assert_fails_with("corrupt dump.rdb", "not up within 6s");
    assert!(run.elapsed < Duration::from_secs(20), "{run}");
    // An AOF copy without its base file (the manifest names a file that is gone).
    let a = RedisServer::start_on(bin, Mode::Aof, Some(PW));
    fill(&a, 100);
    let mut r = a.snapshot();
    let aof = r.data.join("appendonlydir");
    let mut removed = 0;
    for e in std::fs::read_dir(&aof).expect("appendonlydir").flatten() {
        if e.file_name().to_string_lossy().contains(".base.") {
            std::fs::remove_file(e.path()).expect("rm base");
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "one AOF base file in {}", aof.display());
    let run = restore_hook_racing(&mut r, None, "6");
    run.assert_fails_with("AOF without its base file", "not up within 6s");
    // An empty volume with persistence on.
    let fresh = RedisServer::start_on(bin, Mode::Rdb, Some(PW));
    run_hook(
        &tpl(),
        Phase::Restore,
        &fresh.container().with("VHI_RESTORE_WAIT_SECONDS", "6"),
    )
    .expect("hook")
    .assert_fails_with("empty volume", "came back empty");
}

mod s7_restore_hook {
    use super::Mode;
    use super::db_redis::{REDIS_SERVER, VALKEY_SERVER};
    #[test]
    fn redis_aof_good_copy() {
        super::restore_hook_good(REDIS_SERVER, Mode::Aof)
    }
    #[test]
    fn redis_rdb_good_copy() {
        super::restore_hook_good(REDIS_SERVER, Mode::Rdb)
    }
    #[test]
    fn redis_bad_copy() {
        super::restore_hook_bad(REDIS_SERVER)
    }
    #[test]
    fn valkey_aof_good_copy() {
        super::restore_hook_good(VALKEY_SERVER, Mode::Aof)
    }
    #[test]
    fn valkey_rdb_good_copy() {
        super::restore_hook_good(VALKEY_SERVER, Mode::Rdb)
    }
    #[test]
    fn valkey_bad_copy() {
        super::restore_hook_bad(VALKEY_SERVER)
    }
}

/// Valkey 8 under the backup hooks: pre/post in both persistence modes.
mod valkey {
    use super::Mode;
    use super::db_redis::{self, RedisServer, VALKEY_SERVER};
    fn pre_post(mode: Mode) {
        if !db_redis::valkey_available() {
            return;
        }
        let s = RedisServer::start_on(VALKEY_SERVER, mode, Some(super::PW));
        super::fill(&s, 200);
        let r = super::run_hook(&super::tpl(), super::Phase::Pre, &s.container()).expect("pre");
        r.assert_ok("pre on valkey");
        match mode {
            Mode::Aof => assert_eq!(s.config("auto-aof-rewrite-percentage"), "0"),
            _ => assert!(r.stdout.contains("RDB mode"), "{r}"),
        }
        super::run_hook(&super::tpl(), super::Phase::Post, &s.container())
            .expect("post")
            .assert_ok("post on valkey");
        assert_eq!(s.config("auto-aof-rewrite-percentage"), "100");
    }
    #[test]
    fn s1_pre_post_aof() {
        pre_post(Mode::Aof)
    }
    #[test]
    fn s1_pre_post_rdb() {
        pre_post(Mode::Rdb)
    }
}

mod aof {
    use super::Mode;
    #[test]
    fn s6_busybox_userland() {
        super::busybox_userland(Mode::Aof)
    }
    #[test]
    fn s1_pre_post_succeed() {
        super::pre_post_succeed(Mode::Aof)
    }
    #[test]
    fn s2_rewrite_paused_and_restored() {
        super::aof_effect()
    }
    #[test]
    fn s3_restore_from_snapshot() {
        super::restore_from_snapshot(Mode::Aof)
    }
    #[test]
    fn s4_failures_are_loud() {
        super::failures_are_loud(Mode::Aof)
    }
    #[test]
    fn s5_idempotent() {
        super::idempotent(Mode::Aof)
    }
    #[test]
    fn s10_fsb_copy_with_hooks() {
        super::fsb_copy_with_hooks()
    }
    #[test]
    fn s11_control_fsb_copy_without_hooks() {
        super::fsb_copy_without_hooks_is_unsafe()
    }
}

mod rdb {
    use super::Mode;
    #[test]
    fn s6_busybox_userland() {
        super::busybox_userland(Mode::Rdb)
    }
    #[test]
    fn s1_pre_post_succeed() {
        super::pre_post_succeed(Mode::Rdb)
    }
    #[test]
    fn s2_fresh_dump() {
        super::rdb_effect()
    }
    #[test]
    fn s3_restore_from_snapshot() {
        super::restore_from_snapshot(Mode::Rdb)
    }
    #[test]
    fn s4_failures_are_loud() {
        super::failures_are_loud(Mode::Rdb)
    }
    #[test]
    fn s5_idempotent() {
        super::idempotent(Mode::Rdb)
    }
}

mod no_persistence {
    use super::Mode;
    #[test]
    fn s6_busybox_userland() {
        super::busybox_userland(Mode::None)
    }
    #[test]
    fn s1_pre_post_succeed_cache_only() {
        super::pre_post_succeed(Mode::None)
    }
    #[test]
    fn s3_restore_is_empty() {
        super::restore_from_snapshot(Mode::None)
    }
    #[test]
    fn s4_failures_are_loud() {
        super::failures_are_loud(Mode::None)
    }
    #[test]
    fn s5_idempotent() {
        super::idempotent(Mode::None)
    }
}

/// The deployments of the Bitnami redis and valkey charts (issue "Real deployments"): a
/// non-default port, TLS only (with and without client certificates), a replica. Each with
/// the container env the chart renders ([`RedisServer::chart_container`]), through backup
/// (pre, an atomic snapshot and a file-by-file copy, post) and restore (a fresh server on each
/// copy, the restore hook).
mod deployments {
    use std::time::Duration;

    use super::db::{self, Container, HookRun, Phase, run_hook};
    use super::db_redis::{self, Mode, REDIS_SERVER, RedisServer, Shape, Tls, VALKEY_SERVER};
    use super::{PW, fill, tpl};

    fn have(bin: &str) -> bool {
        db_redis::available()
            && (bin != VALKEY_SERVER || db_redis::valkey_available())
            && db::have(
                std::path::Path::new("/usr/bin/openssl"),
                "openssl (test certificates)",
            )
    }

    /// Runs the restore hook in `c` while `r` is launched a second later, as Velero runs it
    /// while the restored pod starts.
    fn restore_racing(r: &mut RedisServer, c: Container) -> HookRun {
        let t = tpl();
        let h = std::thread::spawn(move || run_hook(&t, Phase::Restore, &c).expect("hook"));
        std::thread::sleep(Duration::from_secs(1));
        r.launch(None);
        h.join().expect("hook thread")
    }

    fn name(bin: &str) -> &'static str {
        if bin == VALKEY_SERVER {
            "Valkey 8"
        } else {
            "Redis 7"
        }
    }

    /// Backup then restore of `s` as its chart deploys it: pre (its effect checked), an atomic
    /// snapshot and a file-by-file copy, post; each copy restored into a fresh server of the
    /// same shape, where the restore hook passes and counts every key written before pre.
    fn backup_and_restore(s: &RedisServer, what: &str) {
        let c = s.chart_container();
        fill(s, 1000);
        let w = s.writer();
        assert!(w.progresses(3, Duration::from_secs(10)), "{what}: writes");
        let l0 = s.lastsave();
        std::thread::sleep(Duration::from_millis(1100));
        let before_pre = w.committed();
        let pre = run_hook(&tpl(), Phase::Pre, &c).expect("pre");
        pre.assert_ok(&format!("{what}: pre"));
        // The AOF holds every write before the copy; a dump.rdb those before BGSAVE forked.
        let before = match s.mode {
            Mode::Aof => w.committed(),
            _ => before_pre,
        };
        match s.mode {
            Mode::Aof => assert_eq!(s.config("auto-aof-rewrite-percentage"), "0", "{what}"),
            _ => assert!(s.lastsave() > l0, "{what}: no fresh dump.rdb"),
        }
        let mut snap = s.snapshot();
        let mut fsb = s.fsb_copy(Duration::from_millis(50));
        run_hook(&tpl(), Phase::Post, &c)
            .expect("post")
            .assert_ok(&format!("{what}: post"));
        assert_eq!(s.config("auto-aof-rewrite-percentage"), "100", "{what}");
        w.stop();
        for (copy, r) in [("snapshot", &mut snap), ("file-by-file copy", &mut fsb)] {
            let rc = r.chart_container().with("VHI_RESTORE_WAIT_SECONDS", "60");
            let run = restore_racing(r, rc);
            run.assert_ok(&format!("{what}: restore hook on the {copy}"));
            assert!(run.stdout.contains(name(s.bin)), "{run}");
            assert!(run.stdout.contains("db0="), "{run}");
            assert_eq!(r.keys_upto(before), before, "{what}: {copy} lost keys");
            eprintln!("MEASURE redis {what} {copy}: {}", run.stdout.trim());
        }
    }

    /// A non-default port given as the chart gives it (REDIS_PORT / VALKEY_PORT, all digits);
    /// the control: the service-link form of REDIS_PORT is not a port.
    fn custom_port(bin: &'static str, mode: Mode) {
        if !have(bin) {
            return;
        }
        let s = RedisServer::start_on(bin, mode, Some(PW));
        assert_ne!(s.port, 6379);
        backup_and_restore(&s, &format!("{bin} {mode:?} port {}", s.port));
        let p = if bin == VALKEY_SERVER {
            "VALKEY_PORT"
        } else {
            "REDIS_PORT"
        };
        let link = s.chart_container().with(p, "tcp://10.96.0.14:6379");
        run_hook(&tpl(), Phase::Pre, &link)
            .expect("pre")
            .assert_fails_with("service link, not a port", "127.0.0.1:6379");
    }

    /// TLS only (`--port 0 --tls-port N`) with tls-auth-clients yes or no; the controls: a
    /// plain connection, no client certificate where one is required, a wrong password and a
    /// wrong CA (the last two fail the restore hook at once, not at its deadline).
    fn tls_only(bin: &'static str, mode: Mode, auth_clients: bool) {
        if !have(bin) {
            return;
        }
        let shape = Shape {
            tls: Some(Tls::generate(auth_clients)),
            replica_of: None,
        };
        let s = RedisServer::start_shaped(bin, mode, Some(PW), shape);
        backup_and_restore(
            &s,
            &format!("{bin} {mode:?} TLS auth-clients {auth_clients}"),
        );
        let c = s.chart_container();
        let p = if bin == VALKEY_SERVER {
            "VALKEY"
        } else {
            "REDIS"
        };
        let plain = c.clone().with(&format!("{p}_TLS_ENABLED"), "no");
        run_hook(&tpl(), Phase::Pre, &plain)
            .expect("pre")
            .assert_fails_with("plain text to a TLS-only server", "cannot use redis");
        let mut no_cert = c.clone();
        no_cert.unset(&format!("{p}_TLS_CERT_FILE"));
        let r = run_hook(&tpl(), Phase::Pre, &no_cert).expect("pre");
        assert_eq!(r.ok(), !auth_clients, "no client certificate: {r}");
        let slow = c.clone().with("VHI_RESTORE_WAIT_SECONDS", "600");
        let r = run_hook(
            &tpl(),
            Phase::Restore,
            &slow.clone().with(&format!("{p}_PASSWORD"), "wrong"),
        )
        .expect("restore");
        r.assert_fails_with("wrong password", "refused the password");
        assert!(r.elapsed < Duration::from_secs(10), "not at once: {r}");
        eprintln!(
            "MEASURE redis {bin} TLS wrong password: restore hook failed in {:?}",
            r.elapsed
        );
        let other = Tls::generate(auth_clients);
        let r = run_hook(
            &tpl(),
            Phase::Restore,
            &slow.with(&format!("{p}_TLS_CA_FILE"), &other.file("ca.crt")),
        )
        .expect("restore");
        r.assert_fails_with("wrong CA", "verify failed");
        assert!(r.elapsed < Duration::from_secs(10), "not at once: {r}");
        eprintln!(
            "MEASURE redis {bin} TLS wrong CA: restore hook failed in {:?}",
            r.elapsed
        );
    }

    /// A replica as the chart's replicas StatefulSet deploys it: the backup hooks act on the
    /// replica itself; restored with its primary, the restore hook reports the replica and its
    /// link; an empty replica volume is re-cloned from the restored primary and passes; a
    /// replica whose primary never comes back fails at the hook's deadline, saying so.
    fn replica(bin: &'static str, mode: Mode, tls: bool) {
        if !have(bin) {
            return;
        }
        // With TLS, as the chart does: both servers TLS-only with the same CA, the replication
        // link over TLS (tls-replication yes).
        let tls = tls.then(|| Tls::generate(true));
        let primary = Shape {
            tls: tls.clone(),
            replica_of: None,
        };
        let p = RedisServer::start_shaped(bin, mode, Some(PW), primary);
        fill(&p, 3000);
        let shape = Shape {
            tls: tls.clone(),
            replica_of: Some(p.port),
        };
        let r = RedisServer::start_shaped(bin, mode, Some(PW), shape);
        db::wait_for(Duration::from_secs(30), || {
            (r.replication("master_link_status") == "up").then_some(())
        })
        .expect("control: the replica syncs");
        let pc = p.chart_container();
        let rc = r.chart_container();
        let w = p.writer();
        assert!(w.progresses(3, Duration::from_secs(10)), "writes");
        let before = w.committed();
        db::wait_for(Duration::from_secs(10), || {
            (r.keys_upto(before) == before).then_some(())
        })
        .expect("control: the replica has the writes");
        run_hook(&tpl(), Phase::Pre, &pc)
            .expect("pre")
            .assert_ok("primary pre");
        let pre = run_hook(&tpl(), Phase::Pre, &rc).expect("pre");
        pre.assert_ok("replica pre");
        match mode {
            Mode::Aof => assert_eq!(r.config("auto-aof-rewrite-percentage"), "0"),
            _ => assert!(pre.stdout.contains("RDB mode"), "{pre}"),
        }
        let mut ps = p.snapshot();
        let mut rs = r.snapshot();
        for c in [&pc, &rc] {
            run_hook(&tpl(), Phase::Post, c)
                .expect("post")
                .assert_ok("post");
        }
        w.stop();
        assert_eq!(r.config("auto-aof-rewrite-percentage"), "100");
        ps.launch(None);
        rs.shape.replica_of = Some(ps.port);
        let c = rs.chart_container();
        let run = restore_racing(&mut rs, c);
        run.assert_ok("restore hook on the restored replica");
        let link = format!("replica of 127.0.0.1:{}, link up", ps.port);
        assert!(
            run.stdout.contains(&link) && run.stdout.contains("db0="),
            "{run}"
        );
        assert_eq!(rs.keys_upto(before), before);
        let t = if rs.shape.tls.is_some() { "TLS " } else { "" };
        eprintln!(
            "MEASURE redis {bin} {mode:?} {t}replica restore: {}",
            run.stdout.trim()
        );
        let pr = run_hook(&tpl(), Phase::Restore, &ps.chart_container()).expect("restore");
        pr.assert_ok("restore hook on the restored primary");
        assert!(pr.stdout.contains("primary"), "{pr}");
        // An empty replica volume: the server re-clones it from the primary.
        let shape = Shape {
            tls,
            replica_of: Some(ps.port),
        };
        let mut empty = RedisServer::start_shaped(bin, mode, Some(PW), shape.clone());
        empty.shutdown();
        std::fs::remove_dir_all(&empty.data).expect("rm");
        std::fs::create_dir_all(&empty.data).expect("mkdir");
        let c = empty.chart_container();
        let run = restore_racing(&mut empty, c);
        run.assert_ok("restore hook on an empty replica volume");
        assert_eq!(empty.keys_upto(before), before, "not re-cloned");
        eprintln!(
            "MEASURE redis {bin} {mode:?} empty replica: {}",
            run.stdout.trim()
        );
        // The primary never comes back.
        let mut orphan = rs.snapshot();
        orphan.shape.replica_of = Some(db::free_port());
        let c = orphan
            .chart_container()
            .with("VHI_RESTORE_WAIT_SECONDS", "8");
        let run = restore_racing(&mut orphan, c);
        run.assert_fails_with("no primary", "link to the primary was not up within 8s");
    }

    /// The Bitnami image's own names (no chart): REDIS_TLS_PORT_NUMBER, and the CA as a
    /// directory (REDIS_TLS_CA_DIR, hashed as OpenSSL looks it up), on Valkey's VALKEY_ names.
    #[test]
    fn image_env_tls_port_number_and_ca_dir() {
        for bin in [REDIS_SERVER, VALKEY_SERVER] {
            if !have(bin) {
                continue;
            }
            let shape = Shape {
                tls: Some(Tls::generate(true)),
                replica_of: None,
            };
            let s = RedisServer::start_shaped(bin, Mode::Aof, Some(PW), shape);
            let t = s.shape.tls.as_ref().expect("tls");
            let cadir = t.dir.path().join("cadir");
            std::fs::create_dir_all(&cadir).expect("cadir");
            std::fs::copy(t.dir.path().join("ca.crt"), cadir.join("ca.pem")).expect("copy");
            db::sh(
                std::process::Command::new("openssl")
                    .arg("rehash")
                    .arg(&cadir),
            )
            .expect("openssl rehash");
            let p = if bin == VALKEY_SERVER {
                "VALKEY"
            } else {
                "REDIS"
            };
            let mut c = s.chart_container();
            c.unset(&format!("{p}_TLS_PORT"));
            c.unset(&format!("{p}_TLS_CA_FILE"));
            c.set(&format!("{p}_TLS_PORT_NUMBER"), &s.port.to_string());
            c.set(&format!("{p}_TLS_CA_DIR"), &cadir.display().to_string());
            for phase in [Phase::Pre, Phase::Post, Phase::Restore] {
                run_hook(
                    &tpl(),
                    phase,
                    &c.clone().with("VHI_RESTORE_ALLOW_EMPTY", "1"),
                )
                .expect("hook")
                .assert_ok(&format!("{bin} {phase:?} with REDIS_TLS_CA_DIR"));
            }
        }
    }

    #[test]
    fn redis_custom_port_aof() {
        custom_port(REDIS_SERVER, Mode::Aof)
    }
    #[test]
    fn redis_custom_port_rdb() {
        custom_port(REDIS_SERVER, Mode::Rdb)
    }
    #[test]
    fn valkey_custom_port_aof() {
        custom_port(VALKEY_SERVER, Mode::Aof)
    }
    #[test]
    fn valkey_custom_port_rdb() {
        custom_port(VALKEY_SERVER, Mode::Rdb)
    }
    #[test]
    fn redis_tls_only_aof_client_certs() {
        tls_only(REDIS_SERVER, Mode::Aof, true)
    }
    #[test]
    fn redis_tls_only_rdb_client_certs() {
        tls_only(REDIS_SERVER, Mode::Rdb, true)
    }
    #[test]
    fn redis_tls_only_aof_no_client_certs() {
        tls_only(REDIS_SERVER, Mode::Aof, false)
    }
    #[test]
    fn redis_tls_only_rdb_no_client_certs() {
        tls_only(REDIS_SERVER, Mode::Rdb, false)
    }
    #[test]
    fn valkey_tls_only_aof_client_certs() {
        tls_only(VALKEY_SERVER, Mode::Aof, true)
    }
    #[test]
    fn valkey_tls_only_rdb_client_certs() {
        tls_only(VALKEY_SERVER, Mode::Rdb, true)
    }
    #[test]
    fn valkey_tls_only_aof_no_client_certs() {
        tls_only(VALKEY_SERVER, Mode::Aof, false)
    }
    #[test]
    fn valkey_tls_only_rdb_no_client_certs() {
        tls_only(VALKEY_SERVER, Mode::Rdb, false)
    }
    #[test]
    fn redis_replica_aof() {
        replica(REDIS_SERVER, Mode::Aof, false)
    }
    #[test]
    fn redis_replica_rdb() {
        replica(REDIS_SERVER, Mode::Rdb, false)
    }
    #[test]
    fn valkey_replica_aof() {
        replica(VALKEY_SERVER, Mode::Aof, false)
    }
    #[test]
    fn valkey_replica_rdb() {
        replica(VALKEY_SERVER, Mode::Rdb, false)
    }
    #[test]
    fn redis_replica_tls_aof() {
        replica(REDIS_SERVER, Mode::Aof, true)
    }
    #[test]
    fn valkey_replica_tls_rdb() {
        replica(VALKEY_SERVER, Mode::Rdb, true)
    }
}
