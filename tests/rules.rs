//! One test per bad hook pattern: the rule fires, on the right key, and says how to fix it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::json;
use velero_hook_injector::hooks::rules::{self, Engine, Finding, Severity, rule};
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::pod::version::Version;

const PRE: &str = "pre.hook.backup.velero.io/";
const POST: &str = "post.hook.backup.velero.io/";
const LEG: &str = "hook.backup.velero.io/";
const RX: &str = "post.hook.restore.velero.io/";
const INIT: &str = "init.hook.restore.velero.io/";

fn spec() -> PodSpec {
    serde_json::from_value(json!({
        "containers": [
            {"name": "db", "image": "postgres:16"},
            {"name": "metrics", "image": "prometheuscommunity/postgres-exporter:v0.15.0"}
        ],
        "initContainers": [{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}]
    }))
    .expect("spec")
}

/// A good pre hook plus `extra`; a valid baseline so each test isolates one pattern.
fn annotations(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        (
            format!("{PRE}command"),
            r#"["/bin/sh","-c","sync"]"#.to_owned(),
        ),
        (format!("{PRE}container"), "db".to_owned()),
        (format!("{PRE}on-error"), "Continue".to_owned()),
        (format!("{PRE}timeout"), "60s".to_owned()),
    ]);
    for (k, v) in extra {
        a.insert((*k).to_owned(), (*v).to_owned());
    }
    a
}

fn check(extra: &[(&str, &str)]) -> Vec<Finding> {
    rules::check(&annotations(extra), &spec(), None)
}

/// The one finding of `rule_id`, asserting its key and that it says how to fix it.
fn only(findings: &[Finding], rule_id: &str, key: &str) -> Finding {
    let hits: Vec<&Finding> = findings.iter().filter(|f| f.rule_id == rule_id).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one {rule_id} finding, got {findings:#?}"
    );
    let f = hits[0].clone();
    assert_eq!(f.key, key, "{f:#?}");
    assert!(f.message.contains("Fix:"), "no fix in {f:#?}");
    for other in findings {
        assert!(
            !other.message.contains('§'),
            "cites our internal notes, which users do not have: {other:#?}"
        );
    }
    f
}

#[test]
fn good_hooks_have_no_findings() {
    let extra = [
        (format!("{POST}command"), r#"["/bin/true"]"#),
        (format!("{POST}container"), "db"),
        (format!("{POST}on-error"), "Fail"),
        (format!("{POST}timeout"), "1h30m"),
        (format!("{RX}command"), r#"["/bin/sh","-c","echo ok"]"#),
        (format!("{RX}container"), "db"),
        (format!("{RX}exec-timeout"), "45s"),
        (format!("{RX}wait-timeout"), "5m"),
        (format!("{RX}wait-for-ready"), "True"),
        (format!("{INIT}container-image"), "busybox:1.36"),
        (format!("{INIT}container-name"), "restore-init"),
        (format!("{INIT}command"), r#"["/bin/sh","-c","echo ok"]"#),
        ("kubectl.kubernetes.io/default-container".to_owned(), "db"),
    ];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(check(&extra), vec![]);
}

#[test]
fn b3_program_without_spaces_is_fine() {
    let k = format!("{PRE}command");
    assert_eq!(check(&[(&k, "/usr/local/bin/quiesce")]), vec![]);
}

#[test]
fn b2_plain_string_with_spaces() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, "/sbin/fsfreeze --freeze /data")]),
        rule::COMMAND_PLAIN_STRING,
        &k,
    );
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message
            .contains(r#"["/sbin/fsfreeze","--freeze","/data"]"#),
        "{}",
        f.message
    );
}

#[test]
fn b2_plain_string_with_shell_syntax_suggests_sh_c() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, "psql -c 'CHECKPOINT' && sync")]),
        rule::COMMAND_PLAIN_STRING,
        &k,
    );
    assert!(
        f.message
            .contains(r#"["/bin/sh","-c","psql -c 'CHECKPOINT' && sync"]"#),
        "{}",
        f.message
    );
}

#[test]
fn b4_single_quoted_pseudo_json() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, "['/bin/sh','-c','x']")]),
        rule::COMMAND_NOT_JSON_ARRAY,
        &k,
    );
    assert!(f.message.contains("single quotes"), "{}", f.message);
    assert!(
        f.message.contains(r#"["/bin/sh","-c","x"]"#),
        "{}",
        f.message
    );
}

#[test]
fn b4_typographic_quotes() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, "[\u{201c}/bin/true\u{201d}]")]),
        rule::COMMAND_NOT_JSON_ARRAY,
        &k,
    );
    assert!(f.message.contains("typographic"), "{}", f.message);
}

#[test]
fn b6_non_string_element() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, r#"["sleep",5]"#)]),
        rule::COMMAND_NOT_JSON_ARRAY,
        &k,
    );
    assert!(f.message.contains("element 1 is 5"), "{}", f.message);
    assert!(f.message.contains(r#"["sleep","5"]"#), "{}", f.message);
}

#[test]
fn b4_unterminated_array() {
    let k = format!("{POST}command");
    let f = only(
        &check(&[(&k, "[foobarbaz"), (&format!("{POST}container"), "db")]),
        rule::COMMAND_NOT_JSON_ARRAY,
        &k,
    );
    assert!(f.message.contains("invalid JSON"), "{}", f.message);
}

#[test]
fn b5_leading_whitespace() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, r#" ["/bin/true"]"#)]),
        rule::COMMAND_LEADING_WHITESPACE,
        &k,
    );
    assert!(
        f.message
            .contains("Fix: remove the leading whitespace so the value starts with \"[\""),
        "{}",
        f.message
    );
}

#[test]
fn b7_empty_array() {
    let k = format!("{PRE}command");
    let f = only(&check(&[(&k, "[]")]), rule::COMMAND_EMPTY, &k);
    assert!(f.message.contains("command is required"), "{}", f.message);
    only(&check(&[(&k, r#"[""]"#)]), rule::COMMAND_EMPTY, &k);
}

#[test]
fn program_with_spaces_inside_an_array() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, r#"["psql -c CHECKPOINT"]"#)]),
        rule::COMMAND_PROGRAM_WITH_SPACES,
        &k,
    );
    assert!(
        f.message.contains(r#"["psql","-c","CHECKPOINT"]"#),
        "{}",
        f.message
    );
}

#[test]
fn shell_operator_without_a_shell() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, r#"["pg_dumpall","-f","/backup/all.sql","&&","sync"]"#)]),
        rule::COMMAND_SHELL_SYNTAX,
        &k,
    );
    assert!(
        f.message
            .contains(r#"["/bin/sh","-c","pg_dumpall -f /backup/all.sql && sync"]"#),
        "{}",
        f.message
    );
}

#[test]
fn shell_variable_without_a_shell() {
    let k = format!("{PRE}command");
    let f = only(
        &check(&[(&k, r#"["psql","-U","$POSTGRES_USER","-c","CHECKPOINT"]"#)]),
        rule::COMMAND_SHELL_SYNTAX,
        &k,
    );
    assert!(f.message.contains("$POSTGRES_USER"), "{}", f.message);
    // Inside a shell the same reference is fine.
    assert_eq!(
        check(&[(
            &k,
            r#"["/bin/sh","-c","psql -U \"$POSTGRES_USER\" -c CHECKPOINT"]"#
        )]),
        vec![]
    );
}

#[test]
fn b8_empty_command_leaves_other_keys_without_effect() {
    let f = only(
        &check(&[(&format!("{PRE}command"), "")]),
        rule::KEYS_WITHOUT_COMMAND,
        &format!("{PRE}container"),
    );
    assert!(f.message.contains("empty"), "{}", f.message);
}

#[test]
fn b9_timeout_without_unit() {
    let k = format!("{PRE}timeout");
    let f = only(&check(&[(&k, "300")]), rule::DURATION_NO_UNIT, &k);
    assert!(f.message.contains("30s"), "{}", f.message);
    assert!(f.message.contains("\"300s\""), "{}", f.message);
}

#[test]
fn b10_unparseable_timeouts() {
    let k = format!("{PRE}timeout");
    let f = only(&check(&[(&k, "1d")]), rule::DURATION_UNPARSEABLE, &k);
    assert!(f.message.contains("\"24h\""), "{}", f.message);
    let f = only(&check(&[(&k, " 30s")]), rule::DURATION_UNPARSEABLE, &k);
    assert!(f.message.contains("remove the whitespace"), "{}", f.message);
    only(&check(&[(&k, "5 min")]), rule::DURATION_UNPARSEABLE, &k);
}

#[test]
fn b11_zero_timeout() {
    let k = format!("{PRE}timeout");
    let f = only(&check(&[(&k, "0s")]), rule::DURATION_NOT_POSITIVE, &k);
    assert!(f.message.contains("zero"), "{}", f.message);
}

#[test]
fn b12_negative_timeout() {
    let k = format!("{PRE}timeout");
    let f = only(&check(&[(&k, "-1s")]), rule::DURATION_NOT_POSITIVE, &k);
    assert!(f.message.contains("no time limit"), "{}", f.message);
}

#[test]
fn b13_timeout_over_four_hours() {
    let k = format!("{PRE}timeout");
    let f = only(&check(&[(&k, "10h")]), rule::DURATION_TOO_LONG, &k);
    assert_eq!(f.severity, Severity::Warning);
    assert!(check(&[(&k, "4h")]).is_empty());
}

#[test]
fn b14_on_error_wrong_case() {
    let k = format!("{PRE}on-error");
    let f = only(&check(&[(&k, "fail")]), rule::ON_ERROR_CASE, &k);
    assert!(f.message.contains("\"Fail\""), "{}", f.message);
    assert!(f.message.contains("like Continue"), "{}", f.message);
    let f = only(&check(&[(&k, " Continue")]), rule::ON_ERROR_CASE, &k);
    assert!(f.message.contains("\"Continue\""), "{}", f.message);
}

#[test]
fn b15_on_error_unknown() {
    let k = format!("{PRE}on-error");
    let f = only(&check(&[(&k, "FailBlock")]), rule::ON_ERROR_UNKNOWN, &k);
    assert!(
        f.message
            .contains("FailBlock, velero-io/velero#10177, is not released")
            && f.message.contains("Fix: write \"Fail\" or \"Continue\""),
        "{}",
        f.message
    );
}

#[test]
fn b17_missing_container_defaults_to_the_first() {
    let mut a = annotations(&[]);
    a.remove(&format!("{PRE}container"));
    a.insert(
        "kubectl.kubernetes.io/default-container".into(),
        "metrics".into(),
    );
    let f = only(
        &rules::check(&a, &spec(), None),
        rule::CONTAINER_MISSING,
        &format!("{PRE}container"),
    );
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("\"db\""), "{}", f.message);
    assert!(f.message.contains("sidecar"), "{}", f.message);
    assert!(f.message.contains("default-container"), "{}", f.message);
}

#[test]
fn b18_container_not_in_spec() {
    let k = format!("{PRE}container");
    let f = only(&check(&[(&k, "nope")]), rule::CONTAINER_NOT_FOUND, &k);
    assert!(f.message.contains("no such container"), "{}", f.message);
    assert!(f.message.contains("db, metrics"), "{}", f.message);
    let f = only(&check(&[(&k, " db")]), rule::CONTAINER_NOT_FOUND, &k);
    assert!(f.message.contains("whitespace"), "{}", f.message);
}

#[test]
fn b19_native_sidecar_is_not_a_hook_container() {
    let k = format!("{PRE}container");
    let f = only(&check(&[(&k, "proxy")]), rule::CONTAINER_NOT_FOUND, &k);
    assert!(f.message.contains("init container"), "{}", f.message);
}

#[test]
fn b21_legacy_keys_are_ignored_when_pre_is_set() {
    let f = only(
        &check(&[(&format!("{LEG}container"), "metrics")]),
        rule::LEGACY_KEYS_IGNORED,
        &format!("{LEG}container"),
    );
    assert!(
        f.message.contains("Velero ignores every legacy") && f.message.contains("Fix: remove them"),
        "{}",
        f.message
    );
}

#[test]
fn b22_pre_keys_are_ignored_when_legacy_is_used() {
    let mut a = annotations(&[]);
    a.remove(&format!("{PRE}command"));
    a.insert(format!("{LEG}command"), r#"["/bin/true"]"#.into());
    a.insert(format!("{LEG}container"), "db".into());
    let findings = rules::check(&a, &spec(), None);
    let f = only(
        &findings,
        rule::LEGACY_KEYS_IGNORED,
        &format!("{PRE}container"),
    );
    assert!(
        f.message
            .contains("Fix: move the whole hook to the pre.hook.backup.velero.io/* keys"),
        "{}",
        f.message
    );
}

#[test]
fn b27_typo_and_case_keys() {
    let typo = format!("{PRE}commands");
    let f = only(
        &check(&[(&typo, r#"["/bin/true"]"#)]),
        rule::UNKNOWN_KEY,
        &typo,
    );
    assert!(
        f.message.contains(&format!("rename it to {PRE}command")),
        "{}",
        f.message
    );
    let domain = "pre.hooks.backup.velero.io/command";
    let f = only(&check(&[(domain, "[]")]), rule::UNKNOWN_KEY, domain);
    assert!(
        f.message.contains(&format!("{PRE}command")),
        "{}",
        f.message
    );
    let upper = "Pre.hook.backup.velero.io/timeout";
    only(&check(&[(upper, "60s")]), rule::KEY_CASE, upper);
}

#[test]
fn e3_wait_for_ready_not_a_go_bool() {
    let k = format!("{RX}wait-for-ready");
    let extra = restore(&[(&k, "yes")]);
    let f = only(&check(&as_refs(&extra)), rule::WAIT_FOR_READY_INVALID, &k);
    assert!(f.message.contains("ParseBool"), "{}", f.message);
}

#[test]
fn e4_exec_timeout_without_unit() {
    let k = format!("{RX}exec-timeout");
    let extra = restore(&[(&k, "45")]);
    only(&check(&as_refs(&extra)), rule::DURATION_NO_UNIT, &k);
}

#[test]
fn e5_restore_timeout_is_the_wrong_key() {
    let k = format!("{RX}timeout");
    let extra = restore(&[(&k, "5m")]);
    let f = only(&check(&as_refs(&extra)), rule::RESTORE_TIMEOUT_KEY, &k);
    assert!(
        f.message.contains(&format!("{RX}exec-timeout")),
        "{}",
        f.message
    );
}

#[test]
fn e6_restore_hook_without_wait_timeout() {
    let mut extra = restore(&[]);
    extra.retain(|(k, _)| !k.ends_with("wait-timeout"));
    let f = only(
        &check(&as_refs(&extra)),
        rule::RESTORE_WAIT_TIMEOUT_MISSING,
        &format!("{RX}wait-timeout"),
    );
    assert!(f.message.contains("Finalizing"), "{}", f.message);
}

#[test]
fn e7_restore_container_not_found_hangs_the_restore() {
    let k = format!("{RX}container");
    let extra = restore(&[(&k, "nope")]);
    let f = only(&check(&as_refs(&extra)), rule::CONTAINER_NOT_FOUND, &k);
    assert!(f.message.contains("Finalizing"), "{}", f.message);
}

#[test]
fn e12_named_multi_hook_keys() {
    let k = format!("{RX}test1.command");
    let f = only(&check(&[(&k, r#"["/bin/true"]"#)]), rule::UNKNOWN_KEY, &k);
    assert!(
        f.message.contains("one annotation hook per phase per pod")
            && f.message
                .contains("Fix: use post.hook.restore.velero.io/command"),
        "{}",
        f.message
    );
}

#[test]
fn e15_negative_wait_timeout() {
    let k = format!("{RX}wait-timeout");
    let extra = restore(&[(&k, "-1s")]);
    let f = only(&check(&as_refs(&extra)), rule::DURATION_NOT_POSITIVE, &k);
    assert!(
        f.message.contains("waits without a deadline")
            && f.message.contains("Fix: a positive duration"),
        "{}",
        f.message
    );
}

#[test]
fn i2_init_image_without_command_panics_velero() {
    let k = format!("{INIT}command");
    let f = only(
        &check(&[(&format!("{INIT}container-image"), "busybox:1.36")]),
        rule::INIT_COMMAND_MISSING,
        &k,
    );
    assert!(f.message.contains("panics"), "{}", f.message);
    only(
        &check(&[
            (&format!("{INIT}container-image"), "busybox:1.36"),
            (&k, ""),
        ]),
        rule::INIT_COMMAND_MISSING,
        &k,
    );
    // `[]` is no panic: the container keeps the image ENTRYPOINT.
    assert_eq!(
        check(&[
            (&format!("{INIT}container-image"), "busybox:1.36"),
            (&k, "[]"),
        ]),
        vec![]
    );
}

#[test]
fn i2_init_plain_string_command() {
    let k = format!("{INIT}command");
    only(
        &check(&[
            (&format!("{INIT}container-image"), "busybox:1.36"),
            (&k, "echo restored"),
        ]),
        rule::COMMAND_PLAIN_STRING,
        &k,
    );
}

#[test]
fn i4_init_keys_without_image() {
    only(
        &check(&[(&format!("{INIT}command"), r#"["/bin/true"]"#)]),
        rule::KEYS_WITHOUT_COMMAND,
        &format!("{INIT}command"),
    );
}

#[test]
fn i6_init_container_name_invalid_or_taken() {
    let k = format!("{INIT}container-name");
    for name in ["Restore_Init", "db"] {
        only(
            &check(&[
                (&format!("{INIT}container-image"), "busybox:1.36"),
                (&format!("{INIT}command"), r#"["/bin/true"]"#),
                (&k, name),
            ]),
            rule::INIT_CONTAINER_NAME_INVALID,
            &k,
        );
    }
}

#[test]
fn i8_init_timeout_has_no_effect() {
    let k = format!("{INIT}timeout");
    let f = only(&check(&[(&k, "5m")]), rule::UNKNOWN_KEY, &k);
    assert_eq!(f.severity, Severity::Warning);
}

fn pg(version: Option<&str>) -> Engine {
    Engine {
        engine: "postgresql".into(),
        version: version.and_then(Version::parse),
    }
}

#[test]
fn pg_start_backup_on_postgres_15_and_later() {
    let k = format!("{PRE}command");
    let a = annotations(&[(
        &k,
        r#"["psql","-U","postgres","-c","SELECT pg_start_backup('velero')"]"#,
    )]);
    let f = only(
        &rules::check(&a, &spec(), Some(&pg(Some("16.4")))),
        rule::PG_EXCLUSIVE_BACKUP,
        &k,
    );
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("16.4"), "{}", f.message);
    let f = only(
        &rules::check(&a, &spec(), Some(&pg(None))),
        rule::PG_EXCLUSIVE_BACKUP,
        &k,
    );
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("unknown"), "{}", f.message);
    assert!(
        rules::check(&a, &spec(), Some(&pg(Some("14"))))
            .iter()
            .all(|f| f.rule_id != rule::PG_EXCLUSIVE_BACKUP)
    );
}

#[test]
fn pg_stop_backup_in_post_hook() {
    let k = format!("{POST}command");
    let a = annotations(&[
        (&k, r#"["psql","-c","SELECT pg_stop_backup()"]"#),
        (&format!("{POST}container"), "db"),
    ]);
    only(
        &rules::check(&a, &spec(), Some(&pg(Some("15")))),
        rule::PG_EXCLUSIVE_BACKUP,
        &k,
    );
}

#[test]
fn session_locks_that_end_with_the_hook() {
    let k = format!("{PRE}command");
    for cmd in [
        r#"["mysql","-uroot","-e","FLUSH TABLES WITH READ LOCK"]"#,
        r#"["/bin/sh","-c","mysql -e 'LOCK INSTANCE FOR BACKUP'"]"#,
        r#"["mariadb","-e","BACKUP STAGE START; BACKUP STAGE BLOCK_COMMIT"]"#,
        r#"["psql","-c","SELECT pg_backup_start('velero')"]"#,
    ] {
        let f = only(&check(&[(&k, cmd)]), rule::SESSION_LOCK, &k);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("Heuristic"), "{}", f.message);
    }
    // A detached holder keeps the session alive: no finding.
    let detached = r#"["/bin/sh","-c","setsid mysql -e 'FLUSH TABLES WITH READ LOCK; SELECT SLEEP(300)' </dev/null >/tmp/l 2>&1 &"]"#;
    assert_eq!(check(&[(&k, detached)]), vec![]);
}

#[test]
fn builtin_template_annotations_pass_every_rule() {
    let lib = Library::builtin().expect("builtin");
    for t in lib.iter() {
        let findings = rules::check(
            &t.annotations("db"),
            &spec(),
            Some(&Engine {
                engine: t.engine.clone(),
                version: Version::parse("16"),
            }),
        );
        assert_eq!(findings, vec![], "template {}", t.name);
    }
}

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

fn db_pod(annotations: serde_json::Value) -> Pod {
    pod(json!({
        "metadata": {"name": "pg-0", "namespace": "shop", "annotations": annotations},
        "spec": {
            "containers": [{"name": "postgres", "image": "postgres:16.4", "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-pg-0"}}]
        }
    }))
}

#[test]
fn database_pod_without_hooks_is_reported() {
    let lib = Library::builtin().expect("builtin");
    let findings = rules::check_pod(&db_pod(json!({})), &lib);
    let f = only(&findings, rule::MISSING_HOOKS, &format!("{PRE}command"));
    assert!(f.message.contains("\"postgres\""), "{}", f.message);
    assert!(
        f.message.contains("velero-hook-injector.io/inject=enabled"),
        "{}",
        f.message
    );
    // Opted out, or not a database: nothing to report.
    let opted_out = db_pod(json!({"velero-hook-injector.io/inject": "false"}));
    assert_eq!(rules::check_pod(&opted_out, &lib), vec![]);
    // The injected marker alone (hooks removed later) still counts as missing.
    let marker_only = db_pod(json!({"velero-hook-injector.io/injected": "postgres/postgres"}));
    only(
        &rules::check_pod(&marker_only, &lib),
        rule::MISSING_HOOKS,
        &format!("{PRE}command"),
    );
}

#[test]
fn current_injection_is_clean_and_an_old_one_drifts() {
    let lib = Library::builtin().expect("builtin");
    let t = lib.get("postgres").expect("postgres");
    let mut a = t.annotations("postgres");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "postgres/postgres".into(),
    );
    let current = db_pod(serde_json::to_value(&a).expect("map"));
    assert_eq!(rules::check_pod(&current, &lib), vec![]);

    a.insert(format!("{PRE}timeout"), "120s".into());
    a.insert(
        format!("{PRE}command"),
        r#"["/bin/sh","-c","psql -c CHECKPOINT"]"#.into(),
    );
    let old = db_pod(serde_json::to_value(&a).expect("map"));
    let f = only(
        &rules::check_pod(&old, &lib),
        rule::TEMPLATE_DRIFT,
        "velero-hook-injector.io/injected",
    );
    assert!(
        f.message.contains(&format!("{PRE}command")),
        "{}",
        f.message
    );
    assert!(
        f.message.contains(&format!("{PRE}timeout")),
        "{}",
        f.message
    );
    assert!(f.message.contains("restart"), "{}", f.message);

    a.insert(
        "velero-hook-injector.io/injected".into(),
        "oracle/postgres".into(),
    );
    let gone = db_pod(serde_json::to_value(&a).expect("map"));
    let f = only(
        &rules::check_pod(&gone, &lib),
        rule::TEMPLATE_DRIFT,
        "velero-hook-injector.io/injected",
    );
    assert!(f.message.contains("no longer exists"), "{}", f.message);
}

/// A postgres pod carrying the webhook's snapshot hooks, plus `extra` annotations.
fn snapshot_hooked(lib: &Library, extra: serde_json::Value) -> Pod {
    let mut a = lib
        .get("postgres")
        .expect("postgres")
        .annotations("postgres");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "postgres/postgres".into(),
    );
    for (k, v) in extra.as_object().expect("object") {
        a.insert(k.clone(), v.as_str().expect("string").to_owned());
    }
    db_pod(serde_json::to_value(&a).expect("map"))
}

#[test]
fn snapshot_hooks_on_a_file_system_backup_volume_are_reported() {
    let lib = Library::builtin().expect("builtin");
    let fsb = ClusterDefaults {
        default_volumes_to_fs_backup: true,
    };
    // Snapshots by default and no list: the CHECKPOINT hooks fit.
    let plain = snapshot_hooked(&lib, json!({}));
    assert_eq!(rules::check_pod(&plain, &lib), vec![]);
    // The same pod in a cluster whose Backups default to file-system backup: told to restart
    // for dump mode, which only admission can give it.
    let f = only(
        &rules::check_pod_with(&plain, &lib, fsb),
        rule::FS_BACKUP_SNAPSHOT_HOOKS,
        "velero-hook-injector.io/injected",
    );
    assert!(f.message.contains("file by file"), "{}", f.message);
    assert!(f.message.contains("restart"), "{}", f.message);
    assert!(f.message.contains("vhi-dump"), "{}", f.message);
    // Opted out of file-system backup by the pod's own exclude list: fine again.
    let excluded = snapshot_hooked(
        &lib,
        json!({"backup.velero.io/backup-volumes-excludes": "data"}),
    );
    assert_eq!(rules::check_pod_with(&excluded, &lib, fsb), vec![]);
    // The pod lists its data volume for file-system backup itself, which rules dump mode out
    // (the live data would still be copied): the finding says why and what to do instead.
    let listed = snapshot_hooked(&lib, json!({"backup.velero.io/backup-volumes": "data"}));
    let f = only(
        &rules::check_pod(&listed, &lib),
        rule::FS_BACKUP_SNAPSHOT_HOOKS,
        "velero-hook-injector.io/injected",
    );
    assert!(f.message.contains("ruled out"), "{}", f.message);
    assert!(f.message.contains("CSI snapshot"), "{}", f.message);
}

#[test]
fn a_pod_in_dump_mode_is_clean_under_file_system_backup() {
    let lib = Library::builtin().expect("builtin");
    let fsb = ClusterDefaults {
        default_volumes_to_fs_backup: true,
    };
    let mut p = db_pod(json!({}));
    let d = velero_hook_injector::hooks::detect::decide_with(&p, &lib, fsb);
    assert!(
        d.dump_volume.is_some(),
        "dump mode expected: {:?}",
        d.warnings
    );
    p.metadata.annotations = Some(d.add);
    assert_eq!(rules::check_pod_with(&p, &lib, fsb), vec![]);
}

#[test]
fn file_copy_safe_templates_are_not_reported_under_file_system_backup() {
    // redis's hooks hold while kopia copies: no dump mode, nothing to restart for.
    let lib = Library::builtin().expect("builtin");
    let mut a = lib.get("redis").expect("redis").annotations("redis");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "redis/redis".into(),
    );
    let p = pod(json!({
        "metadata": {"name": "r-0", "namespace": "shop", "annotations": a},
        "spec": {
            "containers": [{"name": "redis", "image": "redis:7.2", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-r-0"}}]
        }
    }));
    let fsb = ClusterDefaults {
        default_volumes_to_fs_backup: true,
    };
    assert_eq!(rules::check_pod_with(&p, &lib, fsb), vec![]);
}

#[test]
fn check_pod_reads_the_postgres_version_from_the_image() {
    let lib = Library::builtin().expect("builtin");
    let p = db_pod(json!({
        "pre.hook.backup.velero.io/command": r#"["psql","-c","SELECT pg_start_backup('x')"]"#,
        "pre.hook.backup.velero.io/container": "postgres",
    }));
    let findings = rules::check_pod(&p, &lib);
    let f = only(
        &findings,
        rule::PG_EXCLUSIVE_BACKUP,
        &format!("{PRE}command"),
    );
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(findings[0].severity, Severity::Error, "errors come first");
}

/// A valid restore exec hook plus overrides.
fn restore(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        (format!("{RX}command"), r#"["/bin/true"]"#.into()),
        (format!("{RX}container"), "db".into()),
        (format!("{RX}exec-timeout"), "45s".into()),
        (format!("{RX}wait-timeout"), "5m".into()),
    ];
    for (k, val) in extra {
        v.retain(|(key, _)| key != k);
        v.push(((*k).to_owned(), (*val).to_owned()));
    }
    v
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn drift_ignores_the_users_own_family_when_the_template_has_both() {
    let mut lib = Library::builtin().expect("builtin");
    lib.insert(
        velero_hook_injector::hooks::template::Template::from_yaml(
            "custom.yaml",
            r#"
name: pg-restore
engine: postgresql
description: CHECKPOINT before backup, ANALYZE after restore.
match: {images: [postgres]}
hooks:
  preBackup: {command: [/bin/sh, -c, "psql -c CHECKPOINT"], onError: Continue, timeout: 300s}
  postRestore:
    command: [/bin/sh, -c, "psql -c ANALYZE"]
    onError: Continue
    execTimeout: 10m
    waitTimeout: 15m
"#,
        )
        .expect("template"),
    );
    let t = lib.get("pg-restore").expect("pg-restore");
    // The user set their own backup hook; the webhook added only the restore hook.
    let mut a: BTreeMap<String, String> = t
        .annotations("postgres")
        .into_iter()
        .filter(|(k, _)| k.starts_with(RX))
        .collect();
    a.insert(
        format!("{PRE}command"),
        r#"["/usr/local/bin/quiesce"]"#.into(),
    );
    a.insert(format!("{PRE}container"), "postgres".into());
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "pg-restore/postgres".into(),
    );
    assert_eq!(
        rules::check_pod(&db_pod(serde_json::to_value(&a).expect("map")), &lib),
        vec![]
    );
    // The webhook's own restore hook changed in the template: that is drift.
    a.insert(format!("{RX}exec-timeout"), "5m".into());
    let f = only(
        &rules::check_pod(&db_pod(serde_json::to_value(&a).expect("map")), &lib),
        rule::TEMPLATE_DRIFT,
        "velero-hook-injector.io/injected",
    );
    assert!(
        f.message.contains(&format!("{RX}exec-timeout")),
        "{}",
        f.message
    );
    assert!(!f.message.contains(PRE), "{}", f.message);
}

/// The rule table in docs/policy.md has one row per rule, in the order of `rule::ALL`, each with
/// a fix: messages send users there instead of to notes they do not have.
#[test]
fn docs_rule_table_has_one_row_per_rule() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policy.md"))
        .expect("docs/policy.md");
    let table = page
        .split("<!-- rule-table:")
        .nth(1)
        .expect("rule-table marker in docs/policy.md");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
    assert_eq!(
        ids,
        rule::ALL,
        "docs/policy.md rule table vs rules::rule::ALL"
    );
    for row in &rows {
        assert_eq!(row.len(), 5, "id, severity, what, why, fix: {row:?}");
        assert!(row.iter().all(|cell| !cell.is_empty()), "{row:?}");
    }
    assert!(
        !page.contains('§'),
        "docs/policy.md cites our internal notes"
    );
}

/// Velero after v1.18.2 stops waiting for restore hooks after --resource-timeout (10m by
/// default): a restore hook allowed to run longer is reported, with the fix.
#[test]
fn restore_hook_longer_than_velero_waits_is_reported() {
    let lib = Library::builtin().expect("builtin");
    let hook = |exec: &str| {
        json!({
            format!("{RX}command"): r#"["/bin/sh","-c","check"]"#,
            format!("{RX}container"): "postgres",
            format!("{RX}exec-timeout"): exec,
            format!("{RX}wait-timeout"): "1h",
            format!("{RX}wait-for-ready"): "true",
            format!("{RX}on-error"): "Continue",
            "velero-hook-injector.io/inject": "false",
        })
    };
    let key = format!("{RX}exec-timeout");
    let f = only(
        &rules::check_pod(&db_pod(hook("15m")), &lib),
        rule::RESTORE_HOOK_EXCEEDS_VELERO_WAIT,
        &key,
    );
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("--resource-timeout"), "{}", f.message);
    for fine in ["10m", "8m", "600s"] {
        let findings = rules::check_pod(&db_pod(hook(fine)), &lib);
        assert!(
            findings
                .iter()
                .all(|f| f.rule_id != rule::RESTORE_HOOK_EXCEEDS_VELERO_WAIT),
            "{fine}: {findings:#?}"
        );
    }
}

/// The built-in restore checks end inside Velero's 10 minutes; the webhook's dump-mode load,
/// which may need longer and whose admission warning says so, is not a finding.
#[test]
fn builtin_restore_hooks_fit_velero_wait_and_the_dump_load_is_exempt() {
    let lib = Library::builtin().expect("builtin");
    for t in lib.iter() {
        let mut a: BTreeMap<String, String> = t.annotations("postgres");
        a.insert(
            "velero-hook-injector.io/injected".into(),
            format!("{}/postgres", t.name),
        );
        let findings = rules::check_pod(&db_pod(serde_json::to_value(&a).expect("map")), &lib);
        assert!(
            findings
                .iter()
                .all(|f| f.rule_id != rule::RESTORE_HOOK_EXCEEDS_VELERO_WAIT),
            "{}: {findings:#?}",
            t.name
        );
        let Some(mut dump) = t.dump_annotations("postgres") else {
            continue;
        };
        let exec = dump
            .get(&format!("{RX}exec-timeout"))
            .cloned()
            .expect("dump load exec-timeout");
        assert_ne!(
            exec, "8m",
            "{}: the load may take longer than a check",
            t.name
        );
        dump.insert(
            "velero-hook-injector.io/injected".into(),
            format!("{}/postgres", t.name),
        );
        let findings = rules::check_pod(&db_pod(serde_json::to_value(&dump).expect("map")), &lib);
        assert!(
            findings
                .iter()
                .all(|f| f.rule_id != rule::RESTORE_HOOK_EXCEEDS_VELERO_WAIT),
            "{}: {findings:#?}",
            t.name
        );
    }
}
