//! Where `restore-report` reads from: the Restore (velero.io/v1), the pods it restored (label
//! `velero.io/restore-name`, cluster-wide) and the Velero server's log (pods/log of the
//! Deployment's pods, container `velero`). Thin I/O; the decisions are in
//! [`super::restore_report`]. Every error says which permission or flag fixes it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, LogParams};

use super::restore_report::{
    self, Report, RestoreStatus, parse_server_log, restore_label_value, restored_databases,
};
use crate::hooks::template::Library;

/// Labels of the Velero server's pods: `velero install` sets `deploy=velero`
/// (`pkg/install/deployment.go`), the vmware-tanzu Helm chart `name=velero`.
pub const SERVER_SELECTORS: &[&str] = &["deploy=velero", "name=velero"];
/// The Velero server's container, in both installs.
pub const SERVER_CONTAINER: &str = "velero";
/// How far before the restore's start the server log is read (node and Velero clocks differ).
const CLOCK_SLACK_SECONDS: i64 = 300;

/// Where to look.
#[derive(Clone, Debug)]
pub struct Target {
    /// The restore's name.
    pub restore: String,
    /// The namespace Velero runs in (and keeps its Restores in).
    pub velero_namespace: String,
}

/// The chart value that creates the permissions `restore-report` needs.
const RBAC_FIX: &str = "install the chart with restoreReport.rbac.create=true and your user or \
                        group in restoreReport.rbac.subjects (velero.namespace: Velero's namespace), \
                        or ask your cluster admin for that permission";

/// Why the report could not be made (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Restore does not exist.
    #[error(
        "no Restore named {restore:?} in namespace {namespace}: list them with `velero restore get` \
         (or kubectl -n {namespace} get restores.velero.io), or pass --velero-namespace where Velero runs"
    )]
    NoRestore {
        /// Its name.
        restore: String,
        /// Where it was looked for.
        namespace: String,
    },
    /// The API refused a request for lack of permission.
    #[error(
        "not allowed to {verb} {resource}{scope}: {RBAC_FIX} (kubectl auth can-i {verb} {resource}{can_i})"
    )]
    Forbidden {
        /// The verb.
        verb: &'static str,
        /// The resource.
        resource: &'static str,
        /// " in namespace X" or " in every namespace".
        scope: String,
        /// kubectl auth can-i's scope flags.
        can_i: String,
    },
    /// No Velero server pod was found.
    #[error(
        "no Velero server pod in namespace {0} (labels deploy=velero or name=velero): pass \
         --velero-namespace with the namespace Velero runs in"
    )]
    NoServer(String),
    /// Any other API failure (the cluster unreachable, the API server failing).
    #[error(
        "{what}: {}: check that kubectl reaches the cluster with the same --context/--kubeconfig",
        super::audit::chain(.error)
    )]
    Api {
        /// What was being read.
        what: String,
        /// The API error.
        error: kube::Error,
    },
    /// The Restore's status is not what Velero writes.
    #[error("the Restore's status cannot be read ({0}): is velero.io/v1 Restore Velero's?")]
    Status(serde_json::Error),
}

fn api_error(
    error: kube::Error,
    verb: &'static str,
    resource: &'static str,
    namespace: Option<&str>,
    what: impl Into<String>,
) -> SourceError {
    match &error {
        kube::Error::Api(status) if status.code == 403 => SourceError::Forbidden {
            verb,
            resource,
            scope: namespace.map_or_else(
                || " in every namespace".to_owned(),
                |ns| format!(" in namespace {ns}"),
            ),
            can_i: namespace.map_or_else(|| " -A".to_owned(), |ns| format!(" -n {ns}")),
        },
        _ => SourceError::Api {
            what: what.into(),
            error,
        },
    }
}

fn restores(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("velero.io", "v1", "Restore");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "restores");
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// The Restore's status (an empty one while Velero has not picked it up).
pub async fn restore_status(
    client: &kube::Client,
    target: &Target,
) -> Result<RestoreStatus, SourceError> {
    let ns = target.velero_namespace.as_str();
    let object = restores(client, ns)
        .get_opt(&target.restore)
        .await
        .map_err(|e| {
            api_error(
                e,
                "get",
                "restores.velero.io",
                Some(ns),
                format!("reading Restore {ns}/{}", target.restore),
            )
        })?
        .ok_or_else(|| SourceError::NoRestore {
            restore: target.restore.clone(),
            namespace: ns.to_owned(),
        })?;
    match object.data.get("status") {
        Some(status) => serde_json::from_value(status.clone()).map_err(SourceError::Status),
        None => Ok(RestoreStatus::default()),
    }
}

/// Every page of a pod list.
async fn list_all(api: &Api<Pod>, selector: &str) -> Result<Vec<Pod>, kube::Error> {
    let mut pods = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default()
            .labels(selector)
            .limit(super::audit::PAGE_SIZE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await?;
        pods.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(pods),
        }
    }
}

/// The pods Velero restored with this restore, in every namespace.
pub async fn restored_pods(
    client: &kube::Client,
    target: &Target,
) -> Result<Vec<Pod>, SourceError> {
    let selector = format!(
        "{}={}",
        crate::hooks::velero::RESTORE_NAME_LABEL,
        restore_label_value(&target.restore)
    );
    list_all(&Api::all(client.clone()), &selector)
        .await
        .map_err(|e| api_error(e, "list", "pods", None, "listing the restored pods"))
}

/// The Velero server's log since shortly before the restore began, from every server pod (and
/// the previous run of a restarted one), concatenated.
pub async fn server_log(
    client: &kube::Client,
    target: &Target,
    since: Option<&str>,
) -> Result<String, SourceError> {
    let ns = target.velero_namespace.as_str();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut servers = Vec::new();
    for selector in SERVER_SELECTORS {
        servers = list_all(&api, selector).await.map_err(|e| {
            api_error(
                e,
                "list",
                "pods",
                Some(ns),
                "listing the Velero server pods",
            )
        })?;
        if !servers.is_empty() {
            break;
        }
    }
    if servers.is_empty() {
        return Err(SourceError::NoServer(ns.to_owned()));
    }
    let since_time = since
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .and_then(|t| {
            t.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(
                CLOCK_SLACK_SECONDS,
            ))
            .ok()
        });
    let mut log = String::new();
    for pod in &servers {
        let Some(name) = pod.metadata.name.as_deref() else {
            continue;
        };
        let restarted = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == SERVER_CONTAINER))
            .is_some_and(|c| c.restart_count > 0);
        let params = LogParams {
            container: Some(SERVER_CONTAINER.to_owned()),
            since_time,
            ..LogParams::default()
        };
        if restarted {
            // The run before a restart may hold the hook's lines; it may also be gone.
            let previous = LogParams {
                previous: true,
                ..params.clone()
            };
            if let Ok(text) = api.logs(name, &previous).await {
                log.push_str(&text);
                log.push('\n');
            }
        }
        let text = api.logs(name, &params).await.map_err(|e| {
            api_error(
                e,
                "get",
                "pods/log",
                Some(ns),
                format!("reading the log of the Velero server pod {ns}/{name}"),
            )
        })?;
        log.push_str(&text);
        log.push('\n');
    }
    Ok(log)
}

/// Reads everything once and builds the report.
pub async fn report(
    client: &kube::Client,
    target: &Target,
    library: &Library,
) -> Result<Report, SourceError> {
    let status = restore_status(client, target).await?;
    let pods = restored_pods(client, target).await?;
    let databases = restored_databases(&pods, library);
    let records = if databases.is_empty() {
        Vec::new()
    } else {
        let log = server_log(client, target, status.start_timestamp.as_deref()).await?;
        parse_server_log(&log, &target.restore)
    };
    Ok(restore_report::build_report(
        &target.restore,
        status,
        &databases,
        &records,
    ))
}

/// Polls the Restore every `interval` until its phase is terminal or `timeout` passed, then
/// builds the report (unfinished if the time ran out).
pub async fn report_when_finished(
    client: &kube::Client,
    target: &Target,
    library: &Library,
    interval: Duration,
    timeout: Duration,
) -> Result<Report, SourceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = restore_status(client, target).await?;
        if status.finished() || tokio::time::Instant::now() + interval > deadline {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    report(client, target, library).await
}
