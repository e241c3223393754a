//! postgres: the deployment facts of its images.
//!
//! Credentials, as the hook scripts read them (templates/scripts/lib/pg.sh), in the same order:
//! `POSTGRES_POSTGRES_PASSWORD_FILE`, `POSTGRES_POSTGRES_PASSWORD` or `POSTGRESQL_ADMIN_PASSWORD`
//! make the hooks log in as `postgres`; otherwise they log in as `POSTGRES_USER` (default
//! `postgres`) with `POSTGRES_PASSWORD_FILE` or `POSTGRES_PASSWORD`. `PGHOST`, `PGPORT` and
//! `POSTGRESQL_PORT_NUMBER` only choose where they connect and raise nothing here.
//!
//! Who that user is depends on the image. In the official image (and PostGIS, Timescale...)
//! `POSTGRES_USER` is the superuser initdb creates. In Bitnami's, `POSTGRES_USER` other than
//! `postgres` is an app user created with CREATEDB only, and the superuser `postgres` gets a
//! password only from `POSTGRES_POSTGRES_PASSWORD[_FILE]` (chart: `auth.enablePostgresUser`,
//! default true); without it, `pg_hba.conf` asks every connection for a password, so the hooks
//! are the app user. CHECKPOINT (the pre hook) needs a superuser, or on 15+ a member of
//! `pg_checkpoint`; pg_dumpall (dump mode) needs a superuser. The restore check works as any
//! user.
//!
//! Role, as the images read it: Bitnami's `POSTGRES_REPLICATION_MODE` (alias
//! `POSTGRESQL_REPLICATION_MODE`) `slave` is a streaming standby of `POSTGRES_MASTER_HOST` for
//! the pod's life (the chart's read replicas, and the primary of `primary.standby.enabled`); its
//! entrypoint clones an empty data volume from that primary with pg_basebackup, so after a
//! restore without its volume it comes back by itself. The `postgresql-repmgr` image
//! (postgresql-ha chart; `REPMGR_*` env) runs members whose primary repmgr moves at run time.
//! The restore check finds the role from the server itself (`pg_is_in_recovery()`, the WAL
//! receiver), not from this env.

use super::{Blocked, Deployment, Env, Problem, Role, Subject};
use crate::pod::version::Version;

/// The variables that give the hooks the superuser's password (lib/pg.sh).
const SUPERUSER_PASSWORD: &[&str] = &[
    "POSTGRES_POSTGRES_PASSWORD_FILE",
    "POSTGRES_POSTGRES_PASSWORD",
    "POSTGRESQL_ADMIN_PASSWORD",
];

/// Why a standby's own snapshot rarely restores: Velero copies one pod's volumes after
/// another's, and a standby copied after its primary, with writes in between, has replayed WAL
/// the restored primary never gets (measured: its restore check then fails, as it must).
const STANDBY_COPY: &str = "this PostgreSQL standby's volume is copied apart from its primary's; restored, a copy newer than the primary's holds changes the primary lost, and the restore check fails on it asking for a re-clone. A standby needs no backup of its own: label its PersistentVolumeClaims velero.io/exclude-from-backup=true, and on restore the image clones the empty volume from the restored primary";

/// The same for repmgr members, whose primary moves: no member can be left out of the backup.
const MEMBER_COPY: &str = "the volumes of this repmgr cluster's members are copied one after another; restored, a standby whose copy is newer than the primary's holds changes the primary lost, and its restore check fails asking for a re-clone (empty that member's data volume and restart its pod: the image clones it from the primary)";

/// Assesses a postgres pod.
pub(super) fn assess(subject: &Subject<'_>) -> Deployment {
    let env = subject.env();
    let role = role(subject, &env);
    let mut problems = Vec::new();
    match role {
        Role::Replica { .. } => problems.push(Problem::advice(STANDBY_COPY)),
        Role::Member { .. } => problems.push(Problem::advice(MEMBER_COPY)),
        Role::Primary => {}
    }
    if let Some(user) = app_user_only(subject, &env) {
        problems.extend(app_user_problems(user, subject.version(), role));
    }
    Deployment { role, problems }
}

/// The pod's replication role.
fn role(subject: &Subject<'_>, env: &Env<'_>) -> Role {
    let repmgr = subject.image_name() == "postgresql-repmgr"
        || env.any_set(&["REPMGR_NODE_NAME", "REPMGR_PARTNER_NODES"]);
    if repmgr {
        return Role::Member { cluster: "repmgr" };
    }
    for how in [
        (
            "POSTGRES_REPLICATION_MODE",
            "POSTGRES_REPLICATION_MODE=slave",
        ),
        (
            "POSTGRESQL_REPLICATION_MODE",
            "POSTGRESQL_REPLICATION_MODE=slave",
        ),
    ] {
        if env.literal(how.0) == Some("slave") {
            return Role::Replica { how: how.1 };
        }
    }
    Role::Primary
}

/// True for a Bitnami image, or an image with the env only Bitnami's chart sets (a mirror
/// under another name).
fn bitnami(subject: &Subject<'_>, env: &Env<'_>) -> bool {
    subject.is_bitnami() || env.any_set(&["BITNAMI_DEBUG", "POSTGRESQL_VOLUME_DIR"])
}

/// The app user the hooks log in as when the pod gives them no superuser: a Bitnami image
/// whose `POSTGRES_USER` is not `postgres` and no superuser password. `None` when the env may
/// hold one (`envFrom`) or the user is a superuser.
fn app_user_only<'a>(subject: &Subject<'a>, env: &Env<'a>) -> Option<&'a str> {
    if env.opaque() || env.any_set(SUPERUSER_PASSWORD) || !bitnami(subject, env) {
        return None;
    }
    match env.get("POSTGRES_USER")? {
        super::Value::Literal("" | "postgres") => None,
        super::Value::Literal(u) => Some(u),
        super::Value::Reference => Some("the POSTGRES_USER user"),
    }
}

/// What an app user without superuser rights cannot do: CHECKPOINT before 15 (blocked), on
/// 15+ or an unknown version without `pg_checkpoint` (a caution), and pg_dumpall (dump mode,
/// for a primary: a replica or member is never given dump mode).
fn app_user_problems(user: &str, version: Option<Version>, role: Role) -> Vec<Problem> {
    let quoted = if user.starts_with("the ") {
        user.to_owned()
    } else {
        format!("\"{user}\"")
    };
    let superuser = "give the container the superuser's password (Bitnami chart: auth.enablePostgresUser=true, which sets POSTGRES_POSTGRES_PASSWORD or POSTGRES_POSTGRES_PASSWORD_FILE)";
    let before_15 = Version::parse("15").is_some_and(|v15| version.is_some_and(|v| v < v15));
    let mut out = vec![if before_15 {
        Problem::blocking(
            &[Blocked::Backup],
            format!(
                "the backup hook runs CHECKPOINT as {quoted}, the only user in the container's env, which is not a superuser; PostgreSQL before 15 lets only a superuser run it, so every backup would fail. Fix: {superuser}"
            ),
        )
    } else {
        Problem::caution(format!(
            "the backup hook runs CHECKPOINT as {quoted}, the only user in the container's env, which is not a superuser: it fails on every backup unless that user has pg_checkpoint (PostgreSQL 15+). Fix: run GRANT pg_checkpoint TO {quoted} as a superuser, or {superuser}"
        ))
    }];
    if role == Role::Primary {
        out.push(Problem::blocking(
            &[Blocked::DumpMode],
            format!(
                "dump mode needs a superuser (pg_dumpall reads every role and database) and the container's env has only {quoted}. Fix: {superuser}; until then give the data volume a CSI snapshot"
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{container, with_env_from};
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn assess_of(c: &Container) -> Deployment {
        super::super::testing::assess_as("postgresql", c)
    }

    const BITNAMI: &str = "docker.io/bitnami/postgresql:17.2.0-debian-12-r5";

    /// The chart's env for `auth.enablePostgresUser=false` with `auth.username=app`, password
    /// files (the default).
    fn app_only(image: &str) -> Container {
        container(
            image,
            &[
                ("BITNAMI_DEBUG", "false"),
                ("POSTGRESQL_PORT_NUMBER", "5432"),
                ("POSTGRESQL_VOLUME_DIR", "/bitnami/postgresql"),
                ("POSTGRES_USER", "app"),
                (
                    "POSTGRES_PASSWORD_FILE",
                    "/opt/bitnami/postgresql/secrets/password",
                ),
                ("POSTGRES_DATABASE", "app"),
            ],
            &[],
        )
    }

    #[test]
    fn bitnami_standalone_with_the_postgres_user_is_a_primary_without_problems() {
        let c = container(
            BITNAMI,
            &[
                ("BITNAMI_DEBUG", "false"),
                ("POSTGRES_USER", "app"),
                ("POSTGRES_PASSWORD", "<secret>"),
                ("POSTGRES_POSTGRES_PASSWORD", "<secret>"),
            ],
            &[],
        );
        assert_eq!(assess_of(&c), Deployment::default());
        let c = container(
            BITNAMI,
            &[
                ("BITNAMI_DEBUG", "false"),
                (
                    "POSTGRES_PASSWORD_FILE",
                    "/opt/bitnami/postgresql/secrets/postgres-password",
                ),
            ],
            &[],
        );
        assert_eq!(assess_of(&c), Deployment::default());
    }

    #[test]
    fn bitnami_app_user_only_before_15_blocks_the_backup_and_dump_mode() {
        let d = assess_of(&app_only("bitnami/postgresql:14.13.0-debian-12-r0"));
        assert_eq!(d.role, Role::Primary);
        assert!(
            d.blocks(Blocked::Backup) && d.blocks(Blocked::DumpMode),
            "{d:?}"
        );
        assert!(
            !d.blocks(Blocked::Restore),
            "the restore check works as app"
        );
        let m = &d.problems[0].message;
        assert!(
            m.contains("\"app\"") && m.contains("auth.enablePostgresUser=true"),
            "{m}"
        );
        assert!(!m.contains("pg_checkpoint"), "no such role before 15: {m}");
    }

    #[test]
    fn bitnami_app_user_only_on_15_or_later_is_a_caution_naming_the_grant() {
        for image in [BITNAMI, "bitnami/postgresql:latest"] {
            let d = assess_of(&app_only(image));
            assert!(!d.blocks(Blocked::Backup), "{image}: {d:?}");
            assert!(d.blocks(Blocked::DumpMode), "{image}: {d:?}");
            let caution = d.problems.iter().find(|p| p.blocks.is_empty() && !p.advice);
            let m = &caution.expect("a caution").message;
            assert!(m.contains("GRANT pg_checkpoint TO \"app\""), "{m}");
            assert!(m.contains("auth.enablePostgresUser=true"), "{m}");
        }
    }

    #[test]
    fn env_from_or_a_superuser_password_silences_the_app_user_finding() {
        assert!(
            assess_of(&with_env_from(app_only(BITNAMI)))
                .problems
                .is_empty(),
            "envFrom may hold POSTGRES_POSTGRES_PASSWORD"
        );
        for v in SUPERUSER_PASSWORD {
            let mut c = app_only(BITNAMI);
            c.env
                .get_or_insert_with(Vec::new)
                .push(k8s_openapi::api::core::v1::EnvVar {
                    name: (*v).into(),
                    value: Some("x".into()),
                    ..Default::default()
                });
            assert!(assess_of(&c).problems.is_empty(), "{v}");
        }
    }

    #[test]
    fn official_and_sclorg_users_are_superusers() {
        let c = container(
            "postgres:16",
            &[("POSTGRES_USER", "app"), ("POSTGRES_PASSWORD", "<secret>")],
            &[],
        );
        assert_eq!(assess_of(&c), Deployment::default());
        let c = container(
            "quay.io/sclorg/postgresql-16-c9s",
            &[
                ("POSTGRESQL_USER", "app"),
                ("POSTGRESQL_PASSWORD", "<secret>"),
                ("POSTGRESQL_ADMIN_PASSWORD", "<secret>"),
            ],
            &[],
        );
        assert_eq!(assess_of(&c), Deployment::default());
    }

    #[test]
    fn bitnami_without_any_password_is_trusted_not_flagged() {
        // enablePostgresUser=false and no custom user: the chart sets ALLOW_EMPTY_PASSWORD and
        // the image leaves pg_hba.conf at trust.
        let c = container(
            BITNAMI,
            &[("BITNAMI_DEBUG", "false"), ("ALLOW_EMPTY_PASSWORD", "true")],
            &[],
        );
        assert_eq!(assess_of(&c), Deployment::default());
    }

    #[test]
    fn read_replica_is_a_replica_with_the_primary_s_credentials() {
        let c = container(
            BITNAMI,
            &[
                ("BITNAMI_DEBUG", "false"),
                (
                    "POSTGRES_PASSWORD_FILE",
                    "/opt/bitnami/postgresql/secrets/postgres-password",
                ),
                ("POSTGRES_REPLICATION_MODE", "slave"),
                ("POSTGRES_REPLICATION_USER", "repl_user"),
                (
                    "POSTGRES_REPLICATION_PASSWORD_FILE",
                    "/opt/bitnami/postgresql/secrets/replication-password",
                ),
                ("POSTGRES_CLUSTER_APP_NAME", "my_application"),
                ("POSTGRES_MASTER_HOST", "pg-postgresql-primary"),
                ("POSTGRES_MASTER_PORT_NUMBER", "5432"),
            ],
            &[],
        );
        let d = assess_of(&c);
        assert_eq!(
            d.role,
            Role::Replica {
                how: "POSTGRES_REPLICATION_MODE=slave"
            }
        );
        assert_eq!(d.problems, [Problem::advice(STANDBY_COPY)], "{d:?}");
        let primary = container(
            BITNAMI,
            &[
                ("POSTGRES_PASSWORD", "<secret>"),
                ("POSTGRES_REPLICATION_MODE", "master"),
            ],
            &[],
        );
        assert_eq!(assess_of(&primary).role, Role::Primary);
    }

    #[test]
    fn read_replica_with_only_the_app_user_gets_the_checkpoint_finding_not_dump_mode() {
        let mut c = app_only("bitnami/postgresql:13");
        c.env
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::EnvVar {
                name: "POSTGRES_REPLICATION_MODE".into(),
                value: Some("slave".into()),
                ..Default::default()
            });
        let d = assess_of(&c);
        assert!(matches!(d.role, Role::Replica { .. }));
        assert!(
            d.blocks(Blocked::Backup) && !d.blocks(Blocked::DumpMode),
            "{d:?}"
        );
    }

    #[test]
    fn postgresql_ha_members_are_repmgr_members() {
        let c = container(
            "docker.io/bitnami/postgresql-repmgr:16.4.0-debian-12-r12",
            &[
                (
                    "POSTGRES_PASSWORD_FILE",
                    "/opt/bitnami/postgresql/secrets/password",
                ),
                ("POSTGRES_USER", "postgres"),
                ("REPMGR_NODE_NAME", "$(MY_POD_NAME)"),
                (
                    "REPMGR_PARTNER_NODES",
                    "pg-ha-postgresql-0.pg-ha-postgresql-headless",
                ),
            ],
            &[],
        );
        let d = assess_of(&c);
        assert_eq!(d.role, Role::Member { cluster: "repmgr" });
        assert_eq!(d.problems, [Problem::advice(MEMBER_COPY)], "{d:?}");
    }
}
