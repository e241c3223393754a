//! velero-hook-injector command line: serve the webhook, render manifests offline, inspect templates.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use velero_hook_injector::admission::policy::{Mode, NamespaceLookup, NoNamespaces};
use velero_hook_injector::admission::render;
use velero_hook_injector::cluster::audit;
use velero_hook_injector::cluster::namespaces::NamespaceCache;
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::hooks::velero;
use velero_hook_injector::pod::backup_method::ClusterDefaults;
use velero_hook_injector::reconcile::apply::{self, ApplyOptions};
use velero_hook_injector::reconcile::controller::{self, Config as ReconcileConfig};
use velero_hook_injector::reconcile::metrics::ReconcileMetrics;
use velero_hook_injector::server::tls;
use velero_hook_injector::server::{self, AppState, ServeConfig};

#[derive(Parser)]
#[command(
    name = "velero-hook-injector",
    version,
    about = "Inject application-consistent Velero backup hooks into database pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum NamespacePolicy {
    /// Watch Namespaces if a kubeconfig or in-cluster config exists; otherwise cluster mode only.
    Auto,
    /// Never contact the API: every namespace follows --mode.
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    /// For people: one row per finding with its message, and a summary.
    Table,
    /// For machines: {scope, summary, pods: [{namespace, name, findings}]}.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the mutating webhook over HTTPS (/mutate, /healthz, /readyz, /metrics).
    Serve {
        /// Listen address.
        #[arg(long, env = "VHI_ADDR", default_value = "0.0.0.0:8443")]
        addr: SocketAddr,
        /// PEM certificate chain. Without --tls-cert/--tls-key a development CA and certificate
        /// for localhost are created in --certs-dir.
        #[arg(long, env = "VHI_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key.
        #[arg(long, env = "VHI_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Where development certificates are kept when no --tls-cert is given.
        #[arg(long, default_value = "certs")]
        certs_dir: PathBuf,
        /// Log format.
        #[arg(long, env = "VHI_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
        /// How often certificate files are checked for rotation (Go duration).
        #[arg(long, default_value = "10s", value_parser = duration)]
        reload_interval: Duration,
        /// Time in-flight requests get to finish after SIGTERM (Go duration).
        #[arg(long, default_value = "10s", value_parser = duration)]
        drain_timeout: Duration,
        /// Time /readyz reports 503 after SIGTERM before the listener closes (Go duration).
        #[arg(long, default_value = "2s", value_parser = duration)]
        shutdown_delay: Duration,
        /// How long a keep-alive connection with no request in flight stays open (Go duration).
        /// Keep it longer than clients keep idle connections (the API server: 90s), so that they
        /// close them and no request races the server's close.
        #[arg(long, env = "VHI_IDLE_TIMEOUT", default_value = "120s", value_parser = duration)]
        idle_timeout: Duration,
        /// Cluster-wide mode: inject, warn (change nothing, say what would be injected) or
        /// enforce (inject, deny database pods left without hooks). Namespaces override it with
        /// the annotation velero-hook-injector.io/mode.
        #[arg(long, env = "VHI_MODE", default_value = "inject", value_parser = mode)]
        mode: Mode,
        /// Custom templates (multi-document YAML) added to or overriding the built-ins; re-read
        /// when the file changes, an invalid file is refused and the last good library kept.
        #[arg(long, env = "VHI_TEMPLATES")]
        templates: Option<PathBuf>,
        /// Whether per-namespace modes are read from the Kubernetes API.
        #[arg(long, value_enum, default_value = "auto")]
        namespace_policy: NamespacePolicy,
        /// Async worker threads. An admission costs ~20 µs, so two workers serve tens of
        /// thousands per second; each extra worker costs memory (BENCHMARKS.md). Default: the
        /// CPUs available, at most 2.
        #[arg(long, env = "VHI_WORKER_THREADS")]
        worker_threads: Option<std::num::NonZeroUsize>,
        #[command(flatten)]
        reconcile: ReconcileArgs,
        /// Assume Velero Backups copy every volume with file-system backup (kopia) unless a pod
        /// lists it in backup.velero.io/backup-volumes-excludes, as with `velero install
        /// --default-volumes-to-fs-backup`. The webhook cannot read Velero's settings: set this
        /// to match them, so that file-system-backup pods are told their hooks' limits.
        #[arg(long, env = "VHI_DEFAULT_VOLUMES_TO_FS_BACKUP")]
        default_volumes_to_fs_backup: bool,
    },
    /// Print manifests (files or stdin, YAML or JSON, multi-document) as the webhook would leave
    /// their pods. Warnings go to stderr.
    Render {
        /// Manifest files; `-` or nothing reads stdin.
        files: Vec<PathBuf>,
        /// Print the JSON Patch for each pod (template) instead of the manifests.
        #[arg(long)]
        patch: bool,
        /// Custom templates file added to the built-ins.
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Instead of the manifests, check each pod as the webhook would leave it against
        /// Velero's hook rules and print the findings. Exit code: 0 clean, 1 findings, 2 error.
        #[arg(long, conflicts_with = "patch")]
        check: bool,
        /// Format of the --check findings.
        #[arg(long, value_enum, default_value = "table", requires = "check")]
        output: OutputFormat,
        /// Assume Velero Backups copy every volume with file-system backup (kopia) unless a pod
        /// lists it in backup.velero.io/backup-volumes-excludes, as with `velero install
        /// --default-volumes-to-fs-backup`. The webhook cannot read Velero's settings: set this
        /// to match them, as the server's flag.
        #[arg(long, env = "VHI_DEFAULT_VOLUMES_TO_FS_BACKUP")]
        default_volumes_to_fs_backup: bool,
    },
    /// Report pods in a cluster whose Velero hooks are missing, break Velero's rules, or differ
    /// from the current template; with --apply, add the missing hooks to the running pods. Uses
    /// the kubeconfig like kubectl. Exit code: 0 clean, 1 findings (remaining after --apply),
    /// 2 error, 3 some patch failed (--apply).
    Audit {
        /// Namespace to audit (default: the kubeconfig context's namespace).
        #[arg(short, long, conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Audit every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Kubeconfig context to use (default: the current context).
        #[arg(long)]
        context: Option<String>,
        /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: OutputFormat,
        /// Custom templates file added to the built-ins (use the server's, so that template
        /// drift is measured against what the webhook injects).
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Patch every pod reported as missing-hooks with exactly the annotations the webhook
        /// would add at creation (same decision, opt-in label and namespace mode honoured). Each
        /// patch carries the pod's resourceVersion: a pod changed meanwhile is read again and
        /// decided again, never overwritten. Needs get on namespaces and patch on pods.
        #[arg(long)]
        apply: bool,
        /// With --apply: send the patches as server-side dry runs (dryRun=All); nothing changes.
        #[arg(long, requires = "apply")]
        dry_run: bool,
        /// With --apply: also update pods reported as template-drift to the current template
        /// (values that differ are replaced; no key is removed).
        #[arg(long, requires = "apply")]
        include_drift: bool,
        /// With --apply: the server's --mode, for namespaces without a mode annotation.
        #[arg(long, default_value = "inject", value_parser = mode, requires = "apply")]
        mode: Mode,
        /// With --apply: namespaces never patched, like the webhook's excluded namespaces
        /// (repeatable; the webhook's own namespace belongs here).
        #[arg(
            long = "exclude-namespace",
            default_value = "kube-system",
            requires = "apply"
        )]
        exclude_namespaces: Vec<String>,
        /// Assume Velero Backups copy every volume with file-system backup (kopia) unless a pod
        /// lists it in backup.velero.io/backup-volumes-excludes, as the server's flag: pods whose
        /// hooks do not fit how Velero copies their data are reported, and --apply decides as
        /// admission does.
        #[arg(long, env = "VHI_DEFAULT_VOLUMES_TO_FS_BACKUP")]
        default_volumes_to_fs_backup: bool,
    },
    /// List, show or validate hook templates.
    Templates {
        #[command(subcommand)]
        action: TemplatesAction,
        /// Custom templates file added to the built-ins.
        #[arg(long, global = true)]
        templates: Option<PathBuf>,
    },
    /// Create a CA and a serving certificate for the webhook's Service (installs without cert-manager).
    Certs {
        /// Service name.
        #[arg(long, default_value = "velero-hook-injector")]
        service: String,
        /// Service namespace.
        #[arg(long, default_value = "velero-hook-injector")]
        namespace: String,
        /// Output directory (ca.crt, tls.crt, tls.key).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

/// The reconciler's flags (`serve`).
#[derive(clap::Args)]
struct ReconcileArgs {
    /// Also watch pods and add hooks to running pods that should carry them but do not (created
    /// before the install, before their namespace opted in, or while the webhook was down).
    /// Needs get, list, watch and patch on pods, and per-namespace policy (--namespace-policy auto).
    #[arg(long = "reconcile", env = "VHI_RECONCILE")]
    enabled: bool,
    /// Reconciler: patches per second at most, per replica.
    #[arg(
        long = "reconcile-rate",
        env = "VHI_RECONCILE_RATE",
        default_value_t = 5.0
    )]
    rate: f64,
    /// Reconciler: patches that may go out at once after a quiet period.
    #[arg(
        long = "reconcile-burst",
        env = "VHI_RECONCILE_BURST",
        default_value_t = 10
    )]
    burst: u32,
    /// Reconciler: how often every cached pod is looked at again (Go duration); bounds how long
    /// a namespace that opts in, or changes its mode, waits.
    #[arg(long = "reconcile-resync", env = "VHI_RECONCILE_RESYNC", default_value = "10m", value_parser = duration)]
    resync: Duration,
    /// Reconciler: pods waiting at most; more wait for the next resync.
    #[arg(
        long = "reconcile-queue-capacity",
        env = "VHI_RECONCILE_QUEUE_CAPACITY",
        default_value_t = 20_000
    )]
    queue_capacity: usize,
    /// Reconciler: namespaces never patched, comma-separated (the webhook's own namespace and
    /// kube-system, as its namespaceSelector excludes them).
    #[arg(
        long = "reconcile-exclude-namespaces",
        env = "VHI_RECONCILE_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    exclude_namespaces: Vec<String>,
    /// Reconciler: watch and patch only these namespaces, comma-separated (one watch each, so
    /// a namespaced Role on pods suffices). Default: every namespace, one cluster-wide watch.
    #[arg(
        long = "reconcile-namespaces",
        env = "VHI_RECONCILE_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
}

#[derive(Subcommand)]
enum TemplatesAction {
    /// One line per template: name, engine, phases, matched images.
    List,
    /// A template's description and the exact annotations it injects.
    Show {
        /// Template name.
        name: String,
        /// Container name to render into the annotations.
        #[arg(long, default_value = "CONTAINER")]
        container: String,
    },
    /// Check a custom templates file: the same verdict the server gives when it loads it.
    Validate {
        /// The file (multi-document YAML).
        file: PathBuf,
    },
}

fn mode(s: &str) -> Result<Mode, String> {
    s.parse()
        .map_err(|e: velero_hook_injector::admission::policy::ModeError| e.to_string())
}

fn library(custom: Option<&std::path::Path>) -> anyhow::Result<Library> {
    match custom {
        Some(path) => Library::with_custom(path).context("loading custom templates"),
        None => Library::builtin().context("loading the built-in templates"),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    velero::parse_go_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration like 10s, 500ms or 1m"))
}

/// Exit code of a command that failed (`render --check` and `audit` use [`exit_with`]'s codes).
const FAILURE: u8 = 1;

// `main` prints errors itself rather than returning them: the standard library prints a returned
// error with `{:?}`, which for anyhow includes a stack backtrace whenever RUST_BACKTRACE or
// RUST_LIB_BACKTRACE is set in the user's environment.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", error_report(&e));
            std::process::ExitCode::from(FAILURE)
        }
    }
}

/// An error for people: `Error: <message>`, then one `  caused by: <cause>` line per cause that
/// adds something (causes whose text the line before already contains are skipped). Never a
/// backtrace.
fn error_report(error: &anyhow::Error) -> String {
    let mut out = format!("Error: {error}\n");
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
        }
        previous = text;
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            addr,
            tls_cert,
            tls_key,
            certs_dir,
            log_format,
            reload_interval,
            drain_timeout,
            shutdown_delay,
            idle_timeout,
            mode,
            templates,
            namespace_policy,
            worker_threads,
            reconcile,
            default_volumes_to_fs_backup,
        } => {
            init_logging(log_format);
            let (cert, key) = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => (c, k),
                _ => dev_certificates(&certs_dir, addr)?,
            };
            let cfg = ServeConfig {
                addr,
                cert,
                key,
                reload_interval,
                drain_timeout,
                shutdown_delay,
                idle_timeout,
            };
            let workers = worker_threads.map_or_else(
                || {
                    std::thread::available_parallelism()
                        .map_or(1, |n| n.get())
                        .min(2)
                },
                |n| n.get(),
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let defaults = ClusterDefaults {
                default_volumes_to_fs_backup,
            };
            runtime.block_on(serve(
                cfg,
                mode,
                templates,
                namespace_policy,
                reconcile,
                defaults,
            ))
        }
        Command::Render {
            files,
            templates,
            check: true,
            output,
            default_volumes_to_fs_backup,
            ..
        } => exit_with(check_command(
            &files,
            templates.as_deref(),
            output,
            ClusterDefaults {
                default_volumes_to_fs_backup,
            },
        )),
        Command::Render {
            files,
            patch,
            templates,
            default_volumes_to_fs_backup,
            ..
        } => render_command(
            &files,
            patch,
            templates.as_deref(),
            ClusterDefaults {
                default_volumes_to_fs_backup,
            },
        ),
        Command::Audit {
            namespace,
            all_namespaces,
            context,
            kubeconfig,
            output,
            templates,
            apply,
            dry_run,
            include_drift,
            mode,
            exclude_namespaces,
            default_volumes_to_fs_backup,
        } => {
            let defaults = ClusterDefaults {
                default_volumes_to_fs_backup,
            };
            let apply = apply.then_some(ApplyOptions {
                dry_run,
                include_drift,
                cluster_mode: mode,
                excluded: exclude_namespaces,
                backup_defaults: defaults,
            });
            exit_code(audit_command(
                namespace,
                all_namespaces,
                audit::ClientOptions {
                    kubeconfig,
                    context,
                },
                output,
                templates.as_deref(),
                apply,
                defaults,
            ))
        }
        Command::Templates { action, templates } => templates_command(action, templates.as_deref()),
        Command::Certs {
            service,
            namespace,
            out,
            days,
        } => {
            let files = tls::generate(&out, &tls::service_dns_names(&service, &namespace), days)?;
            println!(
                "wrote {}, {}, {} for {service}.{namespace}.svc (valid {days} days)",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            );
            println!("caBundle: base64 -w0 {}", files.ca.display());
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
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
fn dev_certificates(
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

async fn serve(
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

fn render_command(
    files: &[PathBuf],
    print_patch: bool,
    templates: Option<&std::path::Path>,
    defaults: ClusterDefaults,
) -> anyhow::Result<()> {
    let library = library(templates)?;
    let inputs = read_inputs(files)?;
    let mut out = String::new();
    let mut first = true;
    let mut seen = Vec::new();
    let mut pod_bearing = false;
    for (name, text) in &inputs {
        for (i, doc) in render::parse_documents(name, text)?.into_iter().enumerate() {
            let (document, rendered) =
                render::render_document(name, i + 1, doc, &library, defaults)?;
            for r in &rendered {
                seen.push(r.subject.clone());
                pod_bearing |= r.outcome.is_some();
                for w in &r.warnings {
                    eprintln!("Warning: {}: {w}", r.subject);
                }
                if print_patch && r.outcome.is_some() {
                    // The patch is the webhook's, on the pod; for a workload, say where that
                    // pod sits so the paths are not read as the workload's own.
                    let kind = r.subject.split_once('/').map_or("", |(k, _)| k);
                    let scope = match render::pod_template_pointer(kind) {
                        Some(p) if !p.is_empty() => format!(
                            " (the patch the webhook returns for each of its pods: paths are relative to the pod template at {p})"
                        ),
                        _ => String::new(),
                    };
                    out.push_str(&format!(
                        "# {}{scope}\n{}\n",
                        r.subject,
                        serde_json::to_string_pretty(&r.patch)?
                    ));
                }
            }
            if !print_patch {
                if !first {
                    out.push_str("---\n");
                }
                out.push_str(&render::to_yaml(&document));
            }
            first = false;
        }
    }
    if !pod_bearing {
        eprintln!("Note: {}", nothing_pod_bearing(&inputs, &seen));
    }
    print!("{out}");
    Ok(())
}

/// What to tell a user whose input holds no Pod or pod template.
fn nothing_pod_bearing(inputs: &[(String, String)], seen: &[String]) -> String {
    let names: Vec<&str> = inputs
        .iter()
        .map(|(f, _)| if f == "-" { "stdin" } else { f.as_str() })
        .collect();
    let found = if seen.is_empty() {
        "no manifests".to_owned()
    } else {
        let mut kinds: Vec<&str> = seen
            .iter()
            .map(|s| s.split_once('/').map_or(s.as_str(), |(k, _)| k))
            .map(|k| if k.is_empty() { "(no kind)" } else { k })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        format!("only {}", kinds.join(", "))
    };
    format!(
        "{} holds no Pod or pod template ({found}): the webhook acts on Pods, and render reads the pod templates of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and CronJobs, also as the items of a kind: List (kubectl get -o yaml). Give it the workloads (e.g. helm template … | velero-hook-injector render --check -).",
        names.join(", ")
    )
}

/// Manifest inputs as (name, text): the files, or stdin for none or `-`.
fn read_inputs(files: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(vec![("-".to_owned(), text)]);
    }
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))
                .map(|t| (f.display().to_string(), t))
        })
        .collect()
}

/// Ends the process with the CI exit code: 0 clean, 1 findings, 2 error.
fn exit_with(result: anyhow::Result<bool>) -> ! {
    exit_code(result.map(i32::from))
}

/// Exit code when some `audit --apply` patch failed.
const EXIT_PATCH_FAILED: i32 = 3;

/// Ends the process with `code`, or 2 after printing the error.
fn exit_code(result: anyhow::Result<i32>) -> ! {
    let code = result.unwrap_or_else(|e| {
        eprint!("{}", error_report(&e));
        2
    });
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(code)
}

fn print_report(report: &audit::Report, output: OutputFormat) {
    match output {
        OutputFormat::Table => print!("{}", report.to_table()),
        OutputFormat::Json => println!("{}", report.to_json()),
    }
}

/// `render --check`: true when there are findings.
fn check_command(
    files: &[PathBuf],
    templates: Option<&std::path::Path>,
    output: OutputFormat,
    defaults: ClusterDefaults,
) -> anyhow::Result<bool> {
    let library = library(templates)?;
    let inputs = read_inputs(files)?;
    let checked = audit::check_manifests(&inputs, &library, defaults)?;
    if checked.report.summary.checked == 0 {
        // Exit 2, not 0: "clean" would pass a CI gate that examined nothing; the input is not
        // what --check checks, which is an error in the input (like an unparseable document).
        anyhow::bail!(
            "{} Nothing was checked.",
            nothing_pod_bearing(&inputs, &checked.seen)
        );
    }
    for w in &checked.warnings {
        eprintln!("Warning: {w}");
    }
    print_report(&checked.report, output);
    Ok(checked.report.has_findings())
}

/// `audit`: the exit code (0 clean, 1 findings, 3 some `--apply` patch failed).
fn audit_command(
    namespace: Option<String>,
    all_namespaces: bool,
    client: audit::ClientOptions,
    output: OutputFormat,
    templates: Option<&std::path::Path>,
    apply: Option<ApplyOptions>,
    defaults: ClusterDefaults,
) -> anyhow::Result<i32> {
    let library = library(templates)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (report, run) = runtime.block_on(async {
        let client = audit::connect(&client).await?;
        let scope = if all_namespaces {
            audit::Scope::AllNamespaces
        } else {
            audit::Scope::Namespace(
                namespace.unwrap_or_else(|| client.default_namespace().to_owned()),
            )
        };
        let pods = audit::list_pods(&client, &scope).await?;
        let report = audit::audit_pods(scope.to_string(), &pods, &library, defaults);
        let run = match &apply {
            Some(opts) => Some(apply::apply_report(&client, &pods, &report, &library, opts).await),
            None => None,
        };
        Ok::<_, audit::AuditError>((report, run))
    })?;
    let Some(run) = run else {
        print_report(&report, output);
        return Ok(i32::from(report.has_findings()));
    };
    match output {
        OutputFormat::Table => print!("{}\n{}", report.to_table(), run.to_table()),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"audit": report, "apply": run}))?
        ),
    }
    Ok(if run.summary.failed > 0 {
        EXIT_PATCH_FAILED
    } else {
        i32::from(run.summary.remaining > 0)
    })
}

/// The commands are JSON inside JSON: shows each shell script as the container runs it.
fn print_scripts(label: &str, annotations: &std::collections::BTreeMap<String, String>) {
    for (phase, key) in [
        ("pre-backup", "pre.hook.backup.velero.io/command"),
        ("post-backup", "post.hook.backup.velero.io/command"),
        ("post-restore", "post.hook.restore.velero.io/command"),
    ] {
        let argv = annotations
            .get(key)
            .map(|c| velero::parse_command(c))
            .unwrap_or_default();
        if let [sh, flag, script] = argv.as_slice() {
            if sh == "/bin/sh" && flag == "-c" {
                println!("\n# {label}{phase}: /bin/sh -c\n{script}");
            }
        }
    }
}

fn templates_command(
    action: TemplatesAction,
    templates: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let TemplatesAction::Validate { file } = &action {
        let found = Library::load_file(file)?;
        let names: Vec<&str> = found.iter().map(|t| t.name.as_str()).collect();
        let builtin = Library::builtin()?;
        for n in &names {
            let verb = if builtin.get(n).is_some() {
                "overrides built-in"
            } else {
                "adds"
            };
            println!("{}: template {n:?} is valid ({verb})", file.display());
        }
        println!("{}: {} template(s) valid", file.display(), names.len());
        return Ok(());
    }
    let library = library(templates)?;
    match action {
        TemplatesAction::Validate { .. } => {}
        TemplatesAction::List => {
            println!("{:<10} {:<11} {:<36} IMAGES", "NAME", "ENGINE", "HOOKS");
            for t in library.iter() {
                let mut phases = Vec::new();
                if t.hooks.pre_backup.is_some() {
                    phases.push("pre-backup");
                }
                if t.hooks.post_backup.is_some() {
                    phases.push("post-backup");
                }
                if t.hooks.post_restore.is_some() {
                    phases.push("post-restore");
                }
                println!(
                    "{:<10} {:<11} {:<36} {}",
                    t.name,
                    t.engine,
                    phases.join(","),
                    t.matcher.images.join(",")
                );
            }
        }
        TemplatesAction::Show { name, container } => {
            let Some(t) = library.get(&name) else {
                bail!(
                    "no template {name:?}; known: {}",
                    library.names().join(", ")
                );
            };
            println!("# {} ({})\n# {}", t.name, t.engine, t.description.trim());
            if let Some(r) = &t.matcher.versions {
                println!("# versions: {r}");
            }
            // Which of the two a pod gets is in its admission warning and in `render`'s.
            let snapshot = t.warning.as_deref().unwrap_or("as described above");
            println!("# backup method snapshot: {snapshot}");
            match &t.fs_backup {
                Some(fs) => println!("# backup method fs-backup: {}", fs.warning),
                None => println!(
                    "# backup method fs-backup: the same hooks; this template says nothing about file-by-file copies"
                ),
            }
            let annotations = t.annotations(&container);
            println!("{}", serde_json::to_string_pretty(&annotations)?);
            print_scripts("", &annotations);
            if let Some(dump) = t.dump_annotations(&container) {
                println!(
                    "\n# dump mode (file-system backup, when the pod's annotations allow it; the webhook also adds the vhi-dump volume and one backup.velero.io list, see the README):\n{}",
                    serde_json::to_string_pretty(&dump)?
                );
                print_scripts("dump mode ", &dump);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn error_report_is_the_message_and_its_causes_one_per_line() {
        let e = anyhow::Error::new(std::io::Error::other("disk on fire"))
            .context("reading a.yaml")
            .context("loading custom templates");
        assert_eq!(
            error_report(&e),
            "Error: loading custom templates\n  caused by: reading a.yaml\n  caused by: disk on fire\n"
        );
        // A cause already quoted by the message before it is not printed twice.
        let e = anyhow::Error::new(Repeats(std::io::Error::other("gone")));
        assert_eq!(error_report(&e), "Error: outer: gone\n");
    }
}
