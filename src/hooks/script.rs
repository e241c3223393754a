//! Built-in hook scripts: readable POSIX `sh` sources under `templates/scripts/`, composed and
//! minified into the one self-contained string Velero execs with `/bin/sh -c`.
//!
//! The annotation must stand alone (the container has only its own image), but the sources share
//! their parts: a line `. ./lib/NAME.sh` is replaced by that file, once per script. Minifying drops
//! full-line comments, blank lines and indentation: every byte of an annotation is stored in etcd
//! with the pod and sent with every watch event for it. The rules that keep this safe for `sh`:
//! no here-documents (their bodies would lose lines and indentation) and no line of a multi-line
//! quoted string may start with `#`.

macro_rules! src {
    ($p:literal) => {
        ($p, include_str!(concat!("../../templates/scripts/", $p)))
    };
}

/// Every built-in script source (path under `templates/scripts/`, text), embedded at build time.
pub const SOURCES: &[(&str, &str)] = &[
    src!("lib/common.sh"),
    src!("lib/pg.sh"),
    src!("lib/pg-dbs.sh"),
    src!("lib/pg-id.sh"),
    src!("lib/pg-check.sh"),
    src!("lib/dump.sh"),
    src!("lib/seal.sh"),
    src!("lib/load.sh"),
    src!("lib/load-or-check.sh"),
    src!("lib/my.sh"),
    src!("lib/my-pre.sh"),
    src!("lib/hold.sh"),
    src!("lib/release.sh"),
    src!("lib/my-check.sh"),
    src!("lib/my-restore.sh"),
    src!("lib/my-sys.sh"),
    src!("lib/my-dbs.sh"),
    src!("lib/my-dm.sh"),
    src!("lib/my-dump.sh"),
    src!("lib/my-load.sh"),
    src!("lib/redis.sh"),
    src!("lib/mongo.sh"),
    src!("lib/podlog.sh"),
    src!("postgres/pre.sh"),
    src!("postgres/restore.sh"),
    src!("postgres/dump.sh"),
    src!("postgres/load.sh"),
    src!("mysql/pre.sh"),
    src!("mysql/post.sh"),
    src!("mysql/restore.sh"),
    src!("mysql/dump.sh"),
    src!("mysql/load.sh"),
    src!("mariadb/pre.sh"),
    src!("mariadb/post.sh"),
    src!("mariadb/restore.sh"),
    src!("mariadb/dump.sh"),
    src!("mariadb/load.sh"),
    src!("redis/pre.sh"),
    src!("redis/post.sh"),
    src!("redis/restore.sh"),
    src!("mongodb/pre.sh"),
    src!("mongodb/post.sh"),
    src!("mongodb/restore.sh"),
];

/// Why a script could not be composed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScriptError {
    /// The entry script or an included file is not among the sources.
    #[error("hook script {0:?} is not a built-in script (templates/scripts/)")]
    Missing(String),
    /// A construct the minifier cannot keep intact.
    #[error("templates/scripts/{file}:{line}: {reason}")]
    Unsupported {
        /// Source file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What to change.
        reason: &'static str,
    },
}

/// The minified, self-contained text of `entry` with its includes expanded from `sources`.
pub fn compose(entry: &str, sources: &[(&str, &str)]) -> Result<String, ScriptError> {
    let mut out = String::new();
    let mut included = Vec::new();
    append(entry, sources, &mut included, &mut out)?;
    if out.ends_with('\n') {
        out.pop();
    }
    Ok(out)
}

fn append<'a>(
    file: &'a str,
    sources: &[(&'a str, &str)],
    included: &mut Vec<&'a str>,
    out: &mut String,
) -> Result<(), ScriptError> {
    let (_, text) = sources
        .iter()
        .find(|(p, _)| *p == file)
        .ok_or_else(|| ScriptError::Missing(file.to_owned()))?;
    included.push(file);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains("<<") && !line.contains("$((") {
            return Err(ScriptError::Unsupported {
                file: file.to_owned(),
                line: i + 1,
                reason: "here-documents are not allowed in hook scripts (minifying would change their text); use printf",
            });
        }
        if let Some(lib) = line.strip_prefix(". ./") {
            let (name, _) = sources
                .iter()
                .find(|(p, _)| *p == lib)
                .ok_or_else(|| ScriptError::Missing(lib.to_owned()))?;
            if !included.contains(name) {
                append(name, sources, included, out)?;
            }
            continue;
        }
        tighten(line, out);
        out.push('\n');
    }
    Ok(())
}

/// Appends `line` without the blanks around `&&`, `||`, `|` and after `;`, which `sh` does not
/// need, except inside quotes (messages, SQL, sed scripts and JavaScript stay as written).
fn tighten(line: &str, out: &mut String) {
    let mut quoted = false;
    let mut in_double = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if !quoted && !in_double {
            if let Some(op) = ["; ", " && ", " || ", " | "]
                .iter()
                .find(|op| rest.starts_with(**op))
            {
                out.push_str(op.trim());
                rest = &rest[op.len()..];
                continue;
            }
        }
        match c {
            '\'' if !in_double => quoted = !quoted,
            '"' if !quoted => in_double = !in_double,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: &[(&str, &str)] = &[
        (
            "lib/a.sh",
            "# lib a\nsay() { printf '%s\\n' \"$*\"; }\n  . ./lib/b.sh\n",
        ),
        ("lib/b.sh", "b=1\n"),
        (
            "x/pre.sh",
            "#!/bin/sh\nT=x\n. ./lib/a.sh\n. ./lib/b.sh\n\nif true; then\n    say hi  # kept: not a full-line comment\nfi\n",
        ),
        ("x/here.sh", "cat <<EOF\nhi\nEOF\n"),
        ("x/arith.sh", "n=$((1 << 3))\n"),
        ("x/lost.sh", ". ./lib/none.sh\n"),
    ];

    #[test]
    fn includes_once_drops_comments_and_indentation() {
        let s = compose("x/pre.sh", FAKE).expect("composes");
        assert_eq!(
            s,
            "T=x\nsay() { printf '%s\\n' \"$*\";}\nb=1\nif true;then\nsay hi  # kept: not a full-line comment\nfi"
        );
    }

    #[test]
    fn blanks_around_operators_go_except_inside_single_quotes() {
        let mut out = String::new();
        tighten(
            "a | b && c || d; e 'x | y; z' \"m; n\" \"q'\" f | g",
            &mut out,
        );
        assert_eq!(out, "a|b&&c||d;e 'x | y; z' \"m; n\" \"q'\" f|g");
    }

    #[test]
    fn refuses_what_it_cannot_minify_and_missing_files() {
        assert!(matches!(
            compose("x/here.sh", FAKE),
            Err(ScriptError::Unsupported { line: 1, .. })
        ));
        assert!(
            compose("x/arith.sh", FAKE).is_ok(),
            "a shift is not a here-document"
        );
        assert_eq!(
            compose("x/lost.sh", FAKE),
            Err(ScriptError::Missing("lib/none.sh".into()))
        );
        assert_eq!(
            compose("nope.sh", FAKE),
            Err(ScriptError::Missing("nope.sh".into()))
        );
    }

    #[test]
    fn every_file_under_templates_scripts_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/scripts");
        let mut on_disk = Vec::new();
        for dir in std::fs::read_dir(&root).expect("templates/scripts") {
            let dir = dir.expect("entry").path();
            for f in std::fs::read_dir(&dir).expect("dir") {
                let f = f.expect("file").path();
                if f.extension().is_some_and(|e| e == "sh") {
                    let rel = f.strip_prefix(&root).expect("under root");
                    on_disk.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        for f in &on_disk {
            assert!(
                SOURCES.iter().any(|(p, _)| p == f),
                "templates/scripts/{f} is not listed in script::SOURCES"
            );
        }
        assert_eq!(
            on_disk.len(),
            SOURCES.len(),
            "SOURCES lists a file that is gone"
        );
    }
}
