//! mongodb: the deployment facts of the MongoDB images (official, Bitnami, Percona).
//!
//! The hooks (`lib/mongo.sh`) log in with `MONGO_INITDB_ROOT_USERNAME`/`_PASSWORD` (or their
//! `_FILE`), else `MONGODB_ROOT_USER` (default root) with `MONGODB_ROOT_PASSWORD[_FILE]`, else
//! `MONGODB_INITIAL_PRIMARY_ROOT_USER` with `MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD[_FILE]` (or
//! `MONGODB_PRIMARY_ROOT_*`); they connect to `MONGODB_PORT_NUMBER` else 27017 with the shell
//! flags of `MONGODB_SHELL_EXTRA_FLAGS` else `MONGODB_CLIENT_EXTRA_FLAGS`. This module reads
//! exactly those names for what the hooks will have, and compares it with what the server is
//! told: `MONGODB_EXTRA_FLAGS` (Bitnami) or argv (`--tlsMode requireTLS`, `--tlsCAFile`,
//! `--port`, `--auth`, `--keyFile`) and `ALLOW_EMPTY_PASSWORD` (the Bitnami image's entrypoint
//! demands a root password without it; a pod that starts without one in its env gets it from a
//! Vault or config file the hooks cannot read, unless `mongod` is run directly). A difference
//! is a problem naming the env variable to set.
//!
//! Roles: a replica-set member (`MONGODB_REPLICA_SET_MODE`/`_NAME`, `--replSet`) is a member:
//! the primary moves by election, and fsyncLock works on any member. An arbiter and a mongos
//! router hold no data: no hooks. MongoDB Community operator pods are the core's
//! (operator-managed).

use super::{Blocked, Deployment, Env, Problem, Role, Subject, Value};

/// The words of `name`'s literal value (None when unset; Some(None) when a reference).
fn words<'a>(env: &Env<'a>, name: &str) -> Option<Option<Vec<&'a str>>> {
    match env.get(name)? {
        Value::Literal("") => None,
        Value::Literal(s) => Some(Some(s.split_whitespace().collect())),
        Value::Reference => Some(None),
    }
}

/// The value of `flag` among `words` (`--flag v` or `--flag=v`), if present.
fn opt<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words.iter().enumerate().find_map(|(i, w)| {
        if *w == flag {
            Some(words.get(i + 1).copied().unwrap_or(""))
        } else {
            w.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
        }
    })
}

/// Assesses a mongodb pod.
pub(super) fn assess(subject: &Subject<'_>) -> Deployment {
    let env = subject.env();
    let argv: Vec<&str> = subject.argv().collect();
    let mode = env.literal("MONGODB_REPLICA_SET_MODE");
    let mut d = Deployment::default();
    if env.is_set("MONGODB_REPLICA_SET_MODE")
        || env.is_set("MONGODB_REPLICA_SET_NAME")
        || opt(&argv, "--replSet").is_some()
    {
        d.role = Role::Member {
            cluster: "replica set",
        };
    }
    let program = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    let no_data = if mode == Some("arbiter") {
        Some("a replica-set arbiter (MONGODB_REPLICA_SET_MODE=arbiter)")
    } else if env.literal("MONGODB_SHARDING_MODE") == Some("mongos") || program == Some("mongos") {
        Some("a mongos router")
    } else {
        None
    };
    if let Some(what) = no_data {
        d.problems.push(Problem::blocking(
            &[Blocked::Backup, Blocked::Restore],
            format!(
                "this container runs {what}, which holds no data: back up the data-bearing \
                 members instead (the hooks are not injected here)"
            ),
        ));
        return d;
    }
    // What the server is told: the Bitnami image appends MONGODB_EXTRA_FLAGS to mongod's argv.
    let mut server: Vec<&str> = argv.clone();
    if let Some(Some(w)) = words(&env, "MONGODB_EXTRA_FLAGS") {
        server.extend(w);
    }
    tls(&env, &server, &mut d.problems);
    port(&env, &server, &mut d.problems);
    login(subject, &env, &server, &mut d.problems);
    d
}

/// The shell flags the hooks will pass: Some(words), or None when unknown (a reference).
fn client_flags<'a>(env: &Env<'a>) -> Option<Vec<&'a str>> {
    words(env, "MONGODB_SHELL_EXTRA_FLAGS")
        .or_else(|| words(env, "MONGODB_CLIENT_EXTRA_FLAGS"))
        .unwrap_or(Some(Vec::new()))
}

fn blocking_unless_opaque(env: &Env<'_>, message: String) -> Problem {
    if env.opaque() {
        Problem::caution(format!(
            "{message} (unless the container's envFrom sets it: the hooks read only the env)"
        ))
    } else {
        Problem::blocking(&[Blocked::Backup, Blocked::Restore], message)
    }
}

fn tls(env: &Env<'_>, server: &[&str], out: &mut Vec<Problem>) {
    let mode = opt(server, "--tlsMode").or_else(|| opt(server, "--sslMode"));
    if !matches!(mode, Some("requireTLS" | "requireSSL")) {
        return;
    }
    let Some(client) = client_flags(env) else {
        return;
    };
    let ca = opt(server, "--tlsCAFile").unwrap_or("<CA file>");
    let pem = opt(server, "--tlsCertificateKeyFile").unwrap_or("<certificate+key PEM>");
    let has = |f: &str| {
        client
            .iter()
            .any(|w| *w == f || w.starts_with(&format!("{f}=")))
    };
    if !has("--tls") && !has("--ssl") {
        out.push(blocking_unless_opaque(
            env,
            format!(
                "mongod takes only TLS (--tlsMode requireTLS) but the hooks would connect in plain \
                 text: set MONGODB_CLIENT_EXTRA_FLAGS=\"--tls --tlsCAFile={ca} \
                 --tlsCertificateKeyFile={pem}\" in the container's env"
            ),
        ));
    } else if opt(server, "--tlsCAFile").is_some()
        && opt(server, "--tlsAllowConnectionsWithoutCertificates").is_none()
        && !server.contains(&"--tlsAllowConnectionsWithoutCertificates")
        && !has("--tlsCertificateKeyFile")
        && !has("--sslPEMKeyFile")
    {
        out.push(blocking_unless_opaque(
            env,
            format!(
                "mongod asks clients for a certificate (--tlsCAFile) but the hooks' shell flags \
                 have none: add --tlsCertificateKeyFile={pem} to MONGODB_CLIENT_EXTRA_FLAGS"
            ),
        ));
    }
}

fn port(env: &Env<'_>, server: &[&str], out: &mut Vec<Problem>) {
    let Some(p) = opt(server, "--port") else {
        return;
    };
    let hooks = match env.get("MONGODB_PORT_NUMBER") {
        Some(Value::Reference) => return,
        Some(Value::Literal(s)) if !s.is_empty() => s,
        _ => "27017",
    };
    if p.bytes().all(|b| b.is_ascii_digit()) && p != hooks {
        out.push(blocking_unless_opaque(
            env,
            format!(
                "mongod listens on port {p} (--port) but the hooks would connect to {hooks}: set \
                 MONGODB_PORT_NUMBER={p} in the container's env"
            ),
        ));
    }
}

fn login(subject: &Subject<'_>, env: &Env<'_>, server: &[&str], out: &mut Vec<Problem>) {
    let has = env.any_set(&[
        "MONGO_INITDB_ROOT_PASSWORD",
        "MONGO_INITDB_ROOT_PASSWORD_FILE",
        "MONGODB_ROOT_PASSWORD",
        "MONGODB_ROOT_PASSWORD_FILE",
        "MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD",
        "MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD_FILE",
        "MONGODB_PRIMARY_ROOT_PASSWORD",
        "MONGODB_PRIMARY_ROOT_PASSWORD_FILE",
    ]);
    if has || env.opaque() {
        return;
    }
    let why = if server.contains(&"--auth") || opt(server, "--keyFile").is_some() {
        Some("mongod runs with access control (--auth or --keyFile)")
    } else if subject.is_bitnami()
        && env.flag("ALLOW_EMPTY_PASSWORD") != Some(true)
        && !server.first().is_some_and(|p| p.ends_with("mongod"))
    {
        // The image's entrypoint (which the chart's setup.sh runs) refuses to start without a
        // root password unless ALLOW_EMPTY_PASSWORD=yes: this pod gets it from elsewhere (the
        // chart's auth.vaultCredentials file, a config file), where the hooks cannot look.
        Some(
            "the Bitnami image turns access control on unless ALLOW_EMPTY_PASSWORD=yes (its \
             root password comes from somewhere the hooks cannot read, such as a Vault file)",
        )
    } else {
        None
    };
    if let Some(why) = why {
        out.push(Problem::blocking(
            &[Blocked::Backup, Blocked::Restore],
            format!(
                "{why}, but the container's env has no root credentials for the hooks: set \
                 MONGODB_ROOT_PASSWORD (Bitnami) or MONGO_INITDB_ROOT_USERNAME and \
                 MONGO_INITDB_ROOT_PASSWORD (official image) from the root user's Secret"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn assess_c(c: &k8s_openapi::api::core::v1::Container) -> Deployment {
        assess_as("mongodb", c)
    }

    fn blocked(d: &Deployment, needle: &str) -> bool {
        d.blocks(Blocked::Backup)
            && d.blocks(Blocked::Restore)
            && d.problems.iter().any(|p| p.message.contains(needle))
    }

    const TLS: &str =
        "--tlsCertificateKeyFile=/certs/mongodb.pem --tlsCAFile=/certs/mongodb-ca-cert";

    #[test]
    fn bitnami_chart_standalone_and_tls_are_fine() {
        let server = format!("--tlsMode=requireTLS {TLS}");
        let client = format!("--tls {TLS}");
        let c = container(
            "docker.io/bitnami/mongodb:8.0",
            &[
                ("MONGODB_ROOT_USER", "root"),
                ("MONGODB_ROOT_PASSWORD", "<secret>"),
                ("ALLOW_EMPTY_PASSWORD", "no"),
                ("MONGODB_PORT_NUMBER", "27017"),
                ("MONGODB_EXTRA_FLAGS", &server),
                ("MONGODB_CLIENT_EXTRA_FLAGS", &client),
            ],
            &[],
        );
        let d = assess_c(&c);
        assert_eq!(d.role, Role::Primary);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn tls_required_without_client_flags_blocks_with_the_flags_to_set() {
        let server = format!("--tlsMode=requireTLS {TLS}");
        let c = container(
            "bitnami/mongodb:8.0",
            &[
                ("MONGODB_ROOT_PASSWORD", "<secret>"),
                ("MONGODB_EXTRA_FLAGS", &server),
            ],
            &[],
        );
        assert!(blocked(
            &assess_c(&c),
            "MONGODB_CLIENT_EXTRA_FLAGS=\"--tls --tlsCAFile=/certs/mongodb-ca-cert"
        ));
        // The official image, TLS on argv; a client pair missing where mongod asks for one.
        let c = container(
            "mongo:7",
            &[
                ("MONGO_INITDB_ROOT_USERNAME", "root"),
                ("MONGO_INITDB_ROOT_PASSWORD", "<secret>"),
                (
                    "MONGODB_CLIENT_EXTRA_FLAGS",
                    "--tls --tlsCAFile=/tls/ca.crt",
                ),
            ],
            &["--tlsMode", "requireTLS", "--tlsCAFile", "/tls/ca.crt"],
        );
        assert!(blocked(&assess_c(&c), "--tlsCertificateKeyFile"));
        // preferTLS still takes plain text.
        let c = container(
            "bitnami/mongodb:8.0",
            &[
                ("MONGODB_ROOT_PASSWORD", "<secret>"),
                ("MONGODB_EXTRA_FLAGS", "--tlsMode=preferTLS"),
            ],
            &[],
        );
        assert!(assess_c(&c).problems.is_empty());
        // envFrom may carry the flags: a caution.
        let c = with_env_from(container("mongo:7", &[], &["--tlsMode=requireTLS"]));
        let d = assess_c(&c);
        assert!(!d.blocks(Blocked::Backup) && d.problems.len() == 1, "{d:?}");
    }

    #[test]
    fn no_credentials_with_access_control_blocks() {
        let c = container("mongo:7", &[], &["--auth"]);
        assert!(blocked(&assess_c(&c), "MONGO_INITDB_ROOT_USERNAME"));
        let c = container(
            "bitnami/mongodb:8.0",
            &[("ALLOW_EMPTY_PASSWORD", "no")],
            &[],
        );
        assert!(blocked(&assess_c(&c), "ALLOW_EMPTY_PASSWORD"));
        let c = container("bitnami/mongodb:8.0", &[], &["mongod", "--dbpath", "/data"]);
        assert!(
            assess_c(&c).problems.is_empty(),
            "mongod run directly, no auth"
        );
        let c = container(
            "bitnami/mongodb:8.0",
            &[("ALLOW_EMPTY_PASSWORD", "yes")],
            &[],
        );
        assert!(assess_c(&c).problems.is_empty());
        let c = with_env_from(container("mongo:7", &[], &["--auth"]));
        assert!(assess_c(&c).problems.is_empty(), "envFrom may carry them");
        // A Bitnami secondary has the primary's root password only.
        let c = container(
            "bitnami/mongodb:8.0",
            &[
                ("MONGODB_REPLICA_SET_MODE", "secondary"),
                ("MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD", "<secret>"),
            ],
            &[],
        );
        let d = assess_c(&c);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert!(matches!(d.role, Role::Member { .. }));
    }

    #[test]
    fn members_arbiters_routers_and_ports() {
        let c = container(
            "bitnami/mongodb:8.0",
            &[
                ("MONGODB_REPLICA_SET_NAME", "rs0"),
                ("MONGODB_ROOT_PASSWORD", "<secret>"),
            ],
            &["/scripts/setup.sh"],
        );
        assert!(matches!(assess_c(&c).role, Role::Member { .. }));
        let c = container(
            "bitnami/mongodb:8.0",
            &[
                ("MONGODB_REPLICA_SET_MODE", "arbiter"),
                ("MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD", "<secret>"),
            ],
            &[],
        );
        assert!(blocked(&assess_c(&c), "arbiter"));
        let mut c = container("mongo:7", &[], &["--configdb", "cfg/a:27019"]);
        c.command = Some(vec!["mongos".into()]);
        assert!(blocked(&assess_c(&c), "mongos"));
        let c = container("mongo:7", &[], &["--port", "27018"]);
        assert!(blocked(&assess_c(&c), "MONGODB_PORT_NUMBER=27018"));
        let c = container(
            "mongo:7",
            &[("MONGODB_PORT_NUMBER", "27018")],
            &["--port", "27018", "--replSet", "rs0"],
        );
        let d = assess_c(&c);
        assert!(d.problems.is_empty() && matches!(d.role, Role::Member { .. }));
    }
}
