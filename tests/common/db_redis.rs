//! Throwaway Redis servers (Debian redis-server 7) in AOF, RDB-only and no-persistence modes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::db::{self, Container, Proc};

/// The server binary.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// Valkey 8 (Debian bookworm-backports valkey-server).
pub const VALKEY_SERVER: &str = "/usr/bin/valkey-server";

/// True when Valkey is installed (skip/require policy applied).
pub fn valkey_available() -> bool {
    db::have(
        Path::new(VALKEY_SERVER),
        "valkey-server (bookworm-backports)",
    )
}
const CLI: &str = "/usr/bin/redis-cli";

/// True when the binaries exist (skip/require policy applied).
pub fn available() -> bool {
    db::have(
        Path::new(REDIS_SERVER),
        "redis-server (Debian redis-server)",
    ) && db::have(Path::new(CLI), "redis-cli")
}

/// Persistence mode of a test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// appendonly yes, save "" (the Bitnami chart default).
    Aof,
    /// appendonly no, save "3600 1" (no automatic save during a test).
    Rdb,
    /// appendonly no, save "": a cache.
    None,
}

/// A running throwaway server.
pub struct RedisServer {
    /// Persistence mode.
    pub mode: Mode,
    /// Temp root; removed on drop.
    pub tmp: tempfile::TempDir,
    /// Data dir (`dir`).
    pub data: PathBuf,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// requirepass, if any.
    pub password: Option<String>,
    /// The server binary (Redis or Valkey).
    pub bin: &'static str,
    proc: Option<Proc>,
}

impl RedisServer {
    /// Starts a fresh server.
    pub fn start(mode: Mode, password: Option<&str>) -> Self {
        Self::start_on(REDIS_SERVER, mode, password)
    }

    /// Starts a fresh server of the binary `bin`.
    pub fn start_on(bin: &'static str, mode: Mode, password: Option<&str>) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-redis")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).expect("data");
        let mut s = RedisServer {
            mode,
            tmp,
            data,
            port: 0,
            password: password.map(str::to_owned),
            bin,
            proc: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        self.launch(None);
        let ok = db::wait_for(Duration::from_secs(30), || {
            (self.cli(&["PING"]).ok()?.trim() == "PONG").then_some(())
        });
        assert!(ok.is_some(), "redis did not start: {}", self.log());
    }

    /// Starts the server without waiting; `mode` overrides the persistence settings.
    pub fn launch(&mut self, mode: Option<Mode>) {
        if self.port == 0 {
            self.port = db::free_port();
        }
        let (aof, save) = match mode.unwrap_or(self.mode) {
            Mode::Aof => ("yes", ""),
            Mode::Rdb => ("no", "3600 1"),
            Mode::None => ("no", ""),
        };
        let mut cmd = Command::new(self.bin);
        cmd.args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.data)
            .args(["--appendonly", aof, "--save", save])
            .arg("--logfile")
            .arg(self.tmp.path().join(format!("redis-{}.log", self.port)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        self.proc = Some(Proc::spawn(&mut cmd));
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("redis-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// Runs redis-cli with the password (REDISCLI_AUTH); Err on an error reply.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new(CLI);
        c.args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(args);
        if let Some(pw) = &self.password {
            c.env("REDISCLI_AUTH", pw);
        }
        let out = db::sh(&mut c)?;
        if out.starts_with("ERR") || out.starts_with("NOAUTH") || out.starts_with("WRONGPASS") {
            Err(out)
        } else {
            Ok(out.trim().to_owned())
        }
    }

    /// A field of INFO persistence.
    pub fn info(&self, field: &str) -> String {
        let out = self.cli(&["INFO", "persistence"]).expect("info");
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{field}:"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {field} in INFO persistence"))
    }

    /// CONFIG GET value.
    pub fn config(&self, key: &str) -> String {
        let out = self.cli(&["CONFIG", "GET", key]).expect("config get");
        out.lines().nth(1).unwrap_or("").to_owned()
    }

    /// LASTSAVE.
    pub fn lastsave(&self) -> u64 {
        self.cli(&["LASTSAVE"])
            .expect("lastsave")
            .parse()
            .expect("n")
    }

    /// Count of keys k:1..=upto present.
    pub fn keys_upto(&self, upto: u64) -> u64 {
        // Lua keeps this to one round trip.
        let script = "local c=0 for i=1,tonumber(ARGV[1]) do if redis.call('EXISTS','k:'..i)==1 then c=c+1 end end return c";
        self.cli(&["EVAL", script, "0", &upto.to_string()])
            .expect("eval")
            .parse()
            .expect("n")
    }

    /// A writer doing one SET per redis-cli process.
    pub fn writer(&self) -> db::Writer {
        let (port, pw) = (self.port, self.password.clone());
        db::Writer::start(move |n| {
            let mut c = Command::new(CLI);
            c.args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .args(["SET", &format!("k:{n}"), &n.to_string()]);
            if let Some(pw) = &pw {
                c.env("REDISCLI_AUTH", pw);
            }
            let out = db::sh(&mut c)?;
            if out.trim() == "OK" { Ok(()) } else { Err(out) }
        })
    }

    /// The simulated container: Bitnami-style REDIS_PORT_NUMBER / REDIS_PASSWORD plus the
    /// service-link REDIS_PORT that must be ignored.
    pub fn container(&self) -> Container {
        let mut c = Container::new(self.tmp.path())
            .with("REDIS_PORT_NUMBER", &self.port.to_string())
            .with("REDIS_PORT", "tcp://10.96.0.14:6379");
        if let Some(pw) = &self.password {
            c.set("REDIS_PASSWORD", pw);
        }
        c
    }

    /// Stops the server (server down scenario).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.stop("KILL");
        }
    }

    /// Copies the data dir with the server frozen (atomic-snapshot stand-in) and starts a new
    /// server in the same mode on the copy.
    pub fn restore_from_snapshot(&self) -> RedisServer {
        let mut s = self.snapshot();
        s.spawn();
        s
    }

    /// Velero's file-system backup stand-in ([`db::fsb_copy`]): the data dir copied file by file
    /// while this server runs, `pause` after each file, as a server not started yet.
    pub fn fsb_copy(&self, pause: Duration) -> RedisServer {
        self.copy("vhi-redis-fsb", |from, to| {
            db::fsb_copy(from, to, pause);
        })
    }

    /// The atomic-snapshot copy as a server not started yet (port chosen).
    pub fn snapshot(&self) -> RedisServer {
        let pid = self.proc.as_ref().expect("running").pid();
        self.copy("vhi-redis-restore", |from, to| {
            db::snapshot_copy(pid, from, to)
        })
    }

    /// A server not started yet (port chosen) on a copy of the data dir made by `copy`.
    fn copy(
        &self,
        prefix: &str,
        copy: impl FnOnce(&std::path::Path, &std::path::Path),
    ) -> RedisServer {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        copy(&self.data, &data);
        RedisServer {
            mode: self.mode,
            tmp,
            data,
            port: db::free_port(),
            password: self.password.clone(),
            bin: self.bin,
            proc: None,
        }
    }
}
