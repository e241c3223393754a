//! mysql and mariadb: the deployment facts of their images, read exactly as the hook scripts
//! (`templates/scripts/lib/my.sh`) read the container's env at run time:
//!
//! - Role: `MARIADB_REPLICATION_MODE`, else `MYSQL_REPLICATION_MODE`, equal to `slave` (Bitnami
//!   `architecture=replication` secondary) makes a replica; so does `MARIADB_MASTER_HOST` alone
//!   (the official mariadb image's replica). A Galera node (the `mariadb-galera` or
//!   `percona-xtradb-cluster` image, or any `MARIADB_GALERA_*` variable) is a cluster member.
//! - Credentials: on a Bitnami secondary the scripts log in as the primary's root, copied by
//!   replication (the secondary creates no account): `MARIADB_MASTER_ROOT_USER`, else
//!   `MYSQL_MASTER_ROOT_USER`, else `root`, with `MARIADB_MASTER_ROOT_PASSWORD_FILE`, else
//!   `MYSQL_MASTER_ROOT_PASSWORD_FILE` (a file wins), else `MARIADB_MASTER_ROOT_PASSWORD`, else
//!   `MYSQL_MASTER_ROOT_PASSWORD`. Anywhere else the same names without `MASTER_`.
//! - No password: the scripts log in without one, which works only where the image made root's
//!   password empty: `MYSQL_ALLOW_EMPTY_PASSWORD` or `MARIADB_ALLOW_EMPTY_ROOT_PASSWORD`
//!   (official images: any value) or `ALLOW_EMPTY_PASSWORD=yes` (Bitnami), or where an option
//!   file of the image gives the client a password; otherwise the server refuses them and they
//!   fail at once with the fix. So: `MARIADB_RANDOM_ROOT_PASSWORD`, `MYSQL_RANDOM_ROOT_PASSWORD`
//!   or `MARIADB_ROOT_PASSWORD_HASH` set (a password the pod does not hold; the scripts do not
//!   read these, they only name the reason) and a secondary without the primary's root password
//!   block the hooks; no password variable at all is a caution (an option file may hold one);
//!   a container with no env at all is set up some other way and gets no claim.
//!
//! Dump mode stays open to a replica: on an empty volume both images' secondaries run CHANGE
//! MASTER TO without a binary-log position and replay the freshly initialised primary's binary
//! log from its first file, so they receive what the primary's restore hook loads.

use super::{Blocked, Deployment, Env, Problem, Role, Subject};

/// Assesses a mysql or mariadb pod.
pub(super) fn assess(subject: &Subject<'_>) -> Deployment {
    let env = subject.env();
    let role = role(subject, &env);
    let mut problems = Vec::new();
    // The fix names the image's own family of variables (the scripts read both).
    let x = if subject.image_name().contains("mariadb") {
        "MARIADB"
    } else {
        "MYSQL"
    };
    // A container with no env at all is set up some other way (an image with its own option
    // files): the env says nothing about the credentials, so nothing is claimed.
    let bare = subject.container.env.as_ref().is_none_or(|e| e.is_empty());
    if let Some(p) = credentials(&env, x).filter(|_| !bare) {
        problems.push(p);
    }
    Deployment { role, problems }
}

/// The first non-empty literal of `names`, as `${A:-${B:-}}` reads them.
fn first_literal<'a>(env: &Env<'a>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| env.literal(n).filter(|v| !v.is_empty()))
}

/// True when the scripts log in as the primary's root (a Bitnami secondary).
fn is_secondary(env: &Env<'_>) -> bool {
    first_literal(env, &["MARIADB_REPLICATION_MODE", "MYSQL_REPLICATION_MODE"]) == Some("slave")
}

fn role(subject: &Subject<'_>, env: &Env<'_>) -> Role {
    let galera_image = matches!(
        subject.image_name(),
        "mariadb-galera" | "percona-xtradb-cluster"
    );
    let galera_env = [
        "MARIADB_GALERA_CLUSTER_ADDRESS",
        "MARIADB_GALERA_CLUSTER_NAME",
        "MARIADB_GALERA_CLUSTER_BOOTSTRAP",
    ]
    .iter()
    .any(|n| env.get(n).is_some());
    if galera_image || galera_env {
        return Role::Member { cluster: "Galera" };
    }
    if is_secondary(env) {
        let how = if env.literal("MARIADB_REPLICATION_MODE") == Some("slave") {
            "MARIADB_REPLICATION_MODE=slave"
        } else {
            "MYSQL_REPLICATION_MODE=slave"
        };
        return Role::Replica { how };
    }
    if env.is_set("MARIADB_MASTER_HOST") {
        return Role::Replica {
            how: "MARIADB_MASTER_HOST",
        };
    }
    Role::Primary
}

/// A problem when the env gives the hooks no way to log in.
fn credentials(env: &Env<'_>, x: &str) -> Option<Problem> {
    let m = if is_secondary(env) { "MASTER_" } else { "" };
    let names = |suffix: &str| [format!("MARIADB_{m}{suffix}"), format!("MYSQL_{m}{suffix}")];
    let password = names("ROOT_PASSWORD_FILE")
        .iter()
        .chain(names("ROOT_PASSWORD").iter())
        .any(|n| env.is_set(n));
    if password {
        return None;
    }
    let unknown = [
        "MARIADB_RANDOM_ROOT_PASSWORD",
        "MYSQL_RANDOM_ROOT_PASSWORD",
        "MARIADB_ROOT_PASSWORD_HASH",
    ]
    .into_iter()
    .find(|n| env.is_set(n));
    if let Some(n) = unknown {
        return Some(Problem::blocking(
            &[Blocked::Backup, Blocked::Restore],
            format!(
                "{n} is set, so the root password is not in the pod's env and the backup and \
                 restore hooks cannot log in. Fix: put the root password in a Secret and give the \
                 container {x}_ROOT_PASSWORD_FILE or {x}_ROOT_PASSWORD from it"
            ),
        ));
    }
    let empty_root = env.any_set(&[
        "MYSQL_ALLOW_EMPTY_PASSWORD",
        "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
    ]) || env.flag("ALLOW_EMPTY_PASSWORD") == Some(true);
    if empty_root || env.opaque() {
        return None;
    }
    let [maria, mysql] = names("ROOT_PASSWORD");
    if m.is_empty() {
        // Nothing in the env says what root's password is: an option file the client reads
        // ([client] in the image's my.cnf or ~/.my.cnf) may give it, so this is a caution.
        return Some(Problem::caution(format!(
            "the container has no {maria}[_FILE] nor {mysql}[_FILE], so the backup and restore \
             hooks log in as root without a password, which the server refuses unless root's \
             password is empty or an option file of the image gives the client one. Fix: give \
             the container the root password from a Secret as {x}_ROOT_PASSWORD_FILE or \
             {x}_ROOT_PASSWORD"
        )));
    }
    Some(Problem::blocking(
        &[Blocked::Backup, Blocked::Restore],
        format!(
            "this replication secondary has no {maria}[_FILE] nor {mysql}[_FILE]: it holds the \
             primary's accounts, and without the primary's root password the backup and restore \
             hooks are refused. Fix: give the container the primary's root password from its \
             Secret as {x}_MASTER_ROOT_PASSWORD_FILE or {x}_MASTER_ROOT_PASSWORD"
        ),
    ))
}

#[cfg(test)]
mod tests {

    use super::super::testing::{container, with_env_from};
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    fn assess_of(c: &Container) -> Deployment {
        let engine = if c.image.as_deref().unwrap_or_default().contains("maria") {
            "mariadb"
        } else {
            "mysql"
        };
        super::super::testing::assess_as(engine, c)
    }

    fn blocked(d: &Deployment) -> bool {
        d.blocks(Blocked::Backup) && d.blocks(Blocked::Restore) && !d.blocks(Blocked::DumpMode)
    }

    #[test]
    fn bitnami_standalone_and_primary_log_in_as_root() {
        for vars in [
            &[("MARIADB_ROOT_PASSWORD", "<secret>")][..],
            &[(
                "MARIADB_ROOT_PASSWORD_FILE",
                "/opt/bitnami/mariadb/secrets/mariadb-root-password",
            )],
            &[
                ("MARIADB_ROOT_PASSWORD", "<secret>"),
                ("MARIADB_REPLICATION_MODE", "master"),
                ("MARIADB_REPLICATION_USER", "replicator"),
            ],
        ] {
            let d = assess_of(&container("bitnami/mariadb:11.4", vars, &[]));
            assert_eq!(d, Deployment::default(), "{vars:?}");
        }
        let d = assess_of(&container(
            "bitnami/mysql:8.4",
            &[
                ("MYSQL_ROOT_PASSWORD", "<secret>"),
                ("MYSQL_REPLICATION_MODE", "master"),
            ],
            &[],
        ));
        assert_eq!(d, Deployment::default());
    }

    #[test]
    fn bitnami_secondary_is_a_replica_using_the_primary_root() {
        for (image, x) in [
            ("bitnami/mariadb:11.4", "MARIADB"),
            ("bitnami/mysql:8.4", "MYSQL"),
        ] {
            let mode = format!("{x}_REPLICATION_MODE");
            let host = format!("{x}_MASTER_HOST");
            let user = format!("{x}_MASTER_ROOT_USER");
            let pw = format!("{x}_MASTER_ROOT_PASSWORD");
            let file = format!("{pw}_FILE");
            let base = [
                (mode.as_str(), "slave"),
                (host.as_str(), "db-primary"),
                (user.as_str(), "root"),
            ];
            for extra in [(pw.as_str(), "<secret>"), (file.as_str(), "/secrets/root")] {
                let vars: Vec<_> = base.iter().copied().chain([extra]).collect();
                let d = assess_of(&container(image, &vars, &[]));
                assert!(
                    matches!(d.role, Role::Replica { how } if how.starts_with(x)),
                    "{d:?}"
                );
                assert!(d.problems.is_empty(), "{d:?}");
            }
            // The chart never gives a secondary *_ROOT_PASSWORD; alone it does not log in.
            let own = format!("{x}_ROOT_PASSWORD");
            let vars: Vec<_> = base
                .iter()
                .copied()
                .chain([(own.as_str(), "<secret>")])
                .collect();
            let d = assess_of(&container(image, &vars, &[]));
            assert!(blocked(&d), "{d:?}");
            assert!(d.problems[0].message.contains(&pw), "names the fix: {d:?}");
            // Behind envFrom the password may be there: no claim.
            let d = assess_of(&with_env_from(container(image, &base, &[])));
            assert!(d.problems.is_empty(), "{d:?}");
        }
    }

    #[test]
    fn galera_nodes_are_members() {
        let d = assess_of(&container(
            "bitnami/mariadb-galera:11.4",
            &[
                ("MARIADB_GALERA_CLUSTER_NAME", "galera"),
                ("MARIADB_GALERA_CLUSTER_ADDRESS", "gcomm://a,b,c"),
                ("MARIADB_ROOT_USER", "root"),
                ("MARIADB_ROOT_PASSWORD", "<secret>"),
            ],
            &[],
        ));
        assert_eq!(d.role, Role::Member { cluster: "Galera" });
        assert!(d.problems.is_empty());
        let d = assess_of(&container(
            "percona/percona-xtradb-cluster:8.0",
            &[("MYSQL_ROOT_PASSWORD", "<secret>")],
            &[],
        ));
        assert_eq!(d.role, Role::Member { cluster: "Galera" });
    }

    #[test]
    fn official_images_password_settings() {
        // Password, password file, allow-empty: the hooks log in.
        for vars in [
            &[("MYSQL_ROOT_PASSWORD", "password")][..],
            &[("MYSQL_ROOT_PASSWORD_FILE", "/run/secrets/root")],
            &[("MYSQL_ALLOW_EMPTY_PASSWORD", "1")],
            &[("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "yes")],
            &[("ALLOW_EMPTY_PASSWORD", "yes")],
        ] {
            let d = assess_of(&container("mysql:8.4", vars, &[]));
            assert_eq!(d, Deployment::default(), "{vars:?}");
        }
        // Random or hash-only root password: blocked, naming the setting and the fix.
        for n in [
            "MYSQL_RANDOM_ROOT_PASSWORD",
            "MARIADB_RANDOM_ROOT_PASSWORD",
            "MARIADB_ROOT_PASSWORD_HASH",
        ] {
            let d = assess_of(&container("mariadb:11.4", &[(n, "yes")], &[]));
            assert!(blocked(&d), "{d:?}");
            assert!(d.problems[0].message.contains(n), "{d:?}");
            assert!(d.problems[0].message.contains("_FILE"), "{d:?}");
        }
        // No password (Bitnami's "no" is not yes): a caution, an option file may hold one.
        let d = assess_of(&container(
            "mariadb:11.4",
            &[("ALLOW_EMPTY_PASSWORD", "no")],
            &[],
        ));
        assert!(!d.problems.is_empty(), "{d:?}");
        assert!(d.problems.iter().all(|p| p.blocks.is_empty()), "{d:?}");
        assert!(d.problems[0].message.contains("Fix: give"), "{d:?}");
        // No env at all: the image is set up some other way, nothing is claimed.
        assert_eq!(
            assess_of(&container("mariadb:11.4", &[], &[])),
            Deployment::default()
        );
        // The official mariadb image's replica keeps its own root.
        let d = assess_of(&container(
            "mariadb:11.4",
            &[
                ("MARIADB_MASTER_HOST", "db-0"),
                ("MARIADB_ROOT_PASSWORD", "<secret>"),
            ],
            &[],
        ));
        assert_eq!(
            d.role,
            Role::Replica {
                how: "MARIADB_MASTER_HOST"
            }
        );
        assert!(d.problems.is_empty());
    }
}
