//! Velero's pod annotation keys and the value rules Velero applies when it reads them.
//!
//! Facts here come from Velero's `internal/hook/item_hook_handler.go` (v1.18.x); the
//! developers' Velero hooks notes give the derivation.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Prefix of pre-backup exec hook keys.
pub const PRE_BACKUP: &str = "pre.hook.backup.velero.io/";
/// Prefix of post-backup exec hook keys.
pub const POST_BACKUP: &str = "post.hook.backup.velero.io/";
/// Prefix of the unphased legacy backup keys, which Velero treats as a pre hook.
pub const LEGACY_BACKUP: &str = "hook.backup.velero.io/";
/// Prefix of restore exec hook keys.
pub const POST_RESTORE: &str = "post.hook.restore.velero.io/";
/// Prefix of restore init-container hook keys.
pub const INIT_RESTORE: &str = "init.hook.restore.velero.io/";
/// Label Velero sets on every object it restores.
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";
/// Label that excludes a pod (and so its hooks) from every backup.
pub const EXCLUDE_LABEL: &str = "velero.io/exclude-from-backup";

/// Velero's cap on hook timeouts on main (PR #10125); we never emit more.
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// Velero's default `--resource-timeout` (`pkg/cmd/server/config/config.go`), which bounds the
/// restore finalizer's wait for restore exec hooks after v1.18.2 (velero-io/velero#10280).
pub const RESOURCE_TIMEOUT: Duration = Duration::from_secs(600);

/// True when `key` is any backup exec hook key Velero reads (pre, post or legacy).
pub fn is_backup_hook_key(key: &str) -> bool {
    key.starts_with(PRE_BACKUP) || key.starts_with(POST_BACKUP) || key.starts_with(LEGACY_BACKUP)
}

/// True when `key` is any restore hook key (exec or init container).
pub fn is_restore_hook_key(key: &str) -> bool {
    key.starts_with(POST_RESTORE) || key.starts_with(INIT_RESTORE)
}

/// What Velero does when a hook fails. Only these exact spellings are honoured by Velero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnError {
    /// Stop: for a pre-backup hook the pod is skipped and its post hook never runs.
    Fail,
    /// Log the failure (the backup becomes PartiallyFailed) and go on.
    Continue,
}

impl OnError {
    /// The annotation value Velero expects.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "Fail",
            OnError::Continue => "Continue",
        }
    }
}

/// A positive Go duration (`time.ParseDuration` syntax with a unit), kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: Duration,
}

/// Why a duration string is not one Velero would honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Go rejects it, so Velero would silently fall back to its default.
    #[error(
        "{0:?} is not a Go duration: write a number with a unit, e.g. \"30s\", \"5m\", \"1h30m\""
    )]
    Syntax(String),
    /// Zero or negative: Velero falls back to 30s (or, for negatives on v1.18, no limit at all).
    #[error("{0:?} must be greater than zero")]
    NotPositive(String),
    /// More than Velero's 4h cap.
    #[error("{0:?} exceeds Velero's 4h hook timeout cap")]
    TooLong(String),
}

impl GoDuration {
    /// Parses `text` with Go's duration grammar and requires 0 < d <= 4h.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let value =
            parse_go_duration(text).ok_or_else(|| DurationError::Syntax(text.to_owned()))?;
        if value.is_zero() {
            return Err(DurationError::NotPositive(text.to_owned()));
        }
        if value > MAX_HOOK_TIMEOUT {
            return Err(DurationError::TooLong(text.to_owned()));
        }
        Ok(Self {
            text: text.to_owned(),
            value,
        })
    }

    /// The duration as written, which is what goes into the annotation.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed value.
    pub fn value(&self) -> Duration {
        self.value
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        GoDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The spellings Go's `strconv.ParseBool` reads as true.
pub const GO_TRUE: &[&str] = &["1", "t", "T", "TRUE", "true", "True"];
/// The spellings Go's `strconv.ParseBool` reads as false.
pub const GO_FALSE: &[&str] = &["0", "f", "F", "FALSE", "false", "False"];

/// Go's `strconv.ParseBool`, which Velero uses for its own booleans (`wait-for-ready`), and so do
/// we for ours: `None` for anything else, such as `"yes"`, `"off"`, `"tRuE"` or `" false"`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    if GO_TRUE.contains(&text) {
        Some(true)
    } else if GO_FALSE.contains(&text) {
        Some(false)
    } else {
        None
    }
}

/// The accepted spellings, for messages: `"true" (or 1, t, T, TRUE, True) or "false" (or 0, …)`.
pub fn go_bool_spellings() -> String {
    let others = |all: &[&str], main: &str| {
        all.iter()
            .filter(|s| **s != main)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "\"true\" (or {}) or \"false\" (or {})",
        others(GO_TRUE, "true"),
        others(GO_FALSE, "false")
    )
}

/// Go's `time.ParseDuration`, without the sign (a negative hook duration is never valid here).
/// Returns `None` for anything Go would reject, such as `"30"`, `"1d"`, `" 30s"`.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let number: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * nanos_per_unit;
        rest = tail;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// Parses an annotation command the way Velero does: a value starting with `[` that is a JSON
/// array of strings is argv; anything else is one literal argv element (no shell splitting).
pub fn parse_command(value: &str) -> Vec<String> {
    if value.starts_with('[') {
        if let Ok(argv) = serde_json::from_str::<Vec<String>>(value) {
            return argv;
        }
    }
    vec![value.to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_go_bool_accepts_exactly_what_go_accepts() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for other in [
            "",
            "no",
            "yes",
            "off",
            "on",
            "y",
            "n",
            "tRuE",
            "fAlse",
            " false",
            "false ",
            "2",
            "\"false\"",
        ] {
            assert_eq!(parse_go_bool(other), None, "{other:?}");
        }
    }

    #[test]
    fn spellings_list_every_accepted_value() {
        let s = go_bool_spellings();
        for v in GO_TRUE.iter().chain(GO_FALSE) {
            assert!(s.contains(v), "{v} missing from {s}");
        }
    }

    #[test]
    fn go_durations_follow_go_rules() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["30", "1d", " 30s", "30 s", "5 min", "", "s", "1.2.3s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?} must be rejected");
        }
    }

    #[test]
    fn hook_durations_must_be_positive_and_capped() {
        assert_eq!(
            GoDuration::parse("10m").map(|d| d.value()),
            Ok(Duration::from_secs(600))
        );
        assert!(matches!(
            GoDuration::parse("0s"),
            Err(DurationError::NotPositive(_))
        ));
        assert!(matches!(
            GoDuration::parse("5h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            GoDuration::parse("300"),
            Err(DurationError::Syntax(_))
        ));
    }

    #[test]
    fn commands_parse_like_velero() {
        assert_eq!(
            parse_command(r#"["/bin/sh","-c","sync"]"#),
            ["/bin/sh", "-c", "sync"]
        );
        assert_eq!(
            parse_command("/sbin/fsfreeze --freeze /data"),
            ["/sbin/fsfreeze --freeze /data"]
        );
        assert_eq!(
            parse_command("['/bin/sh','-c','x']"),
            ["['/bin/sh','-c','x']"]
        );
        assert_eq!(parse_command(r#"["sleep",5]"#), [r#"["sleep",5]"#]);
    }

    #[test]
    fn hook_key_families() {
        assert!(is_backup_hook_key("pre.hook.backup.velero.io/command"));
        assert!(is_backup_hook_key("hook.backup.velero.io/container"));
        assert!(is_backup_hook_key("post.hook.backup.velero.io/timeout"));
        assert!(!is_backup_hook_key("post.hook.restore.velero.io/command"));
        assert!(is_restore_hook_key("post.hook.restore.velero.io/command"));
        assert!(is_restore_hook_key(
            "init.hook.restore.velero.io/container-image"
        ));
    }
}
