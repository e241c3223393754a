//! The reconciler in `serve`: watches pods, and brings each running pod that should carry hooks
//! but does not to the state admission would have produced.
//!
//! One watch over all pods (kube's watcher: paged initial list, bookmarks, relist after 410 Gone,
//! backoff while the API is unreachable or forbidden) fills a cache of compact pods ([`CachedPod`]). Every event
//! queues the pod's key once ([`WorkQueue`]); one worker takes keys in order, decides on the
//! cached pod ([`decide::decide`]), and patches through [`apply::patch_pod`] at a bounded rate
//! ([`TokenBucket`]). A failed patch is retried with exponential backoff per pod; a periodic
//! resync queues every cached pod again (a namespace that opts in later changes no pod).
//!
//! Two replicas need no Lease: both may decide on the same version of a pod, but the patch's
//! resourceVersion precondition lets one through; the other gets 409, re-reads the pod, and its
//! decision is then "already processed". The cost is one extra PATCH and GET per pod per replica.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};

use crate::admission::policy::Mode;
use crate::cluster::schedules;
use crate::hooks::template::Library;
use crate::pod::backup_method::ClusterDefaults;
use crate::reconcile::apply::{self, PodResult};
use crate::reconcile::cache::CachedPod;
use crate::reconcile::decide::{self, Action, Inputs, Namespaces};
use crate::reconcile::metrics::ReconcileMetrics;
use crate::reconcile::queue::{Pushed, WorkQueue};
use crate::reconcile::ratelimit::TokenBucket;

/// Where the reconciler gets the template library in force (reloaded by `serve`).
pub trait LibrarySource: Send + Sync {
    /// The library now.
    fn current(&self) -> Arc<Library>;
}

impl LibrarySource for crate::server::AppState {
    fn current(&self) -> Arc<Library> {
        self.library()
    }
}

impl LibrarySource for Arc<Library> {
    fn current(&self) -> Arc<Library> {
        Arc::clone(self)
    }
}

/// How the reconciler runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Patches per second at most (each may be followed by a GET after a conflict).
    pub rate: f64,
    /// Patches that may be sent at once after a quiet period.
    pub burst: u32,
    /// Keys the queue holds at most; more are dropped until the next resync.
    pub queue_capacity: usize,
    /// How often every cached pod is looked at again.
    pub resync: Duration,
    /// First retry delay after a failed patch; doubles per failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Mode for namespaces without a mode annotation (the server's `--mode`).
    pub cluster_mode: Mode,
    /// Namespaces never touched (the webhook's own, kube-system, excludeNamespaces).
    pub excluded: Vec<String>,
    /// Watch only these namespaces (one watch each, RBAC by Role); empty: all, one cluster watch.
    pub namespaces: Vec<String>,
    /// The server's `--default-volumes-to-fs-backup`, as admission has it.
    pub backup_defaults: ClusterDefaults,
    /// Velero's namespace, where its Schedules are listed (read-only) for the
    /// `spec_hooks_shadowed_pods` gauge at every resync.
    pub velero_namespace: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rate: 5.0,
            burst: 10,
            queue_capacity: 20_000,
            resync: Duration::from_secs(600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            cluster_mode: Mode::Inject,
            excluded: vec!["kube-system".to_owned()],
            namespaces: Vec::new(),
            backup_defaults: ClusterDefaults::default(),
            velero_namespace: "velero".to_owned(),
        }
    }
}

type Key = ObjectRef<CachedPod>;

/// The pod caches: one per watched namespace, or one for the whole cluster (`None`). Separate,
/// because a relist replaces a reflector's whole store.
#[derive(Clone)]
struct Stores(Vec<(Option<String>, Store<CachedPod>)>);

impl Stores {
    fn get(&self, key: &Key) -> Option<Arc<CachedPod>> {
        self.0
            .iter()
            .find(|(ns, _)| ns.is_none() || ns.as_deref() == key.namespace.as_deref())
            .and_then(|(_, s)| s.get(key))
    }

    fn state(&self) -> Vec<Arc<CachedPod>> {
        self.0.iter().flat_map(|(_, s)| s.state()).collect()
    }
}

struct Shared {
    queue: WorkQueue<Key>,
    store: Stores,
    metrics: ReconcileMetrics,
    /// Pods last seen needing hooks (the `unhooked_pods` gauge).
    unhooked: Mutex<HashSet<Key>>,
    /// Keys with a retry timer running, so that one pod never has two.
    delayed: Mutex<HashSet<Key>>,
}

impl Shared {
    fn enqueue(&self, key: Key) {
        if self.queue.push(key) == Pushed::Full {
            tracing::warn!(
                capacity = self.queue.len(),
                "reconcile queue full; the pod is looked at again at the next resync"
            );
        }
        self.metrics.queue_depth.set(self.queue.len() as i64);
    }

    fn set_unhooked(&self, key: &Key, unhooked: bool) {
        let mut set = self.unhooked.lock().unwrap_or_else(|p| p.into_inner());
        if unhooked {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
        self.metrics.unhooked.set(set.len() as i64);
    }

    fn forget_missing(&self) {
        let mut set = self.unhooked.lock().unwrap_or_else(|p| p.into_inner());
        set.retain(|k| self.store.get(k).is_some());
        self.metrics.unhooked.set(set.len() as i64);
    }

    fn retry_later(self: &Arc<Self>, key: Key, delay: Duration) {
        {
            let mut delayed = self.delayed.lock().unwrap_or_else(|p| p.into_inner());
            if !delayed.insert(key.clone()) {
                return;
            }
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            shared
                .delayed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            shared.enqueue(key);
        });
    }
}

/// A running reconciler; dropping it does not stop it, [`Reconciler::abort`] does.
pub struct Reconciler {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Stores,
}

impl Reconciler {
    /// Stops the watch, the worker and the resync.
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Pods in the cache now (for tests and benchmarks).
    pub fn cached_pods(&self) -> usize {
        self.store.state().len()
    }
}

/// The retry delay after `failures` consecutive failures of one pod.
pub fn backoff(cfg: &Config, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    cfg.backoff_base.saturating_mul(factor).min(cfg.backoff_max)
}

/// Starts the reconciler; returns at once.
pub fn spawn(
    client: kube::Client,
    namespaces: Arc<dyn Namespaces>,
    library: Arc<dyn LibrarySource>,
    metrics: ReconcileMetrics,
    cfg: Config,
) -> Reconciler {
    let scopes: Vec<Option<String>> = if cfg.namespaces.is_empty() {
        vec![None]
    } else {
        cfg.namespaces.iter().cloned().map(Some).collect()
    };
    let mut writers = Vec::new();
    let mut stores = Vec::new();
    for scope in scopes {
        let (store, writer) = reflector::store();
        let api: Api<CachedPod> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        stores.push((scope, store.clone()));
        writers.push((api, writer, store));
    }
    let store = Stores(stores);
    let shared = Arc::new(Shared {
        queue: WorkQueue::new(cfg.queue_capacity),
        store: store.clone(),
        metrics,
        unhooked: Mutex::new(HashSet::new()),
        delayed: Mutex::new(HashSet::new()),
    });
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = writers
        .into_iter()
        .map(|(api, writer, store)| {
            tokio::spawn(run_watch(api, writer, store, Arc::clone(&shared)))
        })
        .collect();
    let worker = tokio::spawn(run_worker(
        client.clone(),
        namespaces,
        library,
        cfg.clone(),
        Arc::clone(&shared),
    ));
    let schedules = tokio::spawn(scan_schedules(
        client.clone(),
        cfg.velero_namespace.clone(),
        cfg.resync,
        Arc::clone(&shared),
    ));
    let resync = {
        let shared = Arc::clone(&shared);
        let every = cfg.resync;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is immediate; the watch's initial list covers it
            loop {
                tick.tick().await;
                for pod in shared.store.state() {
                    shared.enqueue(ObjectRef::from_obj(pod.as_ref()));
                }
            }
        })
    };
    tasks.extend([worker, resync, schedules]);
    Reconciler { tasks, store }
}

/// Every `every`, lists Velero's Schedules (read-only; nothing is ever written) and sets the
/// `spec_hooks_shadowed_pods` gauge from the cached pods. The first scan waits a few seconds for
/// the watch's initial list. Without Velero's CRDs the gauge stays 0 and one info line says
/// why; a refused list is a warning each time it changes from working.
async fn scan_schedules(
    client: kube::Client,
    namespace: String,
    every: Duration,
    shared: Arc<Shared>,
) {
    let mut said = None;
    tokio::time::sleep(Duration::from_secs(5).min(every)).await;
    loop {
        let state = match schedules::list_schedules(&client, &namespace).await {
            Ok(Some(list)) => {
                let pods: Vec<Pod> = shared
                    .store
                    .state()
                    .iter()
                    .filter_map(|p| p.pod().ok())
                    .collect();
                let n = schedules::shadowed_pods(&pods, &list);
                shared.metrics.spec_hooks_shadowed.set(n as i64);
                "ok"
            }
            Ok(None) => {
                shared.metrics.spec_hooks_shadowed.set(0);
                if said != Some("absent") {
                    tracing::info!(namespace = %namespace, "no Velero Schedule resource in this cluster: pods are not compared with Schedules");
                }
                "absent"
            }
            Err(e) => {
                if said != Some("error") {
                    tracing::warn!(error = %e, "pods are not compared with Velero's Schedules; spec_hooks_shadowed_pods keeps its last value");
                }
                "error"
            }
        };
        said = Some(state);
        tokio::time::sleep(every).await;
    }
}

async fn run_watch(
    api: Api<CachedPod>,
    writer: reflector::store::Writer<CachedPod>,
    store: Store<CachedPod>,
    shared: Arc<Shared>,
) {
    let stream = reflector::reflector(
        writer,
        watch(api, watcher::Config::default()).default_backoff(),
    );
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Apply(pod)) => shared.enqueue(ObjectRef::from_obj(&pod)),
            // A (re)list reaches the store only at InitDone, all at once: queue its pods then,
            // or the worker could look for them before they are there.
            Ok(Event::InitApply(_) | Event::Init) => {}
            Ok(Event::Delete(pod)) => shared.set_unhooked(&ObjectRef::from_obj(&pod), false),
            Ok(Event::InitDone) => {
                shared.forget_missing();
                for pod in store.state() {
                    shared.enqueue(ObjectRef::from_obj(pod.as_ref()));
                }
                tracing::info!(pods = store.state().len(), "reconciler: pod cache synced");
            }
            Err(e) => {
                shared.metrics.watch_errors.inc();
                let text = e.to_string();
                let forbidden = match &e {
                    watcher::Error::InitialListFailed(kube::Error::Api(s))
                    | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 403,
                    _ => false,
                };
                if forbidden {
                    tracing::error!(
                        error = %text,
                        "reconciler: the service account may not list/watch pods; grant get, list, watch and patch on pods (chart: reconciler.enabled=true creates the ClusterRole) or turn the reconciler off; retrying with backoff"
                    );
                } else {
                    tracing::warn!(error = %text, "reconciler: pod watch failed; retrying with backoff");
                }
            }
        }
    }
}

async fn run_worker(
    client: kube::Client,
    namespaces: Arc<dyn Namespaces>,
    library: Arc<dyn LibrarySource>,
    cfg: Config,
    shared: Arc<Shared>,
) {
    let mut bucket = TokenBucket::new(cfg.rate, cfg.burst);
    let mut failures: HashMap<Key, u32> = HashMap::new();
    let mut reported: HashMap<Key, String> = HashMap::new();
    loop {
        let key = shared.queue.pop().await;
        shared.metrics.queue_depth.set(shared.queue.len() as i64);
        let Some(cached) = shared.store.get(&key) else {
            shared.set_unhooked(&key, false);
            failures.remove(&key);
            reported.remove(&key);
            continue;
        };
        let pod = match cached.pod() {
            Ok(pod) => pod,
            Err(e) => {
                // Cannot happen for JSON this process wrote; never worth a crash.
                tracing::error!(error = %e, pod = %key, "reconciler: cached pod does not decode; skipped");
                continue;
            }
        };
        let lib = library.current();
        let inputs = Inputs {
            library: &lib,
            cluster_mode: cfg.cluster_mode,
            namespaces: namespaces.as_ref(),
            excluded: &cfg.excluded,
            include_drift: false,
            backup_defaults: cfg.backup_defaults,
        };
        let action = decide::decide(&pod, &inputs);
        shared.set_unhooked(&key, action.is_unhooked());
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        match action {
            Action::Patch(_) => {}
            Action::Report(why) => {
                // Once per pod and reason: resyncs and unrelated pod updates would repeat it.
                if reported.get(&key) != Some(&why) {
                    shared.metrics.count("skipped");
                    tracing::warn!(%namespace, pod = %name, reason = %why, "reconciler: pod left without hooks");
                    reported.insert(key, why);
                }
                continue;
            }
            Action::Wait(why) => {
                // Backs off like a failure: a namespace cache that stays unsynced (RBAC on
                // namespaces missing) must not turn every cached pod into a retry per second.
                let n = failures.entry(key.clone()).or_insert(0);
                *n += 1;
                let delay = backoff(&cfg, *n);
                tracing::debug!(%namespace, pod = %name, reason = %why, retry_in_s = delay.as_secs_f64(), "reconciler: waiting");
                shared.retry_later(key, delay);
                continue;
            }
            Action::Leave(_) => {
                failures.remove(&key);
                reported.remove(&key);
                continue;
            }
        }
        bucket.acquire().await;
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let result = apply::patch_pod(&api, pod, |p| decide::decide(p, &inputs), false).await;
        match result {
            PodResult::Patched {
                plan, conflicts, ..
            } => {
                failures.remove(&key);
                reported.remove(&key);
                shared.metrics.count("patched");
                shared.set_unhooked(&key, false);
                tracing::info!(
                    %namespace,
                    pod = %name,
                    hooks = %plan.target,
                    annotations = plan.set.len(),
                    conflicts,
                    "reconciler: added backup hooks to a running pod"
                );
            }
            PodResult::Unchanged { action, conflicts } => {
                failures.remove(&key);
                shared.metrics.count("skipped");
                shared.set_unhooked(&key, action.is_unhooked());
                tracing::debug!(%namespace, pod = %name, conflicts, reason = %apply::explain(&action), "reconciler: re-decided after a conflict; unchanged");
            }
            PodResult::Gone => {
                failures.remove(&key);
                shared.metrics.count("skipped");
                shared.set_unhooked(&key, false);
            }
            PodResult::Failed { error, code } => {
                shared.metrics.count("failed");
                let n = failures.entry(key.clone()).or_insert(0);
                *n += 1;
                let delay = backoff(&cfg, *n);
                if code == Some(403) {
                    tracing::error!(%namespace, pod = %name, %error, retry_in_s = delay.as_secs_f64(), "reconciler: may not patch the pod");
                } else {
                    tracing::warn!(%namespace, pod = %name, %error, retry_in_s = delay.as_secs_f64(), "reconciler: patch failed");
                }
                shared.retry_later(key, delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cfg = Config::default();
        let got: Vec<u64> = [1, 2, 3, 9, 10, 40]
            .iter()
            .map(|n| backoff(&cfg, *n).as_secs())
            .collect();
        assert_eq!(got, [1, 2, 4, 256, 300, 300]);
    }
}
