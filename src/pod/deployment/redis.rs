//! redis: the deployment facts of the Redis, Valkey and KeyDB images (official, Bitnami).
//!
//! The hooks (`lib/redis.sh`) read, for each name X, `REDIS_X` when it is set and not empty,
//! else `VALKEY_X`: the password from `*_PASSWORD_FILE` else `*_PASSWORD`; with
//! `*_TLS_ENABLED` yes/true/1, TLS to `*_TLS_PORT_NUMBER` else `*_TLS_PORT` else 6379 (CA
//! `*_TLS_CA_FILE` else `*_TLS_CA_DIR`, client pair `*_TLS_CERT_FILE` + `*_TLS_KEY_FILE`);
//! otherwise plain text to `*_PORT` when it is all digits (the charts' start scripts pass it to
//! `--port`; a service link sets `REDIS_PORT=tcp://...`), else `*_PORT_NUMBER`, else 6379.
//! [`HookView`] is that reading, and nothing else. The hooks never read the server's argv or
//! config file: what the argv sets (`--port`, `--tls-port`, `--requirepass`) is compared with
//! that view here, and a difference is a problem with the fix (the env variable to set). A
//! config file on argv is a caution: the hooks cannot see what it sets. `*_TLS_KEY_FILE_PASS`
//! (the server's key has a passphrase) blocks: redis-cli cannot take one.
//!
//! Roles: `REDIS_REPLICATION_MODE=slave|replica` / `VALKEY_REPLICATION_MODE=replica` (Bitnami)
//! or `--replicaof`/`--slaveof` in argv make a replica: its own copy is backed up by the same
//! hooks (Redis has no dump mode; a file-system backup copies its files under the same pause),
//! and its restore check passes once its link to the primary is up. A node of the Bitnami
//! chart's Sentinel StatefulSet (`REDIS_SENTINEL_*` in its env; the primary moves at run time)
//! and a Redis Cluster node are members. A Sentinel process itself holds no data: no hooks.

use super::{Blocked, Deployment, Env, Problem, Role, Subject, Value};

/// Where and how the hooks will connect, from the env alone (the reading of `lib/redis.sh`).
struct HookView<'a> {
    /// TLS: yes, no, or unknown (a `valueFrom` reference).
    tls: Option<bool>,
    /// The port, when the env fixes it (None: a reference, value unknown).
    port: Option<u16>,
    /// Where the port comes from, for messages.
    port_from: String,
    env: &'a Env<'a>,
}

/// `REDIS_x` when set and not empty, else `VALKEY_x`, with the name that gave it.
fn pick<'a>(env: &Env<'a>, x: &str) -> Option<(String, Value<'a>)> {
    ["REDIS_", "VALKEY_"].iter().find_map(|p| {
        let name = format!("{p}{x}");
        env.is_set(&name)
            .then(|| env.get(&name).map(|v| (name, v)))
            .flatten()
    })
}

fn digits(s: &str) -> Option<u16> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl<'a> HookView<'a> {
    fn of(env: &'a Env<'a>) -> Self {
        let tls = match pick(env, "TLS_ENABLED") {
            None => Some(false),
            Some((_, Value::Reference)) => None,
            Some((_, Value::Literal(v))) => Some(matches!(
                v.to_ascii_lowercase().as_str(),
                "yes" | "true" | "1"
            )),
        };
        let names: &[&str] = if tls == Some(true) {
            &["TLS_PORT_NUMBER", "TLS_PORT"]
        } else {
            &["PORT", "PORT_NUMBER"]
        };
        let mut port = Some(6379);
        let mut port_from = "the default 6379".to_owned();
        for x in names {
            match pick(env, x) {
                // A service link (tcp://...) in REDIS_PORT is not a port: the hooks skip it.
                Some((_, Value::Literal(v))) if *x == "PORT" && digits(v).is_none() => continue,
                Some((name, Value::Literal(v))) => {
                    port = digits(v);
                    port_from = format!("{name}={v}");
                }
                Some((name, Value::Reference)) => {
                    port = None;
                    port_from = name;
                }
                None => continue,
            }
            break;
        }
        HookView {
            tls,
            port,
            port_from,
            env,
        }
    }

    /// True when the hooks will have a password (or may: a reference, envFrom).
    fn has_password(&self) -> bool {
        pick(self.env, "PASSWORD_FILE").is_some()
            || pick(self.env, "PASSWORD").is_some()
            || self.env.opaque()
    }
}

/// The value after `flag` in argv (`--flag v` or `--flag=v`; the last wins), with `$(VAR)`
/// resolved from the env's literals (None when it cannot be).
fn arg<'a>(argv: &[&'a str], env: &Env<'a>, flag: &str) -> Option<Option<&'a str>> {
    let mut found = None;
    for (i, a) in argv.iter().enumerate() {
        let v = if *a == flag {
            argv.get(i + 1).copied()
        } else {
            a.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
        };
        if let Some(v) = v {
            found = Some(v);
        }
    }
    found.map(
        |v| match v.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) {
            Some(var) => env.literal(var),
            None => Some(v),
        },
    )
}

/// Assesses a redis pod.
pub(super) fn assess(subject: &Subject<'_>) -> Deployment {
    let env = subject.env();
    let argv: Vec<&str> = subject.argv().collect();
    let mut d = Deployment {
        role: role(subject, &env, &argv),
        problems: Vec::new(),
    };
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    if program == Some("redis-sentinel")
        || program == Some("valkey-sentinel")
        || argv.contains(&"--sentinel")
    {
        d.problems.push(Problem::blocking(
            &[Blocked::Backup, Blocked::Restore],
            "this container runs Sentinel, which holds no data: back up the Redis or Valkey \
             server containers instead (the hooks are not injected here)",
        ));
        return d;
    }
    let view = HookView::of(&env);
    reach(&view, &env, &argv, &mut d.problems);
    login(subject, &view, &env, &argv, &mut d.problems);
    d
}

fn role(subject: &Subject<'_>, env: &Env<'_>, argv: &[&str]) -> Role {
    let sentinel = [
        "REDIS_SENTINEL_PORT",
        "REDIS_SENTINEL_TLS_ENABLED",
        "VALKEY_SENTINEL_PORT",
        "VALKEY_SENTINEL_TLS_ENABLED",
    ];
    if env.any_set(&sentinel) || argv.iter().any(|a| a.contains("start-node.sh")) {
        return Role::Member {
            cluster: "Sentinel",
        };
    }
    let cluster_image = matches!(subject.image_name(), "redis-cluster" | "valkey-cluster");
    if cluster_image || arg(argv, env, "--cluster-enabled") == Some(Some("yes")) {
        return Role::Member {
            cluster: "Redis Cluster",
        };
    }
    match (
        env.literal("REDIS_REPLICATION_MODE"),
        env.literal("VALKEY_REPLICATION_MODE"),
    ) {
        (Some("slave"), _) => Role::Replica {
            how: "REDIS_REPLICATION_MODE=slave",
        },
        (Some("replica"), _) => Role::Replica {
            how: "REDIS_REPLICATION_MODE=replica",
        },
        (_, Some("replica")) => Role::Replica {
            how: "VALKEY_REPLICATION_MODE=replica",
        },
        _ if arg(argv, env, "--replicaof").is_some() => Role::Replica { how: "--replicaof" },
        _ if arg(argv, env, "--slaveof").is_some() => Role::Replica { how: "--slaveof" },
        _ => Role::Primary,
    }
}

/// The port and transport the server's argv sets, against the hooks' view.
fn reach(view: &HookView<'_>, env: &Env<'_>, argv: &[&str], out: &mut Vec<Problem>) {
    let port = arg(argv, env, "--port");
    let tls_port = arg(argv, env, "--tls-port");
    let fix = |what: String| {
        if env.opaque() {
            Problem::caution(format!(
                "{what}, unless the container's envFrom sets it (the hooks read only the env)"
            ))
        } else {
            Problem::blocking(&[Blocked::Backup, Blocked::Restore], what)
        }
    };
    match view.tls {
        Some(false) => {
            if let Some(Some(p)) = port {
                let p = digits(p);
                if p == Some(0) {
                    let t = tls_port.flatten().unwrap_or("N");
                    out.push(fix(format!(
                        "the server takes only TLS (--port 0 --tls-port {t}) but the hooks would \
                         connect in plain text: set REDIS_TLS_ENABLED=yes, REDIS_TLS_PORT_NUMBER={t}, \
                         REDIS_TLS_CA_FILE and, when tls-auth-clients is on, REDIS_TLS_CERT_FILE \
                         and REDIS_TLS_KEY_FILE in the container's env"
                    )));
                } else if p.is_some() && view.port.is_some() && p != view.port {
                    out.push(fix(format!(
                        "the server listens on port {} (--port) but the hooks would connect to {} \
                         ({}): set REDIS_PORT_NUMBER={} in the container's env",
                        p.unwrap_or_default(),
                        view.port.unwrap_or_default(),
                        view.port_from,
                        p.unwrap_or_default()
                    )));
                }
            }
        }
        Some(true) => {
            if let Some(Some(t)) = tls_port {
                let t = digits(t);
                if t.is_some() && view.port.is_some() && t != view.port {
                    out.push(fix(format!(
                        "the server takes TLS on port {} (--tls-port) but the hooks would connect \
                         to {} ({}): set REDIS_TLS_PORT_NUMBER={} in the container's env",
                        t.unwrap_or_default(),
                        view.port.unwrap_or_default(),
                        view.port_from,
                        t.unwrap_or_default()
                    )));
                }
            }
            if let Some((name, _)) = pick(env, "TLS_KEY_FILE_PASS") {
                // redis-cli has no way to take a key's passphrase: it asks a terminal the hook
                // does not have, then fails with "Invalid private key".
                out.push(Problem::blocking(
                    &[Blocked::Backup, Blocked::Restore],
                    format!(
                        "the TLS key is protected by a passphrase ({name}), which redis-cli \
                         cannot be given, so every hook would fail with \"Invalid private key\": \
                         use a key without a passphrase"
                    ),
                ));
            }
            let no = |x: &str| pick(env, x).is_none() && !env.opaque();
            let auth = pick(env, "TLS_AUTH_CLIENTS");
            let auth_off =
                matches!(auth, Some((_, Value::Literal(v))) if v.eq_ignore_ascii_case("no"));
            if !auth_off && (no("TLS_CERT_FILE") || no("TLS_KEY_FILE")) {
                out.push(Problem::blocking(
                    &[Blocked::Backup, Blocked::Restore],
                    "TLS is on and the server asks clients for a certificate (tls-auth-clients, \
                     on by default) but the container's env has no REDIS_TLS_CERT_FILE and \
                     REDIS_TLS_KEY_FILE for the hooks: set them to the server's certificate and \
                     key (or set REDIS_TLS_AUTH_CLIENTS=no if the server does not ask)",
                ));
            }
        }
        None => {}
    }
}

/// Whether the server wants a password the hooks will not have, or reads a config file.
fn login(
    subject: &Subject<'_>,
    view: &HookView<'_>,
    env: &Env<'_>,
    argv: &[&str],
    out: &mut Vec<Problem>,
) {
    // The Bitnami charts always hand the password in the env when auth is on (and the image's
    // own entrypoint refuses to start without one unless ALLOW_EMPTY_PASSWORD=yes), so only
    // argv can ask for a password the env does not carry.
    if !view.has_password() && arg(argv, env, "--requirepass").is_some() {
        out.push(Problem::blocking(
            &[Blocked::Backup, Blocked::Restore],
            "the server is started with --requirepass, but the container's env has no \
             REDIS_PASSWORD or REDIS_PASSWORD_FILE (VALKEY_ for Valkey) for the hooks to log in \
             with: set REDIS_PASSWORD from the same Secret (and pass --requirepass \
             $(REDIS_PASSWORD))",
        ));
    }
    let conf = argv.iter().find(|a| a.ends_with(".conf"));
    if let (Some(conf), false) = (conf, subject.is_bitnami()) {
        out.push(Problem::caution(format!(
            "the server reads {conf}, which the hooks cannot see: if it sets requirepass, port or \
             tls-port, give the hooks the same in REDIS_PASSWORD, REDIS_PORT_NUMBER or the \
             REDIS_TLS_* variables of the container's env"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn assess_c(c: &k8s_openapi::api::core::v1::Container) -> Deployment {
        assess_as("redis", c)
    }

    fn blocked(d: &Deployment, needle: &str) -> bool {
        d.blocks(Blocked::Backup)
            && d.blocks(Blocked::Restore)
            && d.problems.iter().any(|p| p.message.contains(needle))
    }

    const CHART: &[&str] = &["-c", "/opt/bitnami/scripts/start-scripts/start-master.sh"];

    #[test]
    fn bitnami_chart_primary_with_its_port_and_password_is_fine() {
        let c = container(
            "docker.io/bitnami/redis:7.4",
            &[
                ("REDIS_REPLICATION_MODE", "master"),
                ("ALLOW_EMPTY_PASSWORD", "no"),
                ("REDIS_PASSWORD", "<secret>"),
                ("REDIS_TLS_ENABLED", "no"),
                ("REDIS_PORT", "6380"),
            ],
            CHART,
        );
        let d = assess_c(&c);
        assert_eq!(d.role, Role::Primary);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn replicas_of_the_charts_and_of_argv() {
        let c = container(
            "bitnami/redis:7.4",
            &[
                ("REDIS_REPLICATION_MODE", "replica"),
                (
                    "REDIS_PASSWORD_FILE",
                    "/opt/bitnami/redis/secrets/redis-password",
                ),
            ],
            &[],
        );
        let d = assess_c(&c);
        assert_eq!(
            d.role,
            Role::Replica {
                how: "REDIS_REPLICATION_MODE=replica"
            }
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let c = container(
            "bitnami/valkey:8.1",
            &[
                ("VALKEY_REPLICATION_MODE", "replica"),
                ("VALKEY_PASSWORD", "<secret>"),
            ],
            &[],
        );
        assert!(matches!(assess_c(&c).role, Role::Replica { .. }));
        let c = container("redis:7", &[], &["--replicaof", "redis-0.redis", "6379"]);
        assert_eq!(assess_c(&c).role, Role::Replica { how: "--replicaof" });
    }

    #[test]
    fn sentinel_nodes_are_members_and_sentinels_get_no_hooks() {
        let c = container(
            "bitnami/redis:7.4",
            &[
                ("REDIS_PASSWORD", "<secret>"),
                ("REDIS_PORT", "6379"),
                ("REDIS_SENTINEL_PORT", "26379"),
            ],
            &["-c", "/opt/bitnami/scripts/start-scripts/start-node.sh"],
        );
        let d = assess_c(&c);
        assert_eq!(
            d.role,
            Role::Member {
                cluster: "Sentinel"
            }
        );
        assert!(d.problems.is_empty());
        let mut c = container("redis:7.2", &[], &["/etc/redis/sentinel.conf"]);
        c.command = Some(vec!["redis-sentinel".into()]);
        assert!(blocked(&assess_c(&c), "holds no data"));
        let c = container("redis:7.2", &[], &["/etc/sentinel.conf", "--sentinel"]);
        assert!(blocked(&assess_c(&c), "Sentinel"));
    }

    #[test]
    fn a_port_the_hooks_would_miss_blocks_with_the_variable_to_set() {
        // The official image: the port only on argv.
        let c = container("redis:7.2", &[], &["--port", "6380"]);
        assert!(blocked(&assess_c(&c), "REDIS_PORT_NUMBER=6380"));
        // Given to the hooks too: fine.
        let c = container(
            "redis:7.2",
            &[("REDIS_PORT_NUMBER", "6380")],
            &["--port", "6380"],
        );
        assert!(assess_c(&c).problems.is_empty());
        // $(VAR) resolved; a service link in REDIS_PORT is not what the hooks use.
        let c = container(
            "redis:7.2",
            &[("PORT", "7000"), ("REDIS_PORT", "tcp://10.0.0.1:6379")],
            &["--port", "$(PORT)"],
        );
        assert!(blocked(&assess_c(&c), "REDIS_PORT_NUMBER=7000"));
        // envFrom may carry it: a caution, not a block.
        let c = with_env_from(container("redis:7.2", &[], &["--port", "6380"]));
        let d = assess_c(&c);
        assert!(!d.blocks(Blocked::Backup) && !d.problems.is_empty());
    }

    #[test]
    fn tls_only_servers_need_the_tls_variables() {
        let args = [
            "--port",
            "0",
            "--tls-port",
            "6379",
            "--tls-cert-file",
            "/tls/tls.crt",
        ];
        let c = container("redis:7.2", &[], &args);
        assert!(blocked(&assess_c(&c), "REDIS_TLS_ENABLED=yes"));
        let tls = [
            ("REDIS_TLS_ENABLED", "yes"),
            ("REDIS_TLS_PORT", "6379"),
            ("REDIS_TLS_CA_FILE", "/tls/ca.crt"),
            ("REDIS_TLS_CERT_FILE", "/tls/tls.crt"),
            ("REDIS_TLS_KEY_FILE", "/tls/tls.key"),
        ];
        let c = container("redis:7.2", &tls, &args);
        assert!(assess_c(&c).problems.is_empty());
        // Bitnami chart, tls.enabled: REDIS_TLS_PORT; client certificates required by default.
        let c = container(
            "bitnami/redis:7.4",
            &[
                ("REDIS_PASSWORD", "<secret>"),
                ("REDIS_TLS_ENABLED", "yes"),
                ("REDIS_TLS_PORT", "6379"),
                ("REDIS_TLS_CA_FILE", "/opt/bitnami/redis/certs/ca.crt"),
            ],
            CHART,
        );
        assert!(blocked(&assess_c(&c), "REDIS_TLS_CERT_FILE"));
        let c = container(
            "bitnami/redis:7.4",
            &[
                ("REDIS_PASSWORD", "<secret>"),
                ("REDIS_TLS_ENABLED", "yes"),
                ("REDIS_TLS_AUTH_CLIENTS", "no"),
                ("REDIS_TLS_CA_FILE", "/opt/bitnami/redis/certs/ca.crt"),
            ],
            CHART,
        );
        assert!(assess_c(&c).problems.is_empty());
        // A key with a passphrase: redis-cli cannot use it.
        let c = container(
            "bitnami/redis:7.4",
            &[
                ("REDIS_PASSWORD", "<secret>"),
                ("REDIS_TLS_ENABLED", "yes"),
                ("REDIS_TLS_CA_FILE", "/certs/ca.crt"),
                ("REDIS_TLS_CERT_FILE", "/certs/tls.crt"),
                ("REDIS_TLS_KEY_FILE", "/certs/tls.key"),
                ("REDIS_TLS_KEY_FILE_PASS", "<secret>"),
            ],
            &[],
        );
        assert!(blocked(&assess_c(&c), "REDIS_TLS_KEY_FILE_PASS"));
        // The TLS port on argv differs from the env's.
        let c = container(
            "valkey/valkey:8",
            &[
                ("VALKEY_TLS_ENABLED", "yes"),
                ("VALKEY_TLS_CA_FILE", "/tls/ca.crt"),
                ("VALKEY_TLS_AUTH_CLIENTS", "no"),
            ],
            &["--port", "0", "--tls-port", "6390"],
        );
        assert!(blocked(&assess_c(&c), "REDIS_TLS_PORT_NUMBER=6390"));
    }

    #[test]
    fn a_password_the_hooks_do_not_have_blocks_unless_env_from_may_carry_it() {
        let c = container("redis:7.2", &[], &["--requirepass", "s3cret"]);
        assert!(blocked(&assess_c(&c), "REDIS_PASSWORD"));
        let c = container(
            "redis:7.2",
            &[("REDIS_PASSWORD", "<secret>")],
            &["--requirepass", "$(REDIS_PASSWORD)"],
        );
        assert!(assess_c(&c).problems.is_empty());
        let c = with_env_from(container("redis:7.2", &[], &["--requirepass", "s3cret"]));
        assert!(assess_c(&c).problems.is_empty(), "envFrom may carry it");
        // Nothing else says a password is needed: a Bitnami image started with its command
        // overridden runs without one (its entrypoint's check does not run).
        let mut c = container("bitnami/redis:7.4", &[], &["--appendonly", "yes"]);
        c.command = Some(vec!["redis-server".into()]);
        assert!(assess_c(&c).problems.is_empty());
        // A config file the hooks cannot read: a caution.
        let c = container("redis:7.2", &[], &["/usr/local/etc/redis/redis.conf"]);
        let d = assess_c(&c);
        assert!(!d.blocks(Blocked::Backup) && d.problems.len() == 1, "{d:?}");
    }
}
