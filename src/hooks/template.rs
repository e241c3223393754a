//! The hook template library: data files embedded in the binary, validated on load.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

use crate::hooks::script;
use crate::hooks::velero::{self, GoDuration, OnError};
use crate::pod::image::ImageRef;
use crate::pod::version::Version;

/// Built-in templates, embedded at compile time (file name, YAML text).
const BUILTIN: &[(&str, &str)] = &[
    (
        "postgres.yaml",
        include_str!("../../templates/postgres.yaml"),
    ),
    ("mysql.yaml", include_str!("../../templates/mysql.yaml")),
    ("mariadb.yaml", include_str!("../../templates/mariadb.yaml")),
    ("redis.yaml", include_str!("../../templates/redis.yaml")),
    ("kafka.yaml", include_str!("../../templates/kafka.yaml")),
    ("mongodb.yaml", include_str!("../../templates/mongodb.yaml")),
];

/// Namespaces Bitnami publishes the same images under; treated as one when matching.
const BITNAMI_ALIASES: &[&str] = &["bitnamilegacy", "bitnamisecure"];

/// Why a template file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The YAML does not parse or does not fit the schema.
    #[error("{file}{}: {reason}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// Source file.
        file: String,
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Reading the file failed.
    #[error("{file}: {source}")]
    Io {
        /// Source file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One template: which images it matches and the hooks it injects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    /// Unique name, used in `velero-hook-injector.io/template`.
    pub name: String,
    /// Engine family, e.g. `postgresql`.
    pub engine: String,
    /// What the hooks guarantee and what they do not.
    pub description: String,
    /// Which images this template applies to.
    #[serde(rename = "match")]
    pub matcher: MatchRules,
    /// Extra text for the admission warning, e.g. "crash-consistent only".
    #[serde(default)]
    pub warning: Option<String>,
    /// The hooks.
    pub hooks: Hooks,
    /// The hooks keep state between pre and post in `$TMPDIR` (default `/tmp`) of the
    /// container, so they need it writable (admission warns when a read-only root filesystem
    /// leaves nothing writable there).
    #[serde(default)]
    pub state_in_tmp: bool,
    /// What changes when Velero copies the data volume with file-system backup (kopia).
    #[serde(default)]
    pub fs_backup: Option<FsBackup>,
}

/// A template's behaviour under Velero's file-system backup, which copies the volume file by
/// file while the database runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsBackup {
    /// Replaces `warning` for such pods: what the hooks guarantee for a live file copy.
    pub warning: String,
    /// Dump mode: hooks that replace `hooks` when the webhook can give the pod a dump volume
    /// that Velero copies instead of the live data volume (see `detect`).
    #[serde(default)]
    pub dump: Option<Hooks>,
}

/// Image match rules of a template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchRules {
    /// Repository names compared exactly with the last one or two path components.
    #[serde(default)]
    pub images: Vec<String>,
    /// Regexes over the last path component (e.g. `^postgresql-\d+$`).
    #[serde(default, rename = "imagePatterns")]
    pub image_pattern_sources: Vec<String>,
    /// Versions (from the tag) this template supports; unknown versions always match.
    #[serde(default)]
    pub versions: Option<VersionRange>,
    #[serde(skip)]
    image_patterns: Vec<Regex>,
}

/// Inclusive minimum, exclusive maximum.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRange {
    /// Lowest supported version (inclusive).
    #[serde(default)]
    pub min: Option<Version>,
    /// First unsupported version (exclusive).
    #[serde(default)]
    pub max: Option<Version>,
}

impl VersionRange {
    /// True when `v` lies in the range.
    pub fn contains(&self, v: &Version) -> bool {
        self.min.as_ref().is_none_or(|min| v >= min) && self.max.as_ref().is_none_or(|max| v < max)
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.min, &self.max) {
            (Some(a), Some(b)) => write!(f, ">={a}, <{b}"),
            (Some(a), None) => write!(f, ">={a}"),
            (None, Some(b)) => write!(f, "<{b}"),
            (None, None) => f.write_str("any"),
        }
    }
}

/// The hooks of a template. Velero runs at most one command per phase per pod.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hooks {
    /// Runs before Velero backs the pod up.
    #[serde(default)]
    pub pre_backup: Option<ExecHook>,
    /// Runs after the pod's volumes were snapshotted or copied.
    #[serde(default)]
    pub post_backup: Option<ExecHook>,
    /// Runs in the restored pod once its container is up.
    #[serde(default)]
    pub post_restore: Option<RestoreHook>,
    /// An init container Velero adds to the restored pod (before its own init containers).
    #[serde(default)]
    pub init_restore: Option<InitRestoreHook>,
}

/// A restore init-container hook. Velero builds `{name, image, command}` and nothing else: no
/// volume mounts, no securityContext (Pod Security `restricted` rejects it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitRestoreHook {
    /// Image of the init container.
    pub container_image: String,
    /// Name: a DNS-1123 label, unique in the pod.
    pub container_name: String,
    /// Entrypoint; mandatory because Velero ≤ 1.18 panics on an empty one.
    pub command: Vec<String>,
}

/// A backup exec hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecHook {
    /// argv; not run in a shell unless it starts one.
    #[serde(default)]
    pub command: Vec<String>,
    /// `command` as Velero's JSON array, encoded on first use: escaping a few KiB of script is
    /// the largest part of an admission, and it is the same for every pod.
    #[serde(skip)]
    command_json: OnceLock<Encoded>,
    /// Built-in templates only: a script under `templates/scripts/`, run as `/bin/sh -c`.
    #[serde(default)]
    pub script: Option<String>,
    /// Velero's reaction to a failure.
    pub on_error: OnError,
    /// Velero's limit for the exec.
    pub timeout: GoDuration,
}

/// A restore exec hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestoreHook {
    /// argv; not run in a shell unless it starts one.
    #[serde(default)]
    pub command: Vec<String>,
    /// `command` as Velero's JSON array, encoded on first use (see [`ExecHook`]).
    #[serde(skip)]
    command_json: OnceLock<Encoded>,
    /// Built-in templates only: a script under `templates/scripts/`, run as `/bin/sh -c`.
    #[serde(default)]
    pub script: Option<String>,
    /// Velero's reaction to a failure.
    pub on_error: OnError,
    /// Limit for the command itself.
    pub exec_timeout: GoDuration,
    /// Limit for waiting until the container runs; mandatory (Velero otherwise waits forever).
    pub wait_timeout: GoDuration,
    /// Wait for readiness, not just running.
    #[serde(default)]
    pub wait_for_ready: bool,
}

impl Template {
    /// Parses and validates one custom template from YAML text; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self, TemplateError> {
        Self::parse(file, text, None)
    }

    /// Parses a built-in template, whose hooks may name script files instead of commands.
    fn from_builtin(file: &str, text: &str) -> Result<Self, TemplateError> {
        Self::parse(file, text, Some(script::SOURCES))
    }

    fn parse(
        file: &str,
        text: &str,
        scripts: Option<&[(&str, &str)]>,
    ) -> Result<Self, TemplateError> {
        let mut t: Template = serde_yaml::from_str(text).map_err(|e| TemplateError::Invalid {
            file: file.to_owned(),
            line: e.location().map(|l| l.line()),
            reason: e.to_string(),
        })?;
        t.resolve_scripts(scripts)
            .map_err(|reason| TemplateError::Invalid {
                file: file.to_owned(),
                line: None,
                reason: format!("template {:?}: {reason}", t.name),
            })?;
        t.validate().map_err(|reason| TemplateError::Invalid {
            file: file.to_owned(),
            line: None,
            reason: format!("template {:?}: {reason}", t.name),
        })?;
        Ok(t)
    }

    /// Replaces each hook's `script` by the command that runs it. Custom templates carry their
    /// commands inline: the script files exist only inside this binary.
    fn resolve_scripts(&mut self, scripts: Option<&[(&str, &str)]>) -> Result<(), String> {
        resolve_hook_scripts(&mut self.hooks, "hooks", scripts)?;
        if let Some(dump) = self.fs_backup.as_mut().and_then(|f| f.dump.as_mut()) {
            resolve_hook_scripts(dump, "fsBackup.dump", scripts)?;
        }
        Ok(())
    }

    fn validate(&mut self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 63
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("name must be 1-63 lowercase letters, digits or '-'".into());
        }
        if self.matcher.images.is_empty() && self.matcher.image_pattern_sources.is_empty() {
            return Err("match needs at least one of images or imagePatterns".into());
        }
        for image in &self.matcher.images {
            if image.split('/').count() > 2 || image.split('/').any(str::is_empty) {
                return Err(format!(
                    "match.images entry {image:?} must be NAME or NAMESPACE/NAME"
                ));
            }
        }
        self.matcher.image_patterns = self
            .matcher
            .image_pattern_sources
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("match.imagePatterns {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let h = &self.hooks;
        if h.pre_backup.is_none()
            && h.post_backup.is_none()
            && h.post_restore.is_none()
            && h.init_restore.is_none()
        {
            return Err(
                "hooks must define at least one of preBackup, postBackup, postRestore, initRestore"
                    .into(),
            );
        }
        if let Some(init) = &h.init_restore {
            if init.container_image.trim().is_empty() {
                return Err("hooks.initRestore.containerImage must be set".into());
            }
            if !is_dns_label(&init.container_name) {
                return Err(format!(
                    "hooks.initRestore.containerName {:?} must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)",
                    init.container_name
                ));
            }
        }
        for (phase, cmd) in [
            ("preBackup", h.pre_backup.as_ref().map(|x| &x.command)),
            ("postBackup", h.post_backup.as_ref().map(|x| &x.command)),
            ("postRestore", h.post_restore.as_ref().map(|x| &x.command)),
            ("initRestore", h.init_restore.as_ref().map(|x| &x.command)),
        ] {
            if let Some(cmd) = cmd {
                if cmd.first().is_none_or(|c| c.trim().is_empty()) {
                    return Err(format!(
                        "hooks.{phase}.command must be a non-empty array whose first element is the program"
                    ));
                }
            }
        }
        if let Some(d) = self.fs_backup.as_ref().and_then(|f| f.dump.as_ref()) {
            let pre = d.pre_backup.as_ref().map(|x| &x.command);
            let restore = d.post_restore.as_ref().map(|x| &x.command);
            if pre.is_none_or(|c| c.first().is_none_or(|p| p.trim().is_empty()))
                || restore.is_none_or(|c| c.first().is_none_or(|p| p.trim().is_empty()))
            {
                return Err("fsBackup.dump needs preBackup and postRestore, each with a non-empty command: a dump nobody loads, or a load with no dump, is no restore".into());
            }
        }
        Ok(())
    }

    /// True when `image` is one of this template's repositories.
    pub fn matches_image(&self, image: &ImageRef) -> bool {
        let name = image.name();
        let namespaced = image.namespaced_name();
        self.matcher
            .images
            .iter()
            .any(|entry| match entry.split_once('/') {
                None => entry == name,
                Some(_) => namespaced.is_some_and(|n| same_namespaced(entry, n)),
            })
            || self
                .matcher
                .image_patterns
                .iter()
                .any(|re| re.is_match(name))
    }

    /// The Velero annotations this template injects for `container`, keyed by annotation name.
    pub fn annotations(&self, container: &str) -> BTreeMap<String, String> {
        hook_annotations(&self.hooks, container)
    }

    /// The annotations of dump mode (file-system backup), when the template has one.
    pub fn dump_annotations(&self, container: &str) -> Option<BTreeMap<String, String>> {
        let dump = self.fs_backup.as_ref()?.dump.as_ref()?;
        Some(hook_annotations(dump, container))
    }

    /// `value` as a JSON string literal, if it is one of this template's hook commands (their
    /// encoding is cached: a patch carries a few KiB of them for every pod).
    pub fn command_literal(&self, value: &str) -> Option<&str> {
        let dump = self.fs_backup.as_ref().and_then(|f| f.dump.as_ref());
        self.hooks
            .encoded()
            .chain(dump.into_iter().flat_map(Hooks::encoded))
            .find(|e| e.json == value)
            .map(|e| e.literal.as_str())
    }
}

/// The Velero annotations of `hooks` for `container`.
fn hook_annotations(hooks: &Hooks, container: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |prefix: &str, key: &str, value: String| {
        out.insert(format!("{prefix}{key}"), value);
    };
    for (prefix, hook) in [
        (velero::PRE_BACKUP, &hooks.pre_backup),
        (velero::POST_BACKUP, &hooks.post_backup),
    ] {
        if let Some(h) = hook {
            let json = h.command_json.get_or_init(|| Encoded::new(&h.command));
            put(prefix, "command", json.json.clone());
            put(prefix, "container", container.to_owned());
            put(prefix, "on-error", h.on_error.as_str().to_owned());
            put(prefix, "timeout", h.timeout.to_string());
        }
    }
    if let Some(h) = &hooks.post_restore {
        let p = velero::POST_RESTORE;
        let json = h.command_json.get_or_init(|| Encoded::new(&h.command));
        put(p, "command", json.json.clone());
        put(p, "container", container.to_owned());
        put(p, "on-error", h.on_error.as_str().to_owned());
        put(p, "exec-timeout", h.exec_timeout.to_string());
        put(p, "wait-timeout", h.wait_timeout.to_string());
        put(p, "wait-for-ready", h.wait_for_ready.to_string());
    }
    if let Some(h) = &hooks.init_restore {
        let p = velero::INIT_RESTORE;
        put(p, "container-image", h.container_image.clone());
        put(p, "container-name", h.container_name.clone());
        put(p, "command", command_json(&h.command));
    }
    out
}

/// Replaces each hook's `script` by the command that runs it; `at` names the hooks in errors.
fn resolve_hook_scripts(
    h: &mut Hooks,
    at: &str,
    scripts: Option<&[(&str, &str)]>,
) -> Result<(), String> {
    for (phase, command, script) in [
        (
            "preBackup",
            h.pre_backup
                .as_mut()
                .map(|x| (&mut x.command, &mut x.script)),
        ),
        (
            "postBackup",
            h.post_backup
                .as_mut()
                .map(|x| (&mut x.command, &mut x.script)),
        ),
        (
            "postRestore",
            h.post_restore
                .as_mut()
                .map(|x| (&mut x.command, &mut x.script)),
        ),
    ]
    .into_iter()
    .filter_map(|(p, x)| x.map(|(c, s)| (p, c, s)))
    {
        let Some(file) = script.take() else {
            continue;
        };
        let Some(sources) = scripts else {
            return Err(format!(
                "{at}.{phase}.script is only for the built-in templates; give the command inline instead, e.g. command: [/bin/sh, -c, \"...\"]"
            ));
        };
        if !command.is_empty() {
            return Err(format!(
                "{at}.{phase} sets both command and script; keep one"
            ));
        }
        let text = script::compose(&file, sources).map_err(|e| e.to_string())?;
        *command = vec!["/bin/sh".to_owned(), "-c".to_owned(), text];
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Every spelling of a `match.images` namespace that matches the same images: `bitnami` and its
/// aliases stand for each other, any other namespace only for itself.
pub fn namespace_spellings(ns: &str) -> Vec<&str> {
    if ns == "bitnami" || BITNAMI_ALIASES.contains(&ns) {
        let mut all = vec!["bitnami"];
        all.extend_from_slice(BITNAMI_ALIASES);
        all
    } else {
        vec![ns]
    }
}

/// Whether two `namespace/name` references name the same image once Bitnami's namespace aliases
/// are folded into `bitnami`. Compares in place: this runs for every container and template
/// entry on every admission (it used to build two Strings each time).
fn same_namespaced(a: &str, b: &str) -> bool {
    fn parts(s: &str) -> (&str, &str) {
        match s.split_once('/') {
            Some((ns, name)) if BITNAMI_ALIASES.contains(&ns) => ("bitnami", name),
            Some((ns, name)) => (ns, name),
            None => ("", s),
        }
    }
    parts(a) == parts(b)
}

/// Compact JSON array: Velero treats the value as argv only when its first byte is `[`.
fn command_json(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_else(|_| String::from("[]"))
}

/// A hook's command annotation value, and that value as a JSON string literal (quotes
/// included), as the patch carries it: both are the same for every pod.
#[derive(Debug, Clone, Default)]
struct Encoded {
    json: String,
    literal: String,
}

impl Encoded {
    fn new(argv: &[String]) -> Self {
        let json = command_json(argv);
        let literal = serde_json::to_string(&json).unwrap_or_else(|_| String::from("\"[]\""));
        Self { json, literal }
    }
}

impl Hooks {
    /// The encoded commands of the exec hooks (init containers' are not cached).
    fn encoded(&self) -> impl Iterator<Item = &Encoded> {
        let exec = [&self.pre_backup, &self.post_backup]
            .into_iter()
            .flatten()
            .map(|h| h.command_json.get_or_init(|| Encoded::new(&h.command)));
        let restore = self
            .post_restore
            .iter()
            .map(|h| h.command_json.get_or_init(|| Encoded::new(&h.command)));
        exec.chain(restore)
    }
}

/// An ordered, name-indexed set of templates.
#[derive(Debug, Clone, Default)]
pub struct Library {
    templates: Vec<Template>,
}

impl Library {
    /// The library compiled into the binary.
    pub fn builtin() -> Result<Self, TemplateError> {
        let mut lib = Library::default();
        for (file, text) in BUILTIN {
            lib.insert(Template::from_builtin(&format!("builtin/{file}"), text)?);
        }
        Ok(lib)
    }

    /// The built-in library with the templates of `path` added or overriding built-ins by name.
    pub fn with_custom(path: &Path) -> Result<Self, TemplateError> {
        let mut lib = Self::builtin()?;
        for t in Self::load_file(path)? {
            lib.insert(t);
        }
        Ok(lib)
    }

    /// Reads a multi-document YAML file of templates (custom templates).
    pub fn load_file(path: &Path) -> Result<Vec<Template>, TemplateError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            file: file.clone(),
            source,
        })?;
        Self::parse_documents(&file, &text)
    }

    /// Parses a multi-document YAML text of templates.
    pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Template>, TemplateError> {
        let mut out = Vec::new();
        for doc in split_yaml_documents(text) {
            let body = doc.text;
            if !body.trim().is_empty()
                && !body
                    .lines()
                    .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                let t = Template::from_yaml(file, body).map_err(|e| match e {
                    TemplateError::Invalid { file, line, reason } => TemplateError::Invalid {
                        file,
                        line: line
                            .map(|l| l + doc.first_line - 1)
                            .or(Some(doc.first_line)),
                        reason,
                    },
                    other => other,
                })?;
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Adds a template, replacing any of the same name (custom templates override built-ins).
    pub fn insert(&mut self, t: Template) {
        match self.templates.iter_mut().find(|x| x.name == t.name) {
            Some(slot) => *slot = t,
            None => self.templates.push(t),
        }
    }

    /// Looks a template up by name.
    pub fn get(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// All templates, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Template> {
        self.templates.iter()
    }

    /// Names of all templates, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.templates.iter().map(|t| t.name.as_str()).collect()
    }

    /// The first template (in load order) whose images match.
    pub fn find_for_image(&self, image: &ImageRef) -> Option<&Template> {
        self.templates.iter().find(|t| t.matches_image(image))
    }
}

struct YamlDoc<'a> {
    text: &'a str,
    first_line: usize,
}

fn split_yaml_documents(text: &str) -> Vec<YamlDoc<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" {
            docs.push(YamlDoc {
                text: &text[start..offset],
                first_line,
            });
            start = offset + line.len();
            first_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(YamlDoc {
        text: &text[start..],
        first_line,
    });
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib() -> Library {
        Library::builtin().expect("built-in templates are valid")
    }

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).expect("valid image")
    }

    #[test]
    fn builtin_library_has_the_core_engines() {
        let lib = lib();
        for name in ["postgres", "mysql", "mariadb", "redis", "kafka", "mongodb"] {
            assert!(lib.get(name).is_some(), "missing template {name}");
        }
    }

    #[test]
    fn allow_list_matches_and_lookalikes_do_not() {
        let lib = lib();
        let cases = [
            ("postgres:16", Some("postgres")),
            ("bitnami/postgresql:16.1.0-debian-11-r15", Some("postgres")),
            ("bitnamilegacy/postgresql:16", Some("postgres")),
            (
                "harbor.corp/dockerhub/library/postgres:15",
                Some("postgres"),
            ),
            ("registry.redhat.io/rhel9/postgresql-16", Some("postgres")),
            ("mysql:8.0", Some("mysql")),
            ("mariadb:10.11", Some("mariadb")),
            ("redis:7.2-alpine", Some("redis")),
            ("valkey/valkey:8.0", Some("redis")),
            ("apache/kafka:3.7.0", Some("kafka")),
            ("mongo:7.0", Some("mongodb")),
            ("prometheuscommunity/postgres-exporter", None),
            ("bitnami/postgres-exporter:0.15", None),
            ("bitnami/pgbouncer", None),
            ("postgrest/postgrest", None),
            ("prom/mysqld-exporter", None),
            ("oliver006/redis_exporter", None),
            ("bitnami/redis-sentinel:7.2", None),
            ("provectuslabs/kafka-ui", None),
            ("confluentinc/cp-kafka-connect:7.6.0", None),
            ("mongo-express", None),
            ("busybox:1.36", None),
        ];
        for (img, want) in cases {
            let got = lib.find_for_image(&image(img)).map(|t| t.name.as_str());
            assert_eq!(got, want, "{img}");
        }
    }

    #[test]
    fn annotations_are_velero_shaped() {
        let lib = lib();
        let t = lib.get("postgres").expect("postgres");
        let a = t.annotations("db");
        let cmd = &a["pre.hook.backup.velero.io/command"];
        assert!(cmd.starts_with('['), "command must be a JSON array: {cmd}");
        assert!(serde_json::from_str::<Vec<String>>(cmd).is_ok());
        assert_eq!(a["pre.hook.backup.velero.io/container"], "db");
        assert!(matches!(
            a["pre.hook.backup.velero.io/on-error"].as_str(),
            "Fail" | "Continue"
        ));
        assert!(
            crate::hooks::velero::parse_go_duration(&a["pre.hook.backup.velero.io/timeout"])
                .is_some()
        );
        for t in lib.iter() {
            for (k, v) in t.annotations("c") {
                assert!(
                    !k.ends_with("/timeout") || !k.starts_with(velero::POST_RESTORE),
                    "{k}"
                );
                if k.starts_with(velero::POST_RESTORE) {
                    assert!(
                        t.annotations("c")
                            .contains_key("post.hook.restore.velero.io/wait-timeout")
                    );
                }
                assert!(!v.starts_with(' '), "{k}");
            }
        }
    }

    #[test]
    fn invalid_templates_are_refused_with_location() {
        let bad = "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: [sync], onError: fail, timeout: 30s}\n";
        let err = Template::from_yaml("t.yaml", bad).expect_err("lowercase on-error");
        let msg = err.to_string();
        assert!(msg.starts_with("t.yaml:6"), "{msg}");
        let bad = "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: [sync], onError: Fail, timeout: \"30\"}\n";
        assert!(
            Template::from_yaml("t.yaml", bad)
                .expect_err("no unit")
                .to_string()
                .contains("Go duration")
        );
        let bad = "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  postRestore: {command: [sync], onError: Continue, execTimeout: 30s}\n";
        assert!(
            Template::from_yaml("t.yaml", bad)
                .expect_err("no wait")
                .to_string()
                .contains("waitTimeout")
        );
        let bad = "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  preBackup: {command: \"sync now\", onError: Fail, timeout: 30s}\n";
        assert!(
            Template::from_yaml("t.yaml", bad).is_err(),
            "plain-string command"
        );
        let bad = "name: x\nengine: e\ndescription: d\nextra: 1\nmatch: {images: [x]}\nhooks: {}\n";
        assert!(
            Template::from_yaml("t.yaml", bad)
                .expect_err("unknown")
                .to_string()
                .contains("unknown field")
        );
    }

    #[test]
    fn init_restore_hooks_need_a_command_and_a_valid_name() {
        let base =
            "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  initRestore: ";
        let no_cmd = format!("{base}{{containerImage: busybox, containerName: restore-init}}\n");
        assert!(
            Template::from_yaml("t.yaml", &no_cmd)
                .expect_err("no command")
                .to_string()
                .contains("command")
        );
        let empty = format!(
            "{base}{{containerImage: busybox, containerName: restore-init, command: []}}\n"
        );
        assert!(
            Template::from_yaml("t.yaml", &empty)
                .expect_err("empty")
                .to_string()
                .contains("non-empty")
        );
        let bad_name = format!(
            "{base}{{containerImage: busybox, containerName: Restore_Init, command: [true]}}\n"
        );
        assert!(
            Template::from_yaml("t.yaml", &bad_name)
                .expect_err("name")
                .to_string()
                .contains("DNS-1123")
        );
        let ok = format!(
            "{base}{{containerImage: busybox, containerName: restore-init, command: [true]}}\n"
        );
        let a = Template::from_yaml("t.yaml", &ok)
            .expect("valid")
            .annotations("c");
        assert_eq!(a["init.hook.restore.velero.io/command"], "[\"true\"]");
        assert_eq!(
            a["init.hook.restore.velero.io/container-name"],
            "restore-init"
        );
    }

    #[test]
    fn custom_files_report_the_line_of_the_bad_document() {
        let text = "name: a\nengine: e\ndescription: d\nmatch: {images: [a]}\nhooks: {preBackup: {command: [sync], onError: Fail, timeout: 30s}}\n---\nname: b\nengine: e\ndescription: d\nmatch: {images: [b]}\nhooks: {preBackup: {command: [sync], onError: Fail, timeout: 5 min}}\n";
        let err = Library::parse_documents("custom.yaml", text)
            .expect_err("bad duration")
            .to_string();
        assert!(err.starts_with("custom.yaml:11"), "{err}");
        assert!(err.contains("Go duration"), "{err}");
    }

    /// Every byte of annotation is stored in etcd with the pod and sent in every watch event for
    /// it; the marker the admission adds is counted too. Measured with the longest container
    /// name Kubernetes allows, which every hook's container annotation and the marker repeat.
    /// 8.5 KiB since the restore checks copy their result line to the pod's own log
    /// (lib/podlog.sh): +227 bytes for MariaDB (8179 -> 8406), the largest; still 3% of the
    /// 256 KiB Kubernetes allows a pod's annotations.
    const ANNOTATION_BUDGET: usize = 8 * 1024 + 512;
    /// Dump mode's own budget (measured 2026-12-05 with the 63-character name: postgres 11,905
    /// bytes, mysql 11,352, mariadb 11,366; `cargo test --lib annotation_budget -- --nocapture`).
    /// Its restore hook carries the load and, for a data volume that came back with its database
    /// (a snapshot, a retained volume), the whole restore check, since Velero runs one restore
    /// exec per pod from annotations; 12 KiB is under 5% of the 256 KiB Kubernetes allows, and
    /// only pods under file-system backup carry it.
    const DUMP_ANNOTATION_BUDGET: usize = 12 * 1024;
    /// A container name of 63 characters, the DNS-1123 label limit.
    const LONGEST_NAME: &str = "database-container-with-the-longest-name-kubernetes-allows-63ch";

    fn injected_bytes(t: &Template) -> usize {
        let marker = format!("{}{}/{LONGEST_NAME}", crate::keys::INJECTED, t.name);
        t.annotations(LONGEST_NAME)
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + marker.len()
    }

    #[test]
    fn every_builtin_template_fits_the_annotation_budget() {
        assert_eq!(LONGEST_NAME.len(), 63);
        for t in lib().iter() {
            let n = injected_bytes(t);
            // Printed for the figures quoted in docs (run with --nocapture).
            eprintln!("annotation bytes: {} {n}", t.name);
            assert!(
                n <= ANNOTATION_BUDGET,
                "{}: {n} bytes of annotations, budget {ANNOTATION_BUDGET}",
                t.name
            );
            // Dump mode adds at most one backup.velero.io list naming the volumes.
            if let Some(dump) = t.dump_annotations(LONGEST_NAME) {
                let list = "backup.velero.io/backup-volumes-excludes".len() + 64;
                let n = dump.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + list;
                eprintln!("annotation bytes: {} dump mode {n}", t.name);
                assert!(
                    n <= DUMP_ANNOTATION_BUDGET,
                    "{} dump mode: {n} bytes of annotations, budget {DUMP_ANNOTATION_BUDGET}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn dump_mode_hooks_outlast_their_own_deadlines() {
        let number = |script: &str, var: &str| -> u64 {
            script
                .split(&format!("{var}:-"))
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no default for {var}"))
        };
        let mut with_dump = Vec::new();
        for t in lib().iter() {
            let Some(dump) = t.fs_backup.clone().and_then(|f| f.dump) else {
                continue;
            };
            with_dump.push(t.name.clone());
            let pre = dump.pre_backup.expect("pre");
            assert!(
                pre.timeout.value().as_secs() >= number(&pre.command[2], "VHI_DUMP_SECONDS") + 60,
                "{}",
                t.name
            );
            let r = dump.post_restore.expect("restore");
            let own = number(&r.command[2], "VHI_RESTORE_WAIT_SECONDS")
                + number(&r.command[2], "VHI_LOAD_SECONDS");
            assert!(r.exec_timeout.value().as_secs() >= own + 30, "{}", t.name);
            assert!(
                r.wait_for_ready && r.wait_timeout.value().as_secs() >= 1800,
                "{}",
                t.name
            );
        }
        with_dump.sort();
        assert_eq!(with_dump, ["mariadb", "mysql", "postgres"]);
    }

    #[test]
    fn builtin_restore_hooks_outlast_their_own_wait_and_wait_for_the_container() {
        let mut with_restore = 0;
        for t in lib().iter() {
            let Some(h) = &t.hooks.post_restore else {
                assert_eq!(t.name, "kafka", "only kafka has no restore check");
                continue;
            };
            with_restore += 1;
            let script = &h.command[2];
            let wait: u64 = script
                .split("VHI_RESTORE_WAIT_SECONDS:-")
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: no default wait in the restore script", t.name));
            let exec = h.exec_timeout.value().as_secs();
            assert!(
                exec >= wait + 30,
                "{}: exec-timeout {exec}s leaves no time past the hook's own {wait}s deadline",
                t.name
            );
            assert!(h.wait_for_ready, "{}", t.name);
            assert!(
                h.wait_timeout.value().as_secs() >= 1800,
                "{}: wait-timeout counts from pod creation (image pull, volume restore)",
                t.name
            );
        }
        assert_eq!(with_restore, 5);
    }

    #[test]
    fn script_files_are_for_builtins_only() {
        let custom = "name: x\nengine: e\ndescription: d\nmatch: {images: [x]}\nhooks:\n  preBackup: {script: postgres/pre.sh, onError: Continue, timeout: 30s}\n";
        let err = Template::from_yaml("t.yaml", custom)
            .expect_err("custom templates give the command inline")
            .to_string();
        assert!(err.contains("inline"), "{err}");
        let pg = lib().get("postgres").cloned().expect("postgres");
        let cmd = &pg.hooks.pre_backup.expect("pre").command;
        assert_eq!(cmd[..2], ["/bin/sh".to_owned(), "-c".to_owned()]);
        assert!(cmd[2].starts_with("T=postgres\n"), "{}", cmd[2]);
        assert!(!cmd[2].contains("\n#"), "comments are minified out");
    }

    #[test]
    fn version_ranges() {
        let r = VersionRange {
            min: Version::parse("10.4"),
            max: Version::parse("12"),
        };
        assert!(r.contains(&Version::parse("10.11").expect("v")));
        assert!(!r.contains(&Version::parse("10.3").expect("v")));
        assert!(!r.contains(&Version::parse("12.0").expect("v")));
    }
}
