//! `restore-report`: what our restore hooks said, per restored database, put together from where
//! Velero scatters it: the Restore's status (phase, hook counts), the restored pods (label
//! `velero.io/restore-name`) and the Velero server's own log, where Velero ≥ 1.14 writes a
//! restore exec hook's stdout and stderr (`pkg/restore/restore.go` gives the hooks a logger of
//! the server's standard logrus logger, so those lines are logfmt even when the server runs with
//! `--log-format json`; both forms, mixed, are read).
//!
//! Everything here is pure: the CLI reads the objects and the log and passes them in.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hooks::template::Library;
use crate::hooks::velero;
use crate::keys;

/// Longest value Kubernetes accepts in a label (and the length Velero cuts names to).
const LABEL_MAX: usize = 63;

/// The value Velero puts in the `velero.io/restore-name` label for a restore named `name`:
/// names longer than 63 characters keep their first 57 and end with the first 6 hex digits
/// of their SHA-256 (Velero's `label.GetValidName`, `pkg/label/label.go`).
pub fn restore_label_value(name: &str) -> String {
    if name.len() <= LABEL_MAX {
        return name.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hex: String = digest.as_ref()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Velero cuts bytes; a restore name is a DNS subdomain (ASCII), so this is a char boundary.
    let keep = name.get(..LABEL_MAX - 6).unwrap_or(name);
    format!("{keep}{hex}")
}

/// `status.hookStatus` of a Restore.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// Hooks Velero started or gave up on.
    #[serde(default)]
    pub hooks_attempted: u32,
    /// Hooks that failed, expired or were not executed.
    #[serde(default)]
    pub hooks_failed: u32,
}

/// The part of a Restore's `status` the report shows (`pkg/apis/velero/v1/restore_types.go`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// New, InProgress, WaitingForPluginOperations…, Finalizing…, Completed, PartiallyFailed,
    /// Failed, FailedValidation.
    #[serde(default)]
    pub phase: String,
    /// Errors Velero counted (details: `velero restore describe`).
    #[serde(default)]
    pub errors: u32,
    /// Warnings Velero counted.
    #[serde(default)]
    pub warnings: u32,
    /// Why the restore failed as a whole.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_reason: String,
    /// Why the restore was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    /// Hook counters.
    #[serde(default)]
    pub hook_status: HookStatus,
    /// When Velero started the restore (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
}

impl RestoreStatus {
    /// True once Velero is done with the restore, hooks included: the phase is terminal.
    pub fn finished(&self) -> bool {
        matches!(
            self.phase.as_str(),
            "Completed" | "PartiallyFailed" | "Failed" | "FailedValidation"
        )
    }
}

/// What one line of the Velero server log says about a restore exec hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookEvent {
    /// The hook's standard output, logged when it ended (also when it exited non-zero).
    Stdout(String),
    /// The hook's standard error, logged when it ended.
    Stderr(String),
    /// The exec failed: exit code, timeout, container gone (Velero's error text).
    Failed(String),
    /// The container came up after the hook's wait-timeout (the hook counts as failed).
    Expired(String),
    /// Velero gave up on the hook without running it (wait ended, pod gone, restore cancelled).
    NotExecuted(String),
    /// The exec began.
    Started,
    /// The container is not up yet.
    Waiting(String),
}

/// A [`HookEvent`] with the restore and the pod (`namespace/name`) it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The restore's name (the `restore` field).
    pub restore: String,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// What happened.
    pub event: HookEvent,
}

/// Reads every line of a Velero server log (logfmt, JSON, or both mixed) and keeps those about
/// restore exec hooks of the restore named `restore`, in log order.
pub fn parse_server_log(log: &str, restore: &str) -> Vec<LogRecord> {
    log.lines()
        .filter_map(parse_line)
        .filter(|r| r.restore == restore)
        .collect()
}

/// One log line as a restore-hook record, if it is one.
pub fn parse_line(line: &str) -> Option<LogRecord> {
    let line = line.trim();
    let fields = if line.starts_with('{') {
        json_fields(line)?
    } else {
        logfmt_fields(line)
    };
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    // Some Velero versions write the restore as namespace/name; a restore name has no '/'.
    let restore = get("restore")?;
    let restore = restore.rsplit('/').next().unwrap_or(restore).to_owned();
    let msg = get("msg")?;
    let error = get("error").or(get("error.message")).unwrap_or("");
    let from_msg_pod = |m: &str| -> Option<String> {
        // "hook X in container C in pod NS/NAME not executed: …" carries no pod field.
        let rest = m.split(" in pod ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_owned())
    };
    let pod = get("pod").map(str::to_owned);
    let (pod, event) = if let Some(out) = msg.strip_prefix("stdout: ") {
        (pod?, HookEvent::Stdout(out.to_owned()))
    } else if msg == "stdout:" {
        (pod?, HookEvent::Stdout(String::new()))
    } else if let Some(err) = msg.strip_prefix("stderr: ") {
        (pod?, HookEvent::Stderr(err.to_owned()))
    } else if msg == "stderr:" {
        (pod?, HookEvent::Stderr(String::new()))
    } else if msg == "Error executing hook" {
        (pod?, HookEvent::Failed(error.to_owned()))
    } else if msg.ends_with("expired before executing") {
        (pod?, HookEvent::Expired(msg.to_owned()))
    } else if msg.contains(" not executed: ") {
        (
            pod.or_else(|| from_msg_pod(msg))?,
            HookEvent::NotExecuted(msg.to_owned()),
        )
    } else if msg == "running exec hook" {
        (pod?, HookEvent::Started)
    } else if msg.starts_with("Container ") && msg.contains(" is not up") {
        (pod?, HookEvent::Waiting(msg.to_owned()))
    } else if let Some(rest) = msg.strip_prefix("Pod ") {
        // "Pod NS/NAME does not have container C: discarding post-restore exec hooks"
        if !msg.ends_with("discarding post-restore exec hooks") {
            return None;
        }
        let pod = rest.split_whitespace().next()?.to_owned();
        (pod, HookEvent::NotExecuted(msg.to_owned()))
    } else if msg.starts_with("pod entered phase ") {
        (pod?, HookEvent::NotExecuted(msg.to_owned()))
    } else {
        return None;
    };
    Some(LogRecord {
        restore,
        pod,
        event,
    })
}

/// The string fields of a JSON log line (logrus' JSONFormatter).
fn json_fields(line: &str) -> Option<Vec<(String, String)>> {
    let Value::Object(map) = serde_json::from_str::<Value>(line).ok()? else {
        return None;
    };
    Some(
        map.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
    )
}

/// The fields of a logfmt line as logrus' TextFormatter writes it: `key=value`, values with
/// anything but `[A-Za-z0-9-._/@^+]` quoted the way Go's `%q` quotes.
fn logfmt_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else { break };
        let key = &rest[..eq];
        if key.is_empty() || key.contains(char::is_whitespace) {
            // Not logfmt (or a stray word): skip the word and go on.
            match rest.find(char::is_whitespace) {
                Some(sp) => {
                    rest = &rest[sp..];
                    continue;
                }
                None => break,
            }
        }
        rest = &rest[eq + 1..];
        let (value, after) = if rest.starts_with('"') {
            go_unquote(rest)
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (rest[..end].to_owned(), &rest[end..])
        };
        fields.push((key.to_owned(), value));
        rest = after;
    }
    fields
}

/// Reads a Go `%q` string at the start of `s` (which starts with `"`): its text and what follows.
fn go_unquote(s: &str) -> (String, &str) {
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    let hex = |h: &[u8]| {
        std::str::from_utf8(h)
            .ok()
            .and_then(|t| u32::from_str_radix(t, 16).ok())
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), &s[i + 1..]),
            b'\\' if i + 1 < bytes.len() => {
                let c = bytes[i + 1];
                i += 2;
                let simple = match c {
                    b'n' => Some(b'\n'),
                    b't' => Some(b'\t'),
                    b'r' => Some(b'\r'),
                    b'a' => Some(7),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'v' => Some(11),
                    b'\\' => Some(b'\\'),
                    b'"' => Some(b'"'),
                    b'\'' => Some(b'\''),
                    _ => None,
                };
                if let Some(b) = simple {
                    out.push(b);
                    continue;
                }
                let width = match c {
                    b'x' => 2,
                    b'u' => 4,
                    b'U' => 8,
                    b'0'..=b'7' => {
                        let end = (i + 2).min(bytes.len());
                        let oct = std::str::from_utf8(&bytes[i - 1..end])
                            .ok()
                            .and_then(|t| u8::from_str_radix(t, 8).ok());
                        if let Some(b) = oct {
                            out.push(b);
                            i = end;
                        }
                        continue;
                    }
                    other => {
                        out.extend_from_slice(&[b'\\', other]);
                        continue;
                    }
                };
                let end = (i + width).min(bytes.len());
                match (c, hex(&bytes[i..end])) {
                    (b'x', Some(v)) => out.push(v as u8),
                    (_, Some(v)) => {
                        let ch = char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER);
                        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    (_, None) => {}
                }
                i = end;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Unterminated: the rest of the line.
    (String::from_utf8_lossy(&out).into_owned(), "")
}

/// A restored pod that carries our restore hook (`post.hook.restore.velero.io/command` and the
/// marker `velero-hook-injector.io/injected`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredDatabase {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The template that was injected.
    pub template: String,
    /// The database engine (the template's engine when the template is known).
    pub database: String,
    /// The container the hook runs in.
    pub container: String,
}

/// The restored pods among `pods` that carry our restore hook, sorted by namespace and name.
pub fn restored_databases(pods: &[Pod], library: &Library) -> Vec<RestoredDatabase> {
    let mut out: Vec<RestoredDatabase> = pods
        .iter()
        .filter_map(|pod| {
            let annotations = pod.metadata.annotations.as_ref()?;
            annotations.get(&format!("{}command", velero::POST_RESTORE))?;
            let (template, container) = annotations.get(keys::INJECTED)?.split_once('/')?;
            let database = library
                .get(template)
                .map_or_else(|| template.to_owned(), |t| t.engine.clone());
            Some(RestoredDatabase {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone()?,
                template: template.to_owned(),
                database,
                container: container.to_owned(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// What came of one database's restore hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The hook ran and exited 0.
    Passed,
    /// The hook ran and failed (exit code, timeout), or its container came up too late.
    Failed,
    /// Velero never ran the hook, or the server log holds no record of it.
    NotRun,
    /// The restore is not finished and the hook has not ended yet.
    StillRunning,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not run",
            Outcome::StillRunning => "still running",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatabaseResult {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The database engine.
    pub database: String,
    /// The injected template.
    pub template: String,
    /// The result.
    pub result: Outcome,
    /// The line our hook printed last (`velero-hook[…]: …`), if the log holds it.
    pub summary: Option<String>,
    /// What Velero said, when the summary alone does not explain the result.
    pub detail: Option<String>,
}

/// How the report ends (and the command's exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every database passed.
    AllPassed,
    /// Some database failed or was not run, or the restore has none with our hook.
    NotAllPassed,
    /// Nothing failed so far, but some hook has not ended: the restore is still running.
    NotFinished,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The restore's name.
    pub restore: String,
    /// Its status as Velero keeps it.
    pub status: RestoreStatus,
    /// One entry per restored pod with our restore hook.
    pub databases: Vec<DatabaseResult>,
    /// The end result.
    pub verdict: Verdict,
}

/// The last `velero-hook[…]` line of a hook's output.
fn last_hook_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find(|l| l.starts_with("velero-hook["))
        .map(str::to_owned)
}

/// The result of one database from the log records about its pod.
fn decide(db: &RestoredDatabase, records: &[&LogRecord], finished: bool) -> DatabaseResult {
    let mut stdout = None;
    let mut stderr = None;
    let mut failed = None;
    let mut not_run = None;
    let mut started = false;
    let mut waiting = None;
    for r in records {
        match &r.event {
            HookEvent::Stdout(s) => stdout = Some(s.as_str()),
            HookEvent::Stderr(s) => stderr = Some(s.as_str()),
            HookEvent::Failed(e) | HookEvent::Expired(e) => failed = Some(e.clone()),
            HookEvent::NotExecuted(e) => not_run = Some(e.clone()),
            HookEvent::Started => started = true,
            HookEvent::Waiting(w) => waiting = Some(w.clone()),
        }
    }
    // An ERROR line (stderr) explains a failure best; otherwise the last line of either stream.
    let summary = stderr
        .and_then(last_hook_line)
        .filter(|l| l.contains("]: ERROR: "))
        .or_else(|| stdout.and_then(last_hook_line))
        .or_else(|| stderr.and_then(last_hook_line));
    let (result, detail) = if let Some(e) = failed {
        (Outcome::Failed, Some(e))
    } else if let Some(e) = not_run {
        (Outcome::NotRun, Some(e))
    } else if stdout.is_some() || stderr.is_some() {
        (Outcome::Passed, None)
    } else if !finished {
        let doing = if started {
            "the hook is running".to_owned()
        } else if let Some(w) = waiting {
            w
        } else {
            "Velero has not run the hook yet".to_owned()
        };
        (Outcome::StillRunning, Some(doing))
    } else {
        (
            Outcome::NotRun,
            Some(
                "the Velero server log holds no record of this hook: the server restarted or its \
                 log rotated since the restore (see the hook counts), or Velero did not run it"
                    .to_owned(),
            ),
        )
    };
    DatabaseResult {
        namespace: db.namespace.clone(),
        pod: db.name.clone(),
        database: db.database.clone(),
        template: db.template.clone(),
        result,
        summary,
        detail,
    }
}

/// Puts the restore's status, its databases and the server log records together.
pub fn build_report(
    restore: &str,
    status: RestoreStatus,
    databases: &[RestoredDatabase],
    records: &[LogRecord],
) -> Report {
    let finished = status.finished();
    let results: Vec<DatabaseResult> = databases
        .iter()
        .map(|db| {
            let key = format!("{}/{}", db.namespace, db.name);
            let mine: Vec<&LogRecord> = records.iter().filter(|r| r.pod == key).collect();
            decide(db, &mine, finished)
        })
        .collect();
    let verdict = if results
        .iter()
        .any(|r| matches!(r.result, Outcome::Failed | Outcome::NotRun))
    {
        Verdict::NotAllPassed
    } else if results.iter().any(|r| r.result == Outcome::StillRunning) || !finished {
        Verdict::NotFinished
    } else if results.is_empty() {
        Verdict::NotAllPassed
    } else {
        Verdict::AllPassed
    };
    Report {
        restore: restore.to_owned(),
        status,
        databases: results,
        verdict,
    }
}

impl Report {
    /// For people: the restore's state, one row per database, and what to do next.
    pub fn to_table(&self) -> String {
        let s = &self.status;
        let mut out = format!(
            "Restore {}: {} (hooks attempted {}, failed {}; errors {}, warnings {})\n",
            self.restore,
            if s.phase.is_empty() { "New" } else { &s.phase },
            s.hook_status.hooks_attempted,
            s.hook_status.hooks_failed,
            s.errors,
            s.warnings
        );
        if !s.failure_reason.is_empty() {
            let _ = writeln!(out, "Failure reason: {}", s.failure_reason);
        }
        for v in &s.validation_errors {
            let _ = writeln!(out, "Validation error: {v}");
        }
        if self.databases.is_empty() {
            out.push_str(
                "No restored pod carries a velero-hook-injector restore hook (label \
                 velero.io/restore-name, annotation velero-hook-injector.io/injected): check the \
                 restore's name and that it included the database pods.\n",
            );
            return out;
        }
        let rows: Vec<[String; 4]> = self
            .databases
            .iter()
            .map(|d| {
                [
                    format!("{}/{}", d.namespace, d.pod),
                    d.database.clone(),
                    d.result.as_str().to_owned(),
                    d.summary
                        .clone()
                        .or_else(|| d.detail.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        let header = ["POD", "DATABASE", "RESULT", "SUMMARY"];
        let width = |i: usize| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            header[0], header[1], header[2], header[3]
        );
        for (row, d) in rows.iter().zip(&self.databases) {
            let _ = writeln!(
                out,
                "{:w0$}  {:w1$}  {:w2$}  {}",
                row[0], row[1], row[2], row[3]
            );
            // The summary line already says why; Velero's own reason is added when it differs.
            if let (Some(_), Some(detail)) = (&d.summary, &d.detail) {
                let _ = writeln!(out, "{:w0$}  {:w1$}  {:w2$}  velero: {detail}", "", "", "");
            }
        }
        let count = |o: Outcome| self.databases.iter().filter(|d| d.result == o).count();
        let _ = writeln!(
            out,
            "{} databases: {} passed, {} failed, {} not run, {} still running",
            self.databases.len(),
            count(Outcome::Passed),
            count(Outcome::Failed),
            count(Outcome::NotRun),
            count(Outcome::StillRunning)
        );
        match self.verdict {
            Verdict::AllPassed => {}
            Verdict::NotFinished => {
                out.push_str("The restore is not finished: run again later, or with --wait.\n")
            }
            Verdict::NotAllPassed => {
                let _ = writeln!(
                    out,
                    "Not every database passed. The summary is the hook's last line; its whole \
                     output is in the Velero server log (kubectl -n VELERO_NAMESPACE logs \
                     deploy/velero | grep 'restore={}'), its result line also in the pod's log \
                     (kubectl -n NAMESPACE logs POD).",
                    self.restore
                );
            }
        }
        out
    }

    /// For machines: `{restore, status, databases: [...], verdict}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as logrus' TextFormatter writes them for the standard logger Velero's restore hooks
    // use (keys after time/level/msg sorted; values quoted with Go's %q).
    const TEXT_PASS: &str = r#"time="2026-12-05T07:10:03Z" level=info msg="stdout: velero-hook[postgres]: restore check passed: PostgreSQL 16.4, primary, up after 3s; databases: app(2 tables, 7.6 MB)\n" hookCommand="[/bin/sh -c T=postgres\nset -u]" hookContainer=db hookName="<from-annotation>" hookOnError=Continue hookPhase=post hookSource=annotation hookTimeout="{10m0s}" hookType=exec pod=shop/pg-0 restore=r1"#;
    const TEXT_FAIL_OUT: &str = r#"time="2026-12-05T07:10:04Z" level=info msg="stderr: velero-hook[mysql]: ERROR: a table cannot be read (copy incomplete): ERROR 1812 (HY000) at line 2: Tablespace is missing for table `shop`.`orders`.\n" hookContainer=db hookName="<from-annotation>" hookPhase=post hookSource=annotation hookType=exec pod=shop/my-0 restore=r1"#;
    const TEXT_FAIL: &str = r#"time="2026-12-05T07:10:04Z" level=error msg="Error executing hook" error="command terminated with exit code 1" hookPhase=post hookSource=annotation hookType=exec pod=shop/my-0 restore=r1"#;

    fn json_line(msg: &str, pod: &str, extra: &str) -> String {
        format!(
            r#"{{"hookContainer":"db","hookName":"\u003cfrom-annotation\u003e","hookPhase":"post","hookSource":"annotation","hookType":"exec","level":"info","msg":{},"pod":"{pod}","restore":"r1","time":"2026-12-05T07:10:03Z"{extra}}}"#,
            serde_json::to_string(msg).expect("json")
        )
    }

    #[test]
    fn logfmt_lines_are_read_with_go_quoting() {
        let r = parse_line(TEXT_PASS).expect("a hook line");
        assert_eq!(r.restore, "r1");
        assert_eq!(r.pod, "shop/pg-0");
        assert_eq!(
            r.event,
            HookEvent::Stdout(
                "velero-hook[postgres]: restore check passed: PostgreSQL 16.4, primary, up after 3s; databases: app(2 tables, 7.6 MB)\n".into()
            )
        );
        let r = parse_line(TEXT_FAIL).expect("a hook line");
        assert_eq!(
            r.event,
            HookEvent::Failed("command terminated with exit code 1".into())
        );
        assert_eq!(
            go_unquote(r#""a\"b\\c\x41\u00e9\t" rest"#),
            ("a\"b\\cAé\t".to_owned(), " rest")
        );
    }

    #[test]
    fn json_lines_are_read_and_error_message_key_counts() {
        let line = json_line(
            "stdout: velero-hook[redis]: restore check passed: Redis 7\n",
            "c/r-0",
            "",
        );
        let r = parse_line(&line).expect("hook line");
        assert_eq!(r.pod, "c/r-0");
        assert_eq!(
            r.event,
            HookEvent::Stdout("velero-hook[redis]: restore check passed: Redis 7\n".into())
        );
        // A JSON-format server names the error field "error.message".
        let line = json_line(
            "Error executing hook",
            "c/r-0",
            r#","error.message":"timed out after 2m0s""#,
        );
        assert_eq!(
            parse_line(&line).expect("hook line").event,
            HookEvent::Failed("timed out after 2m0s".into())
        );
    }

    #[test]
    fn not_executed_lines_name_the_pod_in_the_message_only() {
        let line = r#"time="2026-12-05T07:20:00Z" level=error msg="hook <from-annotation> in container db in pod shop/mongo-0 not executed: context canceled" hookPhase=post hookSource=annotation hookType=exec restore=r1"#;
        let r = parse_line(line).expect("hook line");
        assert_eq!(r.pod, "shop/mongo-0");
        assert!(
            matches!(r.event, HookEvent::NotExecuted(ref m) if m.ends_with("context canceled"))
        );
        let line = r#"time="2026-12-05T07:20:00Z" level=warning msg="Pod shop/x-0 does not have container db: discarding post-restore exec hooks" restore=r1"#;
        assert_eq!(parse_line(line).expect("hook line").pod, "shop/x-0");
    }

    #[test]
    fn other_lines_and_other_restores_are_ignored() {
        let log = format!(
            "{TEXT_PASS}\n{}\nnot a log line at all\n{{\"level\":\"info\",\"msg\":\"Starting Velero server\"}}\n\
             time=\"x\" level=info msg=\"restore completed\" restore=velero/r1\n",
            TEXT_PASS.replace("restore=r1", "restore=r2")
        );
        let records = parse_server_log(&log, "r1");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].pod, "shop/pg-0");
    }

    #[test]
    fn long_restore_names_are_cut_as_velero_cuts_them() {
        assert_eq!(restore_label_value("short"), "short");
        // A schedule's restore name, 75 characters: the first 57, then the first 6 hex digits
        // of its SHA-256 (printf '%s' NAME | sha256sum).
        let long = "restore-of-the-nightly-schedule-for-the-production-databases-20261205070000";
        assert_eq!(
            restore_label_value(long),
            "restore-of-the-nightly-schedule-for-the-production-databa56491e"
        );
        assert_eq!(
            restore_label_value(&"a".repeat(70)),
            format!("{}6bd5e5", "a".repeat(57))
        );
        assert_eq!(restore_label_value(&"a".repeat(63)), "a".repeat(63));
    }

    fn db(name: &str, database: &str) -> RestoredDatabase {
        RestoredDatabase {
            namespace: "shop".into(),
            name: name.into(),
            template: database.into(),
            database: database.into(),
            container: "db".into(),
        }
    }

    fn status(phase: &str) -> RestoreStatus {
        RestoreStatus {
            phase: phase.into(),
            ..RestoreStatus::default()
        }
    }

    #[test]
    fn each_database_gets_its_result_and_summary_line() {
        let not_run = r#"time="2026-12-05T07:20:00Z" level=error msg="hook <from-annotation> in container db in pod shop/mongo-0 not executed: context canceled" restore=r1"#;
        let log = [TEXT_PASS, TEXT_FAIL_OUT, TEXT_FAIL, not_run].join("\n");
        let dbs = [
            db("pg-0", "postgres"),
            db("my-0", "mysql"),
            db("mongo-0", "mongodb"),
            db("redis-0", "redis"),
        ];
        let report = build_report(
            "r1",
            status("PartiallyFailed"),
            &dbs,
            &parse_server_log(&log, "r1"),
        );
        let by = |pod: &str| report.databases.iter().find(|d| d.pod == pod).expect("row");
        assert_eq!(by("pg-0").result, Outcome::Passed);
        assert!(
            by("pg-0")
                .summary
                .as_deref()
                .is_some_and(|s| s.starts_with("velero-hook[postgres]: restore check passed"))
        );
        assert_eq!(by("my-0").result, Outcome::Failed);
        assert!(
            by("my-0")
                .summary
                .as_deref()
                .is_some_and(|s| s.contains("Tablespace is missing"))
        );
        assert_eq!(
            by("my-0").detail.as_deref(),
            Some("command terminated with exit code 1")
        );
        assert_eq!(by("mongo-0").result, Outcome::NotRun);
        // Finished restore and no record at all: not run, with why it may be missing.
        assert_eq!(by("redis-0").result, Outcome::NotRun);
        assert!(
            by("redis-0")
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("no record"))
        );
        assert_eq!(report.verdict, Verdict::NotAllPassed);
        let table = report.to_table();
        assert!(table.contains("shop/my-0"), "{table}");
        assert!(
            table.contains("4 databases: 1 passed, 1 failed, 2 not run, 0 still running"),
            "{table}"
        );
    }

    #[test]
    fn an_unfinished_restore_reports_waiting_hooks_as_still_running() {
        let waiting = r#"time="2026-12-05T07:20:00Z" level=info msg="Container db is not up: post-restore hooks will not yet be executed" pod=shop/pg-1 restore=r1"#;
        let log = [TEXT_PASS, waiting].join("\n");
        let dbs = [db("pg-0", "postgres"), db("pg-1", "postgres")];
        let report = build_report(
            "r1",
            status("Finalizing"),
            &dbs,
            &parse_server_log(&log, "r1"),
        );
        assert_eq!(report.databases[1].result, Outcome::StillRunning);
        assert!(
            report.databases[1]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("is not up"))
        );
        assert_eq!(report.verdict, Verdict::NotFinished);
        // The same once the restore completed and the hook passed.
        let done = TEXT_PASS.replace("pod=shop/pg-0", "pod=shop/pg-1");
        let log = [TEXT_PASS, &done].join("\n");
        let report = build_report(
            "r1",
            status("Completed"),
            &dbs,
            &parse_server_log(&log, "r1"),
        );
        assert_eq!(report.verdict, Verdict::AllPassed);
        assert!(!report.to_table().contains("Not every"));
    }

    #[test]
    fn a_restore_without_our_databases_does_not_pass() {
        let report = build_report("r1", status("Completed"), &[], &[]);
        assert_eq!(report.verdict, Verdict::NotAllPassed);
        assert!(report.to_table().contains("No restored pod carries"));
    }
}
