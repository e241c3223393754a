//! Shared harness for the database hook tests: runs a template's hooks exactly as Velero would
//! (argv from the rendered annotation, no implicit shell, the container's environment only, stdin
//! closed, stdout/stderr read to EOF, the annotation's timeout), a concurrent writer, process
//! helpers, and the skip/require policy for missing server binaries.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use velero_hook_injector::hooks::template::{Library, Template};
use velero_hook_injector::hooks::velero;

/// PATH inside the simulated container. Debian's PostgreSQL 15 client directory comes first so
/// `psql` is the real client, not the pg_wrapper script.
pub const CONTAINER_PATH: &str =
    "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// True when CI demands that every database test really runs.
pub fn required() -> bool {
    std::env::var("VHI_REQUIRE_DB_TESTS").is_ok_and(|v| v == "1")
}

/// Returns true when `path` exists; otherwise skips loudly (or panics when required).
pub fn have(path: &Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    if required() {
        panic!(
            "VHI_REQUIRE_DB_TESTS=1 but {what} is missing at {}; run tests/db/setup.sh",
            path.display()
        );
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} not found at {} (run tests/db/setup.sh; set VHI_REQUIRE_DB_TESTS=1 to make this a failure) !!!!!!!!\n",
        path.display()
    );
    false
}

/// The built-in template called `name`.
pub fn template(name: &str) -> Template {
    Library::builtin()
        .expect("built-in library loads")
        .get(name)
        .unwrap_or_else(|| panic!("no built-in template {name}"))
        .clone()
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

/// Which hook of a template to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pre.hook.backup.velero.io/*`
    Pre,
    /// `post.hook.backup.velero.io/*`
    Post,
    /// `post.hook.restore.velero.io/*`
    Restore,
}

impl Phase {
    fn prefix(self) -> &'static str {
        match self {
            Phase::Pre => velero::PRE_BACKUP,
            Phase::Post => velero::POST_BACKUP,
            Phase::Restore => velero::POST_RESTORE,
        }
    }
    fn timeout_key(self) -> &'static str {
        match self {
            Phase::Restore => "exec-timeout",
            _ => "timeout",
        }
    }
}

/// The simulated database container: its name and environment (what `kubectl exec` would see).
#[derive(Debug, Clone)]
pub struct Container {
    /// Container name put into the `/container` annotation.
    pub name: String,
    /// Environment variables of the container (besides PATH).
    pub env: BTreeMap<String, String>,
    /// Private /tmp of this container (TMPDIR), so parallel tests do not share hook state.
    pub tmp: PathBuf,
}

impl Container {
    /// A container with its own temp dir under `root`.
    pub fn new(root: &Path) -> Self {
        let tmp = root.join("container-tmp");
        std::fs::create_dir_all(&tmp).expect("container tmp");
        let mut env = BTreeMap::new();
        env.insert("TMPDIR".to_owned(), tmp.display().to_string());
        // Restore checks copy their result line to /proc/1/fd/1 (lib/podlog.sh): here PID 1 is
        // the test machine's init, not a database container.
        env.insert("VHI_PODLOG".to_owned(), "/dev/null".to_owned());
        Container {
            name: "db".to_owned(),
            env,
            tmp,
        }
    }

    /// Builder-style setter of one environment variable.
    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_owned(), v.to_owned());
        self
    }

    /// Sets one environment variable.
    pub fn set(&mut self, k: &str, v: &str) {
        self.env.insert(k.to_owned(), v.to_owned());
    }

    /// Removes one environment variable.
    pub fn unset(&mut self, k: &str) {
        self.env.remove(k);
    }
}

/// What one hook exec produced.
#[derive(Debug, Clone)]
pub struct HookRun {
    /// The argv that ran (from the annotation).
    pub argv: Vec<String>,
    /// Exit code; None when killed or timed out.
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Time until the exit status AND end-of-file on both streams (what kubectl exec waits for).
    pub elapsed: Duration,
    /// The annotation's timeout.
    pub timeout: Duration,
    /// True when the exec did not finish (exit + EOF) within the timeout.
    pub timed_out: bool,
}

impl HookRun {
    /// Exit 0 within the timeout.
    pub fn ok(&self) -> bool {
        !self.timed_out && self.code == Some(0)
    }

    /// Panics with the full output unless the hook succeeded.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(self.ok(), "{what}: expected success, got {self}");
        self
    }

    /// Panics unless the hook failed loudly: non-zero exit, within the timeout, with a message
    /// on stderr containing `needle` (case-insensitive).
    pub fn assert_fails_with(&self, what: &str, needle: &str) -> &Self {
        assert!(
            !self.timed_out,
            "{what}: hook hung instead of failing: {self}"
        );
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "{what}: expected a non-zero exit, got {self}"
        );
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: stderr does not explain the failure (wanted {needle:?}): {self}"
        );
        self
    }
}

impl std::fmt::Display for HookRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit={:?} timed_out={} elapsed={:?} (timeout {:?})\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.timed_out, self.elapsed, self.timeout, self.stdout, self.stderr
        )
    }
}

/// Runs `phase` of `t` in `c` the way Velero does; None when the template has no such hook.
pub fn run_hook(t: &Template, phase: Phase, c: &Container) -> Option<HookRun> {
    let ann = t.annotations(&c.name);
    let p = phase.prefix();
    let command = ann.get(&format!("{p}command"))?;
    assert_eq!(
        ann.get(&format!("{p}container")),
        Some(&c.name),
        "the container annotation must name the database container"
    );
    let on_error = &ann[&format!("{p}on-error")];
    assert!(
        on_error == "Fail" || on_error == "Continue",
        "on-error must be exactly Fail or Continue, got {on_error:?}"
    );
    let timeout_text = &ann[&format!("{p}{}", phase.timeout_key())];
    let timeout = velero::parse_go_duration(timeout_text)
        .unwrap_or_else(|| panic!("timeout {timeout_text:?} is not a Go duration"));
    assert!(timeout > Duration::ZERO, "timeout must be positive");
    let argv = velero::parse_command(command);
    assert!(
        command.starts_with('[') && serde_json::from_str::<Vec<String>>(command).is_ok(),
        "command must be a compact JSON array Velero turns into argv: {command}"
    );
    Some(exec(argv, &c.env, timeout))
}

/// Like [`run_hook`] but in an Alpine-like userland: `/bin/sh` is BusyBox ash and BusyBox
/// applets (sed, tr, sleep, setsid, ...) come first on PATH, before the container's own PATH
/// (its database clients). None when the template has no such hook or BusyBox is missing (skip
/// policy applied).
pub fn run_hook_busybox(t: &Template, phase: Phase, c: &Container) -> Option<HookRun> {
    static APPLETS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if !have(
        Path::new("/usr/bin/busybox"),
        "busybox (Alpine shell stand-in)",
    ) {
        return None;
    }
    let dir = APPLETS.get_or_init(|| {
        // Shared and reused: `busybox --install -s` is idempotent, and cargo runs test
        // binaries one after another.
        let d = std::env::temp_dir().join("vhi-busybox-applets");
        std::fs::create_dir_all(&d).expect("applet dir");
        sh(Command::new("/usr/bin/busybox")
            .arg("--install")
            .arg("-s")
            .arg(&d))
        .expect("busybox --install");
        d
    });
    let mut alpine = c.clone();
    let path = c.env.get("PATH").map_or(CONTAINER_PATH, String::as_str);
    alpine.set("PATH", &format!("{}:{path}", dir.display()));
    let ann = t.annotations(&c.name);
    let p = phase.prefix();
    let command = ann.get(&format!("{p}command"))?;
    let timeout =
        velero::parse_go_duration(&ann[&format!("{p}{}", phase.timeout_key())]).expect("timeout");
    let mut argv = velero::parse_command(command);
    if argv[0] == "/bin/sh" {
        argv.splice(0..1, ["/usr/bin/busybox".to_owned(), "sh".to_owned()]);
    }
    Some(exec(argv, &alpine.env, timeout))
}

/// Runs argv with env_clear() + PATH + `env`, stdin closed, reading both streams to EOF, and
/// gives up after `timeout` (as Velero's exec does: it reports a failure; the process may live on).
pub fn exec(argv: Vec<String>, env: &BTreeMap<String, String>, timeout: Duration) -> HookRun {
    let start = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", CONTAINER_PATH)
        .envs(env) // a container-specific PATH in `env` wins
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot exec {:?}: {e}", argv[0]));
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let streams: [(bool, Option<Box<dyn Read + Send>>); 2] = [
        (
            true,
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ];
    for (is_out, stream) in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut buf);
            }
            let _ = tx.send((is_out, String::from_utf8_lossy(&buf).into_owned()));
        });
    }
    drop(tx);
    let deadline = start + timeout;
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, s)) => stdout = Some(s),
            Ok((false, s)) => stderr = Some(s),
            Err(_) => break,
        }
    }
    let mut code = None;
    let mut timed_out = stdout.is_none() || stderr.is_none();
    while !timed_out {
        match child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                break;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => timed_out = true,
        }
    }
    let elapsed = start.elapsed();
    if timed_out {
        let _ = child.kill();
    }
    let _ = child.wait();
    HookRun {
        argv,
        code,
        stdout: stdout.unwrap_or_else(|| "<no EOF on stdout: output still held open>\n".into()),
        stderr: stderr.unwrap_or_else(|| "<no EOF on stderr: output still held open>\n".into()),
        elapsed,
        timeout,
        timed_out,
    }
}

/// Runs a helper command to completion and returns stdout, or Err(stderr+stdout).
pub fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{:?} exited {:?}: {}{}",
            cmd.get_program(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Sends `sig` (e.g. "STOP", "CONT", "KILL") to the process group `pgid`.
pub fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stderr(Stdio::null())
        .status();
}

/// Sends `sig` to one process.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Copies `src` to `dst` (`cp -a`) while the server's process group is stopped, which stands in
/// for an atomic volume snapshot (crash-consistent point in time).
pub fn snapshot_copy(server_pgid: u32, src: &Path, dst: &Path) {
    signal_group(server_pgid, "STOP");
    let r = sh(Command::new("cp").arg("-a").arg(src).arg(dst));
    signal_group(server_pgid, "CONT");
    r.expect("copy data dir");
}

/// Velero's file-system backup stand-in: copies `src` to `dst` FILE BY FILE while the server
/// runs (no freeze, as kopia does), in directory order, pausing `pause` after each file so that
/// the copy spans the time a real one over a network would. Files that vanish mid-walk (WAL
/// recycled, temp files) are skipped as kopia skips them. Returns the number of files copied.
pub fn fsb_copy(src: &Path, dst: &Path, pause: Duration) -> usize {
    fn walk(src: &Path, dst: &Path, pause: Duration, n: &mut usize) {
        std::fs::create_dir_all(dst).expect("mkdir in the copy");
        let Ok(rd) = std::fs::read_dir(src) else {
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let (from, to) = (e.path(), dst.join(e.file_name()));
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&from, &to, pause, n),
                Ok(t) if t.is_file() && std::fs::copy(&from, &to).is_ok() => {
                    *n += 1;
                    std::thread::sleep(pause);
                }
                _ => {}
            }
        }
    }
    let mut n = 0;
    walk(src, dst, pause, &mut n);
    n
}

/// Waits for `f` to return Some, polling every 100 ms, up to `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process we started, killed (whole process group) on drop.
pub struct Proc {
    /// The child (its pid is also its process group id).
    pub child: Child,
}

impl Proc {
    /// Spawns `cmd` in its own process group.
    pub fn spawn(cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child }
    }

    /// Process (group) id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` to the process and waits up to 30 s for it to exit, then kills the group.
    pub fn stop(&mut self, sig: &str) {
        if !self.alive() {
            return;
        }
        signal(self.pid(), sig);
        if wait_for(Duration::from_secs(30), || (!self.alive()).then_some(())).is_none() {
            signal_group(self.pid(), "KILL");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        signal_group(self.pid(), "CONT");
        signal_group(self.pid(), "KILL");
        let _ = self.child.wait();
    }
}

/// A thread committing numbered rows/keys 1, 2, 3… one at a time until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<(u64, Instant)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the loop; `commit(n)` must return Ok only once row `n` is durably committed.
    pub fn start(mut commit: impl FnMut(u64) -> Result<(), String> + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (s, c, l, e) = (stop.clone(), committed.clone(), log.clone(), errors.clone());
        let handle = std::thread::spawn(move || {
            let mut n = 1;
            while !s.load(Ordering::SeqCst) {
                match commit(n) {
                    Ok(()) => {
                        c.store(n, Ordering::SeqCst);
                        l.lock().expect("log").push((n, Instant::now()));
                        n += 1;
                    }
                    Err(err) => {
                        e.lock().expect("errors").push(err);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
        let w = Writer {
            stop,
            committed,
            log,
            errors,
            handle: Some(handle),
        };
        assert!(
            wait_for(Duration::from_secs(20), || (w.committed() >= 5)
                .then_some(()))
            .is_some(),
            "writer made no progress: {:?}",
            w.errors()
        );
        w
    }

    /// Highest row number known committed (rows 1..=n all are).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Commits whose completion was observed in [a, b].
    pub fn commits_between(&self, a: Instant, b: Instant) -> usize {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|(_, t)| *t >= a && *t <= b)
            .count()
    }

    /// Errors seen so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors").clone()
    }

    /// Waits until at least `more` further commits happened, up to `limit`; true on success.
    pub fn progresses(&self, more: u64, limit: Duration) -> bool {
        let from = self.committed();
        wait_for(limit, || (self.committed() >= from + more).then_some(())).is_some()
    }

    /// Stops the loop and returns the last committed number.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.committed()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Root of the npm-installed PostgreSQL matrix (`tests/db/setup.sh` fills it).
pub fn pg_matrix_dir() -> PathBuf {
    std::env::var_os("VHI_PG_MATRIX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pg-matrix"))
}
