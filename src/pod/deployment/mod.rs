//! How the database in a pod's chosen container is deployed, read from the container's env and
//! arguments and the pod's labels the way the image's own entrypoint reads them: its replication
//! role, and whether the hooks can reach and log in to it (credentials, port, TLS).
//!
//! The hook scripts read the container's environment at run time; a pod whose env gives them no
//! way in gets hooks that fail on every backup or restore. [`assess`] says so at admission, with
//! the fix, so that such a hook is not injected silently. One submodule per engine family holds
//! the facts of its images; each must read exactly the variables its scripts read. Pure.

mod mongodb;
mod mysql;
mod postgres;
mod redis;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;

use crate::pod::image::ImageRef;
use crate::pod::version::{self, Version};

/// What is known of one pod for the assessment.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The template's engine (`postgresql`, `mysql`, `mariadb`, `redis`, `mongodb`, `kafka`).
    pub engine: &'a str,
    /// The container's image, when it parses.
    pub image: Option<&'a ImageRef>,
    /// The container the hooks run in.
    pub container: &'a Container,
    /// The pod's labels.
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> Subject<'a> {
    /// The container's environment as the kubelet will set it.
    pub fn env(&self) -> Env<'a> {
        Env::of(self.container)
    }

    /// The engine version the image tag names, if any.
    pub fn version(&self) -> Option<Version> {
        self.image.and_then(version::from_image)
    }

    /// The container's command then args, as the process will see them (`$(VAR)` unexpanded).
    pub fn argv(&self) -> impl Iterator<Item = &'a str> {
        let c = self.container;
        c.command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(String::as_str)
    }

    /// The image's repository name without registry or namespace (`bitnami/postgresql` ->
    /// `postgresql`).
    pub fn image_name(&self) -> &'a str {
        self.image.map(ImageRef::name).unwrap_or_default()
    }

    /// True when the image is one of Bitnami's (any of its registry namespaces).
    pub fn is_bitnami(&self) -> bool {
        self.image
            .and_then(ImageRef::namespaced_name)
            .is_some_and(|n| n.starts_with("bitnami"))
    }
}

/// One environment variable's value as far as the pod spec tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `value:` in the spec.
    Literal(&'a str),
    /// `valueFrom:` a Secret, ConfigMap or field: set, value unknown here.
    Reference,
}

/// A container's env: named entries (the last of a name wins, as in the kubelet) and whether
/// `envFrom` may add names this spec does not show.
#[derive(Clone, Debug, Default)]
pub struct Env<'a> {
    vars: BTreeMap<&'a str, Value<'a>>,
    opaque: bool,
}

impl<'a> Env<'a> {
    /// Reads `container.env` and `container.envFrom`.
    pub fn of(container: &'a Container) -> Self {
        let mut vars = BTreeMap::new();
        for e in container.env.iter().flatten() {
            let v = match (&e.value, &e.value_from) {
                (_, Some(_)) => Value::Reference,
                (Some(s), None) => Value::Literal(s.as_str()),
                (None, None) => Value::Literal(""),
            };
            vars.insert(e.name.as_str(), v);
        }
        let opaque = container.env_from.as_ref().is_some_and(|f| !f.is_empty());
        Self { vars, opaque }
    }

    /// The entry called `name`, if the spec has one.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.vars.get(name).copied()
    }

    /// The literal value of `name`, if it has one in the spec.
    pub fn literal(&self, name: &str) -> Option<&'a str> {
        match self.get(name)? {
            Value::Literal(s) => Some(s),
            Value::Reference => None,
        }
    }

    /// True when `name` is set to something non-empty (a reference counts: its value is
    /// unknown but a Secret holding an empty string is not the usual case).
    pub fn is_set(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Value::Literal(s)) => !s.is_empty(),
            Some(Value::Reference) => true,
            None => false,
        }
    }

    /// True when any of `names` is set.
    pub fn any_set(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.is_set(n))
    }

    /// True when `envFrom` may set variables this spec does not name: absence proves nothing.
    pub fn opaque(&self) -> bool {
        self.opaque
    }

    /// True when `name` is set or may be set through `envFrom`.
    pub fn may_be_set(&self, name: &str) -> bool {
        self.is_set(name) || self.opaque
    }

    /// The literal value of `name` read as a yes/no the way the images' shell scripts read it
    /// (`yes`/`true`/`1` and `no`/`false`/`0`, any case); `None` when unset, a reference or
    /// another word.
    pub fn flag(&self, name: &str) -> Option<bool> {
        let v = self.literal(name)?.to_ascii_lowercase();
        match v.as_str() {
            "yes" | "true" | "1" => Some(true),
            "no" | "false" | "0" => Some(false),
            _ => None,
        }
    }
}

/// The database's place in its replication topology, as the pod's env fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// A standalone server or a primary: it takes writes (the default when nothing says
    /// otherwise).
    #[default]
    Primary,
    /// A read replica or streaming standby whose primary is another pod, for the pod's life.
    /// `how` names what says so (e.g. `POSTGRES_REPLICATION_MODE=slave`).
    Replica {
        /// The setting that makes it a replica.
        how: &'static str,
    },
    /// A member of a cluster whose primary moves between pods at run time (repmgr, Galera):
    /// which member writes is not known at admission.
    Member {
        /// The clustering (`repmgr`, `Galera`).
        cluster: &'static str,
    },
}

/// What a problem rules out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// The backup hooks (pre and post) cannot work in this pod.
    Backup,
    /// The restore hook cannot work in this pod.
    Restore,
    /// Dump mode cannot be used (the snapshot hooks and the file-system backup warning stay).
    DumpMode,
}

/// Something in the pod that makes a hook fail, or may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What cannot work; empty for a caution (the hooks are injected and may fail).
    pub blocks: Vec<Blocked>,
    /// What fails, why, and the fix, in the user's words (no "velero-hook-injector:" prefix).
    pub message: String,
    /// Advice on how the deployment is backed up (a replica's own copy, say) that the hooks do
    /// not depend on and that nothing in the pod spec can show to be followed: an admission
    /// warning only, never a `render --check`/`audit` finding that could not be cleared.
    pub advice: bool,
}

impl Problem {
    /// A problem that rules out `blocks`.
    pub fn blocking(blocks: &[Blocked], message: impl Into<String>) -> Self {
        Self {
            blocks: blocks.to_vec(),
            message: message.into(),
            advice: false,
        }
    }

    /// A caution: the hooks are injected but may fail for the reason given.
    pub fn caution(message: impl Into<String>) -> Self {
        Self {
            blocks: Vec::new(),
            message: message.into(),
            advice: false,
        }
    }

    /// Advice: said when the pod is admitted, not reported by `render --check` or `audit`.
    pub fn advice(message: impl Into<String>) -> Self {
        Self {
            blocks: Vec::new(),
            message: message.into(),
            advice: true,
        }
    }
}

/// The assessment of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deployment {
    /// The replication role.
    pub role: Role,
    /// What will not work, or may not.
    pub problems: Vec<Problem>,
}

impl Deployment {
    /// True when `what` is ruled out by some problem.
    pub fn blocks(&self, what: Blocked) -> bool {
        self.problems.iter().any(|p| p.blocks.contains(&what))
    }
}

/// True when [`assess`] reads the facts of `engine`'s deployments (roles, credentials); for
/// other engines it answers the default.
pub fn knows(engine: &str) -> bool {
    matches!(
        engine,
        "postgresql" | "mysql" | "mariadb" | "redis" | "mongodb"
    )
}

/// Assesses the deployment of `subject`'s database. Engines without facts here get the default
/// (primary, no problems).
pub fn assess(subject: &Subject<'_>) -> Deployment {
    match subject.engine {
        "postgresql" => postgres::assess(subject),
        "mysql" | "mariadb" => mysql::assess(subject),
        "redis" => redis::assess(subject),
        "mongodb" => mongodb::assess(subject),
        _ => Deployment::default(),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for the engine modules' tests.
    use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, EnvVarSource};

    /// A container running `image` with literal env `vars` (a value `"<secret>"` becomes a
    /// `valueFrom` reference) and `args`.
    pub fn container(image: &str, vars: &[(&str, &str)], args: &[&str]) -> Container {
        Container {
            name: "database".into(),
            image: Some(image.into()),
            env: Some(
                vars.iter()
                    .map(|(k, v)| EnvVar {
                        name: (*k).into(),
                        value: (*v != "<secret>").then(|| (*v).into()),
                        value_from: (*v == "<secret>").then(EnvVarSource::default),
                    })
                    .collect(),
            ),
            args: (!args.is_empty()).then(|| args.iter().map(|a| (*a).into()).collect()),
            ..Default::default()
        }
    }

    /// The assessment of `c`, run as the template of `engine` in a pod without labels.
    pub fn assess_as(engine: &str, c: &Container) -> super::Deployment {
        let image = crate::pod::image::ImageRef::parse(c.image.as_deref().unwrap_or_default()).ok();
        let labels = std::collections::BTreeMap::new();
        super::assess(&super::Subject {
            engine,
            image: image.as_ref(),
            container: c,
            labels: &labels,
        })
    }

    /// The same container with an `envFrom` (names unknown to the spec).
    pub fn with_env_from(mut c: Container) -> Container {
        c.env_from = Some(vec![EnvFromSource::default()]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn env_reads_literals_references_and_env_from() {
        let c = container(
            "bitnami/postgresql:16",
            &[
                ("A", "x"),
                ("B", "<secret>"),
                ("C", ""),
                ("A", "y"),
                ("F", "Yes"),
            ],
            &[],
        );
        let env = Env::of(&c);
        assert_eq!(env.literal("A"), Some("y"), "the last entry of a name wins");
        assert_eq!(env.get("B"), Some(Value::Reference));
        assert!(env.is_set("B") && !env.is_set("C") && !env.is_set("D"));
        assert_eq!(env.flag("F"), Some(true));
        assert!(!env.may_be_set("D"));
        let c = with_env_from(c);
        assert!(Env::of(&c).may_be_set("D"));
    }

    #[test]
    fn subject_names_the_image_and_its_vendor() {
        let c = container(
            "docker.io/bitnamilegacy/postgresql:16",
            &[],
            &["--port", "5433"],
        );
        let image = ImageRef::parse(c.image.as_deref().unwrap_or_default()).ok();
        let labels = BTreeMap::new();
        let s = Subject {
            engine: "postgresql",
            image: image.as_ref(),
            container: &c,
            labels: &labels,
        };
        assert_eq!(s.image_name(), "postgresql");
        assert!(s.is_bitnami());
        assert_eq!(s.argv().collect::<Vec<_>>(), ["--port", "5433"]);
        assert_eq!(s.version(), Version::parse("16"));
    }
}
