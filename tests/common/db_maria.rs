//! Throwaway MariaDB servers (Debian mariadb-server) for the mysql and mariadb templates.
//! mariadbd runs as root with `--user=root` on a temp datadir, socket and port.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::db::{self, Container, Proc};

/// Root password of every test server.
pub const ROOT_PASSWORD: &str = "maria-s3cret";
/// The server binary.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
const CLIENT: &str = "/usr/bin/mariadb";

/// True when the binaries exist (skip/require policy applied).
pub fn available() -> bool {
    db::have(Path::new(MARIADBD), "mariadbd (Debian mariadb-server)")
        && db::have(Path::new(INSTALL_DB), "mariadb-install-db")
        && db::have(Path::new(CLIENT), "mariadb client")
}

/// A running throwaway server.
pub struct MariaServer {
    /// Temp root; removed on drop.
    pub tmp: tempfile::TempDir,
    /// Datadir.
    pub data: PathBuf,
    /// Unix socket.
    pub sock: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Server options on every start (a replication role's, as the image passes them).
    pub flags: Vec<String>,
    proc: Option<Proc>,
}

/// A throwaway directory (named with `prefix`) holding a data directory made by
/// mariadb-install-db with `extra` options, and the installer's private tmp.
fn install_datadir(prefix: &str, extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    let data = tmp.path().join("data");
    let private_tmp = tmp.path().join("tmp");
    std::fs::create_dir_all(&private_tmp).expect("tmpdir");
    db::sh(
        Command::new(INSTALL_DB)
            .arg(format!("--tmpdir={}", private_tmp.display()))
            .args(["--no-defaults", "--user=root"])
            .args(extra)
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display())),
    )
    .expect("mariadb-install-db");
    (tmp, data)
}

impl MariaServer {
    /// mariadb-install-db + start + root password + app.t table.
    pub fn init() -> Self {
        Self::init_with(false)
    }

    /// Like [`MariaServer::init`]; with `empty`, no schema is created (a freshly initialised
    /// volume). The metadata_lock_info plugin shows which sessions hold a backup lock.
    pub fn init_with(empty: bool) -> Self {
        let (tmp, data) = install_datadir("vhi-maria", &["--skip-test-db"]);
        let mut s = MariaServer {
            sock: tmp.path().join("mysqld.sock"),
            tmp,
            data,
            port: 0,
            flags: Vec::new(),
            proc: None,
        };
        s.start();
        s.sql_as(
            None,
            &format!(
                "ALTER USER root@localhost IDENTIFIED BY '{ROOT_PASSWORD}'; \
                 ALTER USER root@'127.0.0.1' IDENTIFIED BY '{ROOT_PASSWORD}'; \
                 INSTALL SONAME 'metadata_lock_info'"
            ),
        )
        .expect("setup");
        if !empty {
            s.sql("CREATE DATABASE app; CREATE TABLE app.t (n BIGINT PRIMARY KEY) ENGINE=InnoDB")
                .expect("schema");
        }
        s
    }

    fn start(&mut self) {
        self.spawn(&[]);
        self.wait_ready();
    }

    /// Starts mariadbd with `extra` options, without waiting (it may recover, or never start).
    pub fn spawn(&mut self, extra: &[&str]) {
        if self.port == 0 {
            self.port = db::free_port();
        }
        let log = self.tmp.path().join(format!("err-{}.log", self.port));
        let private_tmp = self.tmp.path().join("tmp");
        std::fs::create_dir_all(&private_tmp).expect("tmpdir");
        let proc = Proc::spawn(
            Command::new(MARIADBD)
                .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
                .arg(format!("--datadir={}", self.data.display()))
                .arg(format!("--socket={}", self.sock.display()))
                .arg(format!("--port={}", self.port))
                .arg(format!(
                    "--pid-file={}",
                    self.tmp.path().join("mysqld.pid").display()
                ))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!("--tmpdir={}", private_tmp.display()))
                .args(["--innodb-buffer-pool-size=32M", "--max-connections=50"])
                .args(&self.flags)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        self.proc = Some(proc);
    }

    fn wait_ready(&mut self) {
        let ready = db::wait_for(Duration::from_secs(60), || {
            self.sql("SELECT 1")
                .ok()
                .or_else(|| self.sql_as(None, "SELECT 1").ok())
        });
        assert!(ready.is_some(), "mariadbd did not start: {}", self.log());
    }

    /// The error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("err-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// Runs SQL as root with the password over the socket.
    pub fn sql(&self, q: &str) -> Result<String, String> {
        self.sql_as(Some(ROOT_PASSWORD), q)
    }

    fn sql_as(&self, pw: Option<&str>, q: &str) -> Result<String, String> {
        let mut c = Command::new(CLIENT);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.sock.display()))
            .args([
                "--user=root",
                "--batch",
                "--skip-column-names",
                "--connect-timeout=5",
                "-e",
                q,
            ]);
        if let Some(pw) = pw {
            c.env("MYSQL_PWD", pw);
        }
        db::sh(&mut c).map(|s| s.trim().to_owned())
    }

    /// Number of sessions holding a backup lock (BACKUP STAGE or FLUSH TABLES WITH READ LOCK).
    pub fn holder_sessions(&self) -> u64 {
        self.sql(
            "SELECT COUNT(DISTINCT THREAD_ID) FROM information_schema.METADATA_LOCK_INFO \
             WHERE LOCK_MODE IN ('MDL_BACKUP_WAIT_COMMIT', 'MDL_BACKUP_FTWRL2')",
        )
        .expect("processlist")
        .parse()
        .expect("n")
    }

    /// Count of rows with n <= upto, and max(n).
    pub fn rows(&self, upto: u64) -> (u64, u64) {
        let out = self
            .sql(&format!(
                "SELECT (SELECT COUNT(*) FROM app.t WHERE n <= {upto}), (SELECT COALESCE(MAX(n),0) FROM app.t)"
            ))
            .expect("rows");
        let mut it = out.split_whitespace().map(|x| x.parse::<u64>().expect("n"));
        (it.next().expect("count"), it.next().expect("max"))
    }

    /// A writer committing one INSERT per client process.
    pub fn writer(&self) -> db::Writer {
        let sock = self.sock.clone();
        db::Writer::start(move |n| {
            db::sh(
                Command::new(CLIENT)
                    .env("MYSQL_PWD", ROOT_PASSWORD)
                    .arg("--no-defaults")
                    .arg(format!("--socket={}", sock.display()))
                    .args(["--user=root", "-e"])
                    .arg(format!("INSERT INTO app.t VALUES ({n})")),
            )
            .map(|_| ())
        })
    }

    /// The simulated container: socket in MYSQL_UNIX_PORT, root password in `pw_var`.
    pub fn container(&self, pw_var: &str) -> Container {
        Container::new(self.tmp.path())
            .with("MYSQL_UNIX_PORT", &self.sock.display().to_string())
            .with(pw_var, ROOT_PASSWORD)
            .with("MYSQL_PORT", "tcp://10.96.0.13:3306")
    }

    /// Stops the server (server down scenario).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.stop("TERM");
        }
    }

    /// Copies the datadir with the server frozen (atomic-snapshot stand-in) and starts a new
    /// server on the copy.
    pub fn restore_from_snapshot(&self) -> MariaServer {
        let mut s = self.snapshot();
        s.start();
        s
    }

    /// The atomic-snapshot copy as a server not started yet (port chosen).
    pub fn snapshot(&self) -> MariaServer {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-maria-restore")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        db::snapshot_copy(
            self.proc.as_ref().expect("running").pid(),
            &self.data,
            &data,
        );
        MariaServer {
            sock: tmp.path().join("mysqld.sock"),
            tmp,
            data,
            port: db::free_port(),
            flags: self.flags.clone(),
            proc: None,
        }
    }
}

/// The container environment of the dump-mode tests: what an official `mariadb` image pod sets
/// (time-zone tables skipped to keep the tests short; the image honours the variable).
pub const IMAGE_ENV: &[(&str, &str)] = &[
    ("MARIADB_ROOT_PASSWORD", ROOT_PASSWORD),
    ("MARIADB_DATABASE", "app"),
    ("MARIADB_USER", "appuser"),
    ("MARIADB_PASSWORD", "app-pw"),
    ("MARIADB_INITDB_SKIP_TZINFO", "1"),
];

impl MariaServer {
    /// A server on an empty data directory initialised as the official image's entrypoint does
    /// on its first start, from `env` (MARIADB_ROOT_PASSWORD, MARIADB_DATABASE, MARIADB_USER,
    /// MARIADB_PASSWORD): mariadb-install-db with the image's options, a temporary server with
    /// skip-networking, root@localhost's password, root@'%', no other root, the healthcheck
    /// accounts with a fresh random password in `.my-healthcheck.cnf`, the database and the user
    /// with its grant; then the temporary server stops and the real one starts.
    pub fn init_like_image(env: &[(&str, &str)]) -> Self {
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let tmp = tempfile::Builder::new()
            .prefix("vhi-maria-image")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        let private_tmp = tmp.path().join("tmp");
        std::fs::create_dir_all(&private_tmp).expect("tmpdir");
        db::sh(
            Command::new(INSTALL_DB)
                .arg(format!("--tmpdir={}", private_tmp.display()))
                .args(["--no-defaults", "--user=root"])
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--old-mode=UTF8_IS_UTF8MB3",
                    "--default-time-zone=SYSTEM",
                    "--enforce-storage-engine=",
                    "--skip-log-bin",
                    "--expire-logs-days=0",
                    "--loose-innodb_buffer_pool_load_at_startup=0",
                    "--loose-innodb_buffer_pool_dump_at_shutdown=0",
                ]),
        )
        .expect("mariadb-install-db");
        let mut s = MariaServer {
            sock: tmp.path().join("mysqld.sock"),
            tmp,
            data,
            port: 0,
            flags: Vec::new(),
            proc: None,
        };
        s.spawn(&[
            "--skip-networking",
            "--default-time-zone=SYSTEM",
            "--expire-logs-days=0",
            "--loose-innodb_buffer_pool_load_at_startup=0",
        ]);
        let up = db::wait_for(Duration::from_secs(60), || s.sql_as(None, "SELECT 1").ok());
        assert!(up.is_some(), "temporary server: {}", s.log());
        let root = get("MARIADB_ROOT_PASSWORD").expect("root password in env");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let hc = format!("hc-{nanos}-{}", std::process::id());
        let mut sql = format!(
            "SET @@SESSION.SQL_LOG_BIN=0; \
             DROP USER IF EXISTS root@'127.0.0.1', root@'::1'; \
             EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\''); \
             SET PASSWORD FOR 'root'@'localhost' = PASSWORD('{root}'); \
             CREATE USER 'root'@'%' IDENTIFIED BY '{root}'; \
             GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; \
             GRANT PROXY ON ''@'%' TO 'root'@'%' WITH GRANT OPTION; "
        );
        for host in ["127.0.0.1", "::1", "localhost"] {
            sql += &format!(
                "CREATE USER IF NOT EXISTS healthcheck@'{host}' IDENTIFIED BY '{hc}'; \
                 SET PASSWORD FOR healthcheck@'{host}' = PASSWORD('{hc}'); \
                 GRANT USAGE ON *.* TO healthcheck@'{host}'; "
            );
        }
        if let Some(d) = get("MARIADB_DATABASE") {
            sql += &format!("CREATE DATABASE IF NOT EXISTS `{d}`; ");
            if let (Some(u), Some(p)) = (get("MARIADB_USER"), get("MARIADB_PASSWORD")) {
                sql += &format!(
                    "CREATE USER '{u}'@'%' IDENTIFIED BY '{p}'; GRANT ALL ON `{}`.* TO '{u}'@'%'; ",
                    d.replace('_', "\\_")
                );
            }
        }
        s.sql_as(None, &sql).expect("the image's first-start SQL");
        std::fs::write(
            s.data.join(".my-healthcheck.cnf"),
            format!(
                "[mariadb-client]\nport={}\nsocket={}\nuser=healthcheck\npassword={hc}\nprotocol=tcp\n",
                s.port,
                s.sock.display()
            ),
        )
        .expect("healthcheck cnf");
        if let Some(p) = s.proc.as_mut() {
            p.stop("TERM");
        }
        s.start();
        s
    }

    /// The container of an image-initialised server: `env`, the socket, and the dump volume
    /// (created) in VHI_DUMP_DIR.
    pub fn image_container(&self, env: &[(&str, &str)]) -> Container {
        let mut c = Container::new(self.tmp.path())
            .with("MYSQL_UNIX_PORT", &self.sock.display().to_string())
            .with("MYSQL_PORT", "tcp://10.96.0.13:3306")
            .with("VHI_DUMP_DIR", &self.dump_dir().display().to_string());
        for (k, v) in env {
            c.set(k, v);
        }
        c
    }

    /// The dump volume of this server's pod (created on first use).
    pub fn dump_dir(&self) -> PathBuf {
        let d = self.tmp.path().join("vhi-dump");
        std::fs::create_dir_all(&d).expect("dump volume");
        d
    }

    /// Runs SQL as `user` with `pw` over TCP (127.0.0.1), as a client in another pod would.
    pub fn sql_tcp(&self, user: &str, pw: &str, q: &str) -> Result<String, String> {
        db::sh(
            Command::new(CLIENT)
                .env("MYSQL_PWD", pw)
                .arg("--no-defaults")
                .args(["-h127.0.0.1", &format!("-P{}", self.port)])
                .arg(format!("--user={user}"))
                .args([
                    "--batch",
                    "--skip-column-names",
                    "--connect-timeout=5",
                    "-e",
                    q,
                ]),
        )
        .map(|s| s.trim().to_owned())
    }

    /// The healthcheck password the image wrote for this data directory.
    pub fn healthcheck_password(&self) -> String {
        std::fs::read_to_string(self.data.join(".my-healthcheck.cnf"))
            .expect("healthcheck cnf")
            .lines()
            .find_map(|l| l.strip_prefix("password="))
            .expect("password line")
            .to_owned()
    }

    /// A server on a file-by-file copy of this one's data directory taken while it runs
    /// (file-system backup without dump mode, the control), not started yet.
    pub fn live_file_copy(&self, pause: Duration) -> MariaServer {
        let tmp = tempfile::Builder::new()
            .prefix("vhi-maria-fsb")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        db::fsb_copy(&self.data, &data, pause);
        MariaServer {
            sock: tmp.path().join("mysqld.sock"),
            tmp,
            data,
            port: db::free_port(),
            flags: self.flags.clone(),
            proc: None,
        }
    }

    /// Starts the server and waits up to `limit` for an answer; false when none comes.
    pub fn try_start(&mut self, limit: Duration) -> bool {
        self.spawn(&[]);
        db::wait_for(limit, || self.sql("SELECT 1").ok()).is_some()
    }
}

/// Password of the replication account of the Bitnami-shaped pairs.
pub const REPL_PASSWORD: &str = "repl-s3cret";

impl MariaServer {
    /// A Bitnami primary (`MARIADB_REPLICATION_MODE=master`) initialised on an empty volume as the
    /// image's libmariadb.sh does, listening on `port` (0: a free one): mariadb-install-db, a
    /// server with the binary log on (server id, ROW format, sync-binlog) and replication not
    /// started, every account deleted, RESET MASTER, then root@'%' with [`ROOT_PASSWORD`], the
    /// replication account `repl` and the database `app`, all written to the binary log (what a
    /// secondary replays); then the server restarts for good.
    pub fn init_bitnami_primary(port: u16) -> Self {
        let flags = ["--server-id=101", "--innodb-flush-log-at-trx-commit=1"];
        let sql = format!(
            "RESET MASTER; \
             CREATE USER root@'%' IDENTIFIED BY '{ROOT_PASSWORD}'; \
             GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION; \
             CREATE USER repl@'%' IDENTIFIED BY '{REPL_PASSWORD}'; \
             GRANT REPLICATION SLAVE ON *.* TO repl@'%' WITH GRANT OPTION; \
             CREATE DATABASE IF NOT EXISTS app"
        );
        Self::init_bitnami(port, &flags, &sql)
    }

    /// A Bitnami secondary (`MARIADB_REPLICATION_MODE=slave`) of the primary on `primary_port`,
    /// initialised on an empty volume as libmariadb.sh does: every account deleted and none
    /// created (the secondary gets the primary's by replication), CHANGE MASTER TO with no
    /// binary-log position (so it replays the primary's binary log from its first file), then
    /// the server restarts with replication started, read-only.
    pub fn init_bitnami_secondary(primary_port: u16) -> Self {
        let flags = [
            "--server-id=102",
            "--relay-log=mysql-relay-bin",
            "--log-slave-updates=1",
            "--read-only=1",
        ];
        let sql = format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary_port}, \
             MASTER_USER='repl', MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_DELAY=0, \
             MASTER_CONNECT_RETRY=10"
        );
        Self::init_bitnami(0, &flags, &sql)
    }

    fn init_bitnami(port: u16, role: &[&str], sql: &str) -> Self {
        let (tmp, data) = install_datadir("vhi-maria-bitnami", &[]);
        let mut flags: Vec<String> = [
            "--binlog-format=ROW",
            "--log-bin=mysql-bin",
            "--sync-binlog=1",
        ]
        .iter()
        .chain(role)
        .map(|f| (*f).to_owned())
        .collect();
        let mut s = MariaServer {
            sock: tmp.path().join("mysqld.sock"),
            tmp,
            data,
            port: if port == 0 { db::free_port() } else { port },
            flags: flags.clone(),
            proc: None,
        };
        s.spawn(&["--skip-slave-start"]);
        let up = db::wait_for(Duration::from_secs(60), || s.sql_as(None, "SELECT 1").ok());
        assert!(up.is_some(), "initialisation server: {}", s.log());
        s.sql_as(
            None,
            &format!(
                "DELETE FROM mysql.user WHERE user NOT IN \
                 ('mysql.sys', 'mysql.infoschema', 'mysql.session', 'mariadb.sys'); {sql}"
            ),
        )
        .expect("the image's first-start SQL");
        if let Some(p) = s.proc.as_mut() {
            p.stop("TERM");
        }
        flags.retain(|f| f != "--skip-slave-start");
        s.flags = flags;
        s.spawn(&[]);
        s
    }

    /// Waits until root logs in with [`ROOT_PASSWORD`] (on a secondary: once replication has
    /// brought the primary's accounts), true when it does within `limit`.
    pub fn wait_root(&self, limit: Duration) -> bool {
        db::wait_for(limit, || self.sql("SELECT 1").ok()).is_some()
    }

    /// Waits until this server's `app.t` holds `rows` rows (a secondary catching up).
    pub fn wait_rows(&self, rows: u64, limit: Duration) -> bool {
        db::wait_for(limit, || {
            (self
                .sql("SELECT COUNT(*) FROM app.t")
                .ok()?
                .parse::<u64>()
                .ok()?
                == rows)
                .then_some(())
        })
        .is_some()
    }

    /// Starts this (copied) server on `port`, without waiting.
    pub fn spawn_on(&mut self, port: u16) {
        self.port = port;
        self.spawn(&[]);
    }
}
