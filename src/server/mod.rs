//! The HTTPS server: a thin axum layer over [`crate::admission::review`], with its TLS
//! ([`tls`]), its connection limits ([`connection`]) and its Prometheus metrics ([`metrics`]).

pub mod connection;
pub mod metrics;
pub mod tls;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use crate::admission::policy::{Mode, NamespaceLookup, NoNamespaces};
use crate::admission::{self, Context};
use crate::hooks::template::Library;
use crate::pod::backup_method::ClusterDefaults;
use crate::server::metrics::Metrics;

/// Largest AdmissionReview body accepted (the API server's own limit for objects is ~1.5 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of the request handlers.
pub struct AppState {
    library: RwLock<Arc<Library>>,
    /// Metrics exposed on /metrics.
    pub metrics: Metrics,
    ready: AtomicBool,
    cluster_mode: Mode,
    namespaces: Arc<dyn NamespaceLookup>,
    backup_defaults: ClusterDefaults,
}

impl AppState {
    /// State serving `library`, not yet ready.
    pub fn new(library: Library) -> Self {
        let metrics = Metrics::new();
        metrics.templates(library.names().len());
        // The library handed in loaded: the server does not start otherwise.
        metrics.loaded("templates", true);
        Self {
            library: RwLock::new(Arc::new(library)),
            metrics,
            ready: AtomicBool::new(false),
            cluster_mode: Mode::Inject,
            namespaces: Arc::new(NoNamespaces),
            backup_defaults: ClusterDefaults::default(),
        }
    }

    /// Sets what the cluster's Backups do with volumes by default (`--default-volumes-to-fs-backup`).
    pub fn with_backup_defaults(mut self, defaults: ClusterDefaults) -> Self {
        self.backup_defaults = defaults;
        self
    }

    /// Sets the cluster-wide mode and where per-namespace modes are read from.
    pub fn with_policy(mut self, cluster_mode: Mode, namespaces: Arc<dyn NamespaceLookup>) -> Self {
        self.cluster_mode = cluster_mode;
        self.namespaces = namespaces;
        self
    }

    /// The template library currently in force.
    pub fn library(&self) -> Arc<Library> {
        match self.library.read() {
            Ok(l) => Arc::clone(&l),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the library atomically; requests in flight finish with the old one.
    pub fn set_library(&self, library: Library) {
        self.metrics.templates(library.names().len());
        let new = Arc::new(library);
        match self.library.write() {
            Ok(mut l) => *l = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// Marks the server ready (or not) for /readyz.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding or serving failed.
    #[error("serving on {addr}: {source}")]
    Io {
        /// Listen address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The listener never reported its address.
    #[error("the listener on {0} did not start")]
    NotListening(SocketAddr),
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub drain_timeout: Duration,
    /// How long /readyz reports 503 before the listener closes, so endpoints are updated first.
    pub shutdown_delay: Duration,
    /// How long a keep-alive connection with no request in flight stays open.
    pub idle_timeout: Duration,
}

/// Default for [`ServeConfig::idle_timeout`]: longer than the API server keeps an idle
/// connection to a webhook (client-go's transport: Go's `IdleConnTimeout`, 90 s), so the client,
/// not the server, closes it and no request races a close.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    // Load benchmarks only: the same TLS, HTTP and body reading as /mutate, without the admission.
    #[cfg(feature = "bench-null")]
    let routes = routes.route("/null", post(|_body: Bytes| async { "ok\n" }));
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            deadline,
        ))
        .with_state(state)
}

/// Time a request gets, once its headers are in, to deliver its body and be answered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client gets to send the first request on a new connection (TLS handshake excluded), and
/// the head of a later HTTP/1.1 request from its first byte (see [`crate::server::connection`]).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds a request whose body trickles in (slow-loris on the body), answering 408.
async fn deadline(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => refuse(
            &state,
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "request not received and answered within {}s",
                REQUEST_TIMEOUT.as_secs()
            ),
        ),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn refuse(state: &AppState, status: StatusCode, reason: &str, message: String) -> Response {
    state.metrics.error(reason);
    tracing::warn!(status = status.as_u16(), reason, %message, "request refused");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

async fn mutate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    // The API server always sends application/json; a missing header is tolerated (kubectl
    // create --raw sends none), a different type is refused.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<non-ASCII>"));
    if let Some(content_type) = content_type.filter(|ct| !is_json(ct)) {
        return refuse(
            &state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/json, got {content_type:?}"),
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(
                &state,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body exceeds {MAX_BODY_BYTES} bytes; an AdmissionReview for a Pod is far smaller"
                ),
            );
        }
        Err(e) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("could not read request body: {e}"),
            );
        }
    };
    let library = state.library();
    let ctx = Context {
        library: &library,
        cluster_mode: state.cluster_mode,
        namespaces: state.namespaces.as_ref(),
        backup_defaults: state.backup_defaults,
    };
    match admission::review_with(&body, &ctx) {
        Ok(reviewed) => {
            let s = &reviewed.summary;
            let outcome = match (s.outcome, s.allowed) {
                (_, false) => "denied",
                (Some(o), true) => o.as_str(),
                (None, true) => "passthrough",
            };
            let template = s.template.as_deref().unwrap_or("");
            let elapsed = started.elapsed();
            state.metrics.admission(
                s.mode.as_str(),
                &s.namespace,
                outcome,
                template,
                elapsed.as_secs_f64(),
            );
            if s.degraded {
                state.metrics.fail_open();
            }
            tracing::info!(
                uid = %s.uid,
                namespace = %s.namespace,
                pod = %s.pod,
                template,
                outcome,
                mode = s.mode.as_str(),
                dry_run = s.dry_run,
                duration_us = elapsed.as_micros() as u64,
                "admission"
            );
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(e) => refuse(
            &state,
            StatusCode::BAD_REQUEST,
            "bad_request",
            e.to_string(),
        ),
    }
}

/// A started server.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    state: Arc<AppState>,
    cfg: ServeConfig,
}

impl Running {
    /// Graceful shutdown: /readyz goes 503, then after `shutdown_delay` the listener closes and
    /// in-flight requests get up to `drain_timeout` to finish.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.state.set_ready(false);
        tracing::info!(
            delay_ms = self.cfg.shutdown_delay.as_millis() as u64,
            "shutting down: readiness off"
        );
        tokio::time::sleep(self.cfg.shutdown_delay).await;
        self.handle.graceful_shutdown(Some(self.cfg.drain_timeout));
        let addr = self.addr;
        match self.task.await {
            Ok(r) => r.map_err(|source| ServeError::Io { addr, source }),
            Err(e) => Err(ServeError::Io {
                addr,
                source: std::io::Error::other(e),
            }),
        }
    }
}

/// Binds, starts serving in the background and starts the certificate reloader.
pub async fn start(cfg: ServeConfig, state: Arc<AppState>) -> Result<Running, ServeError> {
    let pair = tls::load(&cfg.cert, &cfg.key)?;
    state.metrics.certificate(pair.not_after);
    state.metrics.loaded("certificate", true);
    let rustls = RustlsConfig::from_config(Arc::new(pair.config));
    let handle: Handle<SocketAddr> = Handle::new();
    let app = router(Arc::clone(&state));
    let limits = connection::Limits {
        idle: cfg.idle_timeout,
        header_read: HEADER_READ_TIMEOUT,
    };
    // TCP_NODELAY: without it Nagle holds a response written right after the TLS session
    // tickets until the client's delayed ACK (40 ms on Linux): seen as /readyz answering 40 ms
    // late on fresh connections and as 40 ms latency spikes under load.
    let mut server = axum_server::bind_rustls(cfg.addr, rustls.clone())
        .map(|tls| {
            connection::GuardAcceptor::new(
                tls.acceptor(axum_server::accept::NoDelayAcceptor::new()),
                limits,
            )
        })
        .handle(handle.clone())
        .first_request_timeout(HEADER_READ_TIMEOUT);
    // hyper's own header timer would also close HTTP/1.1 connections idle for that long;
    // connection::GuardAcceptor bounds idleness and slow heads separately.
    server.http_builder().http1().header_read_timeout(None);
    let task = tokio::spawn(server.serve(app.into_make_service()));
    let addr = handle
        .listening()
        .await
        .ok_or(ServeError::NotListening(cfg.addr))?;
    tokio::spawn(watch_certificates(cfg.clone(), rustls, Arc::clone(&state)));
    tokio::spawn(release_freed_memory(MEMORY_RELEASE_INTERVAL));
    state.set_ready(true);
    tracing::info!(%addr, "serving HTTPS");
    Ok(Running {
        addr,
        handle,
        task,
        state,
        cfg,
    })
}

fn fingerprint(files: &[&std::path::Path]) -> Option<u64> {
    let mut h = DefaultHasher::new();
    for f in files {
        std::fs::read(f).ok()?.hash(&mut h);
    }
    Some(h.finish())
}

/// Polls a custom template file; a valid new file replaces the library, an invalid one is
/// refused (with file, line and reason in the log) and the last good library keeps serving.
pub async fn watch_templates(path: PathBuf, interval: Duration, state: Arc<AppState>) {
    let mut seen = fingerprint(&[&path]);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = fingerprint(&[&path]);
        if now == seen {
            continue;
        }
        seen = now;
        match Library::with_custom(&path) {
            Ok(lib) => {
                tracing::info!(file = %path.display(), templates = %lib.names().join(","), "templates reloaded");
                state.set_library(lib);
                state.metrics.reload("templates", true);
            }
            Err(e) => {
                state.metrics.reload("templates", false);
                tracing::warn!(error = %e, "template file refused; still serving the last good library");
            }
        }
    }
}

/// How often memory freed by finished connections is handed back to the kernel.
pub const MEMORY_RELEASE_INTERVAL: Duration = Duration::from_secs(10);

/// glibc keeps memory freed on the runtime's worker threads in per-thread arenas: after a burst
/// of connections the heap is mostly free yet stays resident (measured after 1,000 idle
/// connections closed: 14 MB held, 1.4 MB in use; tests/reliability.rs). Trimming gives the free
/// pages back, so resident memory returns to its baseline.
async fn release_freed_memory(interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        trim_heap();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and has no preconditions; it only returns
    // free pages of the allocator's arenas to the kernel.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Polls the certificate files and swaps the serving pair when they change. Polling, not
/// inotify: Kubernetes updates mounted Secrets by swapping a symlink, which watches miss.
/// An unreadable or mismatched pair is refused and the previous pair keeps serving.
async fn watch_certificates(cfg: ServeConfig, rustls: RustlsConfig, state: Arc<AppState>) {
    let mut seen = fingerprint(&[&cfg.cert, &cfg.key]);
    let mut ticker = tokio::time::interval(cfg.reload_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = fingerprint(&[&cfg.cert, &cfg.key]);
        if now == seen {
            continue;
        }
        seen = now;
        match tls::load(&cfg.cert, &cfg.key) {
            Ok(pair) => {
                rustls.reload_from_config(Arc::new(pair.config));
                state.metrics.certificate(pair.not_after);
                state.metrics.reload("certificate", true);
                tracing::info!(cert = %cfg.cert.display(), "certificate reloaded");
            }
            Err(e) => {
                state.metrics.reload("certificate", false);
                tracing::warn!(error = %e, "certificate change refused; still serving the previous certificate");
            }
        }
    }
}
