//! The command line: clap's `Cli` and `Command` definitions, the argument types and value parsers
//! the commands share, and one module per command body (`main.rs` only dispatches).

pub(crate) mod audit;
pub(crate) mod certs;
pub(crate) mod exit;
pub(crate) mod render;
pub(crate) mod restore_report;
pub(crate) mod serve;
pub(crate) mod templates;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use velero_hook_injector::admission::policy::Mode;
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::hooks::velero;

#[derive(Parser)]
#[command(
    name = "velero-hook-injector",
    version,
    about = "Inject application-consistent Velero backup hooks into database pods"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum NamespacePolicy {
    /// Watch Namespaces if a kubeconfig or in-cluster config exists; otherwise cluster mode only.
    Auto,
    /// Never contact the API: every namespace follows --mode.
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    /// For people: one row per finding with its message, and a summary.
    Table,
    /// For machines: {scope, summary, pods: [{namespace, name, findings}]}.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    /// For people: the restore's state, one row per database with its result and summary line.
    Table,
    /// For machines: {restore, status, databases: [{namespace, pod, database, result, ...}], verdict}.
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// thousands per second; each extra worker costs memory (docs/performance.md). Default: the
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
        /// Velero's namespace: its Schedules are read there (list on schedules.velero.io) and
        /// each pod is compared with them (spec-hooks-shadowed, dump-data-volume-snapshotted).
        /// Without Velero's CRDs this is skipped with one line on stderr.
        #[arg(long, env = "VHI_VELERO_NAMESPACE", default_value = "velero")]
        velero_namespace: String,
    },
    /// Per restored database, what its restore hook said: passed, failed, not run or still
    /// running, with the hook's own summary line. Reads the Restore, the pods it restored and
    /// the Velero server's log (where Velero >= 1.14 keeps restore hook output). Needs get on
    /// restores.velero.io and list pods and get pods/log in Velero's namespace, and list pods in
    /// every namespace (chart: restoreReport.rbac.create). Exit code: 0 every database passed,
    /// 1 some failed or was not run (or none has our hook), 2 error, 4 restore not finished.
    RestoreReport {
        /// The Restore's name (velero restore get).
        restore: String,
        /// The namespace Velero runs in and keeps its Restores in.
        #[arg(long, default_value = "velero")]
        velero_namespace: String,
        /// Wait until the restore is finished (Completed, PartiallyFailed, Failed or
        /// FailedValidation: hooks included), reading it every 5 seconds.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (Go duration) and report what is known (exit 4).
        #[arg(long, default_value = "30m", value_parser = duration, requires = "wait")]
        timeout: Duration,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: ReportFormat,
        /// Kubeconfig context to use (default: the current context).
        #[arg(long)]
        context: Option<String>,
        /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster account).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Custom templates file added to the built-ins (names the database of custom templates).
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// List, show or validate hook templates, or print their webhook match condition.
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
pub(crate) struct ReconcileArgs {
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
    /// Velero's namespace: the reconciler lists its Schedules there (read-only, list on
    /// schedules.velero.io) for the spec_hooks_shadowed_pods gauge.
    #[arg(
        long = "velero-namespace",
        env = "VHI_VELERO_NAMESPACE",
        default_value = "velero"
    )]
    velero_namespace: String,
}

#[derive(Subcommand)]
pub(crate) enum TemplatesAction {
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
    /// The CEL matchConditions expression that lets the API server skip the webhook for pods
    /// that cannot matter (with --templates, widened by the custom templates).
    MatchCondition,
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
