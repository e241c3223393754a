//! `serve`: logging set-up, development certificates, the webhook server with its namespace
//! cache, template reloading and optional reconciler, and the shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use velero_hook_injector::admission::policy::{Mode, NamespaceLookup, NoNamespaces};
use velero_hook_injector::cluster::namespaces::NamespaceCache;
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::reconcile::controller::{self, Config as ReconcileConfig};
use velero_hook_injector::reconcile::metrics::ReconcileMetrics;
use velero_hook_injector::server::tls;
use velero_hook_injector::server::{self, AppState, ServeConfig};

use super::{LogFormat, NamespacePolicy, ReconcileArgs, library};

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: in a file or a log collector they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// A development CA and localhost certificate, created once and reused.
pub(crate) fn dev_certificates(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let files = tls::CertFiles::in_dir(dir);
    if !files.exist() {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        tls::generate(dir, &names, 90).context("creating development certificates")?;
        tracing::info!(dir = %dir.display(), "created a development CA and serving certificate for localhost");
    }
    let ca = files.ca.display();
    let port = addr.port();
    tracing::info!(
        "no --tls-cert given: serving the development certificate. Try: curl --cacert {ca} https://localhost:{port}/healthz ; and a postgres pod getting its hooks: curl --cacert {ca} -H 'Content-Type: application/json' --data-binary @examples/admission-review-postgres.json https://localhost:{port}/mutate"
    );
    Ok((files.cert, files.key))
}

pub(crate) async fn serve(
    cfg: ServeConfig,
    mode: Mode,
    templates: Option<PathBuf>,
    namespace_policy: NamespacePolicy,
    reconcile: ReconcileArgs,
    backup_defaults: ClusterDefaults,
) -> anyhow::Result<()> {
    let library = library(templates.as_deref())?;
    tracing::info!(templates = %library.names().join(","), %mode, default_volumes_to_fs_backup = backup_defaults.default_volumes_to_fs_backup, "template library loaded");
    let mut api: Option<(kube::Client, NamespaceCache)> = None;
    let namespaces: Arc<dyn NamespaceLookup> = match namespace_policy {
        NamespacePolicy::Off => Arc::new(NoNamespaces),
        NamespacePolicy::Auto => match kube::Client::try_default().await {
            Ok(client) => {
                let cache = NamespaceCache::spawn(client.clone());
                api = Some((client, cache.clone()));
                Arc::new(cache)
            }
            Err(e) => {
                // Expected when trying it out on a workstation: say it once, calmly.
                tracing::info!(reason = %e, "no Kubernetes cluster configured (not in a pod, no kubeconfig): namespace labels are not read, every namespace uses --mode {mode}");
                Arc::new(NoNamespaces)
            }
        },
    };
    let reload_interval = cfg.reload_interval;
    let mut state = AppState::new(library)
        .with_policy(mode, namespaces)
        .with_backup_defaults(backup_defaults);
    let reconcile_metrics = reconcile
        .enabled
        .then(|| ReconcileMetrics::register(state.metrics.registry_mut()));
    let state = Arc::new(state);
    let reconciler = match (reconcile_metrics, api) {
        (None, _) => None,
        (Some(metrics), Some((client, cache))) => {
            let rc = ReconcileConfig {
                rate: reconcile.rate,
                burst: reconcile.burst,
                queue_capacity: reconcile.queue_capacity,
                resync: reconcile.resync,
                cluster_mode: mode,
                excluded: reconcile.exclude_namespaces,
                namespaces: reconcile
                    .namespaces
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect(),
                backup_defaults,
                velero_namespace: reconcile.velero_namespace,
                ..ReconcileConfig::default()
            };
            tracing::info!(rate = rc.rate, burst = rc.burst, resync_s = rc.resync.as_secs(), excluded = %rc.excluded.join(","), namespaces = %if rc.namespaces.is_empty() { "all".to_owned() } else { rc.namespaces.join(",") }, "reconciler started: running pods in opted-in namespaces get the hooks admission would add");
            Some(controller::spawn(
                client,
                Arc::new(cache),
                Arc::clone(&state) as Arc<dyn controller::LibrarySource>,
                metrics,
                rc,
            ))
        }
        (Some(_), None) => bail!(
            "--reconcile needs the Kubernetes API for pods and namespaces: run in a cluster (or with a kubeconfig) and with --namespace-policy auto, or turn the reconciler off"
        ),
    };
    if let Some(path) = templates {
        tokio::spawn(server::watch_templates(
            path,
            reload_interval,
            Arc::clone(&state),
        ));
    }
    let running = server::start(cfg, state).await?;
    shutdown_signal().await;
    if let Some(r) = &reconciler {
        r.abort();
    }
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
