//! Throwaway Redis servers (Debian redis-server 7, Valkey 8) in AOF, RDB-only and
//! no-persistence modes, plain or TLS-only, standalone or replica, with the container env the
//! Bitnami image or the Bitnami charts give them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
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

/// Throwaway TLS material, as the Bitnami charts mount it: a CA and one certificate + key for
/// the server (`extendedKeyUsage serverAuth, clientAuth`, as the charts' generated certificates
/// have), named for the pod's DNS name, not for 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The directory holding ca.crt, tls.crt, tls.key.
    pub dir: Arc<tempfile::TempDir>,
    /// tls-auth-clients yes (the chart's default) or no.
    pub auth_clients: bool,
}

impl Tls {
    /// Generates a CA and a server certificate with openssl.
    pub fn generate(auth_clients: bool) -> Tls {
        let dir = tempfile::Builder::new()
            .prefix("vhi-redis-tls")
            .tempdir()
            .expect("tempdir");
        let host = "redis-master-0.redis-headless.default.svc.cluster.local";
        let script = format!(
            "set -e; cd \"$1\"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=vhi-test-ca
openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj /CN={host}
printf 'subjectAltName=DNS:{host}\\nextendedKeyUsage=serverAuth,clientAuth\\n' >ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 2 -extfile ext"
        );
        db::sh(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg("sh")
                .arg(dir.path()),
        )
        .expect("openssl");
        Tls {
            dir: Arc::new(dir),
            auth_clients,
        }
    }

    /// A file of the set (`ca.crt`, `tls.crt`, `tls.key`).
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// How a test server is deployed.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// TLS only (`--port 0 --tls-port N`), as the charts start it with `tls.enabled`.
    pub tls: Option<Tls>,
    /// A replica of the server on this port of 127.0.0.1 (`--replicaof`, `--masterauth`).
    pub replica_of: Option<u16>,
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
    /// TLS and replication.
    pub shape: Shape,
    proc: Option<Proc>,
}

impl RedisServer {
    /// Starts a fresh server.
    pub fn start(mode: Mode, password: Option<&str>) -> Self {
        Self::start_on(REDIS_SERVER, mode, password)
    }

    /// Starts a fresh server of the binary `bin`.
    pub fn start_on(bin: &'static str, mode: Mode, password: Option<&str>) -> Self {
        Self::start_shaped(bin, mode, password, Shape::default())
    }

    /// Starts a fresh server of the binary `bin` deployed as `shape`.
    pub fn start_shaped(
        bin: &'static str,
        mode: Mode,
        password: Option<&str>,
        shape: Shape,
    ) -> Self {
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
            shape,
            proc: None,
        };
        s.spawn();
        s
    }

    /// Starts the server and waits until it answers PING.
    pub fn spawn(&mut self) {
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
        cmd.args(["--bind", "127.0.0.1", "--daemonize", "no"]);
        match &self.shape.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(t) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &t.file("tls.crt")])
                .args(["--tls-key-file", &t.file("tls.key")])
                .args(["--tls-ca-cert-file", &t.file("ca.crt")])
                .args(["--tls-replication", "yes"])
                .args([
                    "--tls-auth-clients",
                    if t.auth_clients { "yes" } else { "no" },
                ]),
        };
        if let Some(p) = self.shape.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
            if let Some(pw) = &self.password {
                cmd.args(["--masterauth", pw]);
            }
        }
        cmd.arg("--dir")
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

    /// redis-cli to this server, with the password (REDISCLI_AUTH) and the TLS client pair.
    fn client(port: u16, password: Option<&str>, tls: Option<&Tls>) -> Command {
        let mut c = Command::new(CLI);
        c.args(["--no-auth-warning", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string());
        if let Some(t) = tls {
            c.args(["--tls", "--cacert", &t.file("ca.crt")]).args([
                "--cert",
                &t.file("tls.crt"),
                "--key",
                &t.file("tls.key"),
            ]);
        }
        if let Some(pw) = password {
            c.env("REDISCLI_AUTH", pw);
        }
        c
    }

    /// Runs redis-cli with the password (REDISCLI_AUTH); Err on an error reply.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Self::client(self.port, self.password.as_deref(), self.shape.tls.as_ref());
        c.args(args);
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
        let (port, pw, tls) = (self.port, self.password.clone(), self.shape.tls.clone());
        db::Writer::start(move |n| {
            let mut c = Self::client(port, pw.as_deref(), tls.as_ref());
            c.args(["SET", &format!("k:{n}"), &n.to_string()]);
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

    /// The container as the Bitnami chart (redis or valkey, by the binary) renders it: the
    /// port in REDIS_PORT (the start script passes it to --port; no REDIS_PORT_NUMBER), or
    /// with TLS the REDIS_TLS_* set and no plain port; a replica's REDIS_REPLICATION_MODE,
    /// primary host, port and password; ALLOW_EMPTY_PASSWORD and REDIS_PASSWORD.
    pub fn chart_container(&self) -> Container {
        let valkey = self.bin == VALKEY_SERVER;
        let p = if valkey { "VALKEY" } else { "REDIS" };
        let (primary, mode) = if valkey {
            ("PRIMARY", "primary")
        } else {
            ("MASTER", "master")
        };
        let mut c = Container::new(self.tmp.path())
            .with("BITNAMI_DEBUG", "false")
            .with("ALLOW_EMPTY_PASSWORD", "no");
        if let Some(pw) = &self.password {
            c.set(&format!("{p}_PASSWORD"), pw);
        }
        match self.shape.replica_of {
            Some(port) => {
                c.set(&format!("{p}_REPLICATION_MODE"), "replica");
                c.set(&format!("{p}_{primary}_HOST"), "127.0.0.1");
                c.set(&format!("{p}_{primary}_PORT_NUMBER"), &port.to_string());
                if let Some(pw) = &self.password {
                    c.set(&format!("{p}_{primary}_PASSWORD"), pw);
                }
            }
            None => c.set(&format!("{p}_REPLICATION_MODE"), mode),
        }
        match &self.shape.tls {
            None => {
                c.set(&format!("{p}_TLS_ENABLED"), "no");
                c.set(&format!("{p}_PORT"), &self.port.to_string());
            }
            Some(t) => {
                c.set(&format!("{p}_TLS_ENABLED"), "yes");
                c.set(&format!("{p}_TLS_PORT"), &self.port.to_string());
                let auth = if t.auth_clients { "yes" } else { "no" };
                c.set(&format!("{p}_TLS_AUTH_CLIENTS"), auth);
                c.set(&format!("{p}_TLS_CERT_FILE"), &t.file("tls.crt"));
                c.set(&format!("{p}_TLS_KEY_FILE"), &t.file("tls.key"));
                c.set(&format!("{p}_TLS_CA_FILE"), &t.file("ca.crt"));
            }
        }
        c
    }

    /// A field of INFO replication.
    pub fn replication(&self, field: &str) -> String {
        let out = self.cli(&["INFO", "replication"]).expect("info");
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{field}:"))
                    .map(str::to_owned)
            })
            .unwrap_or_default()
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
            shape: self.shape.clone(),
            proc: None,
        }
    }
}
