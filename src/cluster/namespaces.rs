//! A watched cache of Namespace metadata, so no admission ever waits on an API call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};

use crate::admission::policy::{MODE_ANNOTATION, NamespaceLookup, NamespaceView};

/// Namespace metadata kept in memory by a reflector (metadata only: small and cheap).
#[derive(Clone)]
pub struct NamespaceCache {
    store: Store<PartialObjectMeta<Namespace>>,
    synced: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl NamespaceCache {
    /// Starts watching Namespaces with `client`; returns at once. Lookups answer `Unknown`
    /// until the first full list has arrived.
    pub fn spawn(client: kube::Client) -> Self {
        let (store, writer) = reflector::store();
        let cache = Self {
            store,
            synced: Arc::new(AtomicBool::new(false)),
            last_error: Arc::new(Mutex::new(None)),
        };
        // Api<PartialObjectMeta<_>> asks for metadata only: a Namespace's spec and status are never transferred.
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let stream = reflector::reflector(
            writer,
            watch(api, watcher::Config::default()).default_backoff(),
        );
        let (synced, last_error) = (Arc::clone(&cache.synced), Arc::clone(&cache.last_error));
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(Event::InitDone) => {
                        synced.store(true, Ordering::SeqCst);
                        set(&last_error, None);
                        tracing::info!("namespace cache synced");
                    }
                    Ok(_) => set(&last_error, None),
                    Err(e) => {
                        tracing::warn!(error = %e, "namespace watch failed; retrying with backoff");
                        set(&last_error, Some(e.to_string()));
                    }
                }
            }
        });
        cache
    }

    /// Whether namespace `namespace` carries label `key` = `value`; `None` until the cache has
    /// synced or while the namespace is not in it (the reconciler then waits instead of guessing).
    pub fn has_label(&self, namespace: &str, key: &str, value: &str) -> Option<bool> {
        if !self.is_synced() {
            return None;
        }
        let ns = self.store.get(&ObjectRef::new(namespace))?;
        Some(
            ns.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(key))
                .is_some_and(|v| v == value),
        )
    }

    /// True once the first full list has been stored.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

fn set(slot: &Mutex<Option<String>>, value: Option<String>) {
    match slot.lock() {
        Ok(mut s) => *s = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

impl NamespaceLookup for NamespaceCache {
    fn lookup(&self, namespace: &str) -> NamespaceView {
        if !self.is_synced() {
            let why = match self.last_error.lock() {
                Ok(e) => e.clone(),
                Err(p) => p.into_inner().clone(),
            };
            return NamespaceView::Unknown(match why {
                Some(e) => format!("namespace cache not synced: {e}"),
                None => "namespace cache not synced yet".to_owned(),
            });
        }
        match self.store.get(&ObjectRef::new(namespace)) {
            Some(ns) => NamespaceView::Known(
                ns.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MODE_ANNOTATION))
                    .cloned(),
            ),
            // A namespace created moments ago may not have reached the cache yet.
            None => NamespaceView::Unknown(format!("namespace {namespace:?} not in the cache yet")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use std::time::Duration;

    async fn wait_for(cache: &NamespaceCache, ns: &str, want: &NamespaceView) -> NamespaceView {
        for _ in 0..100 {
            let v = cache.lookup(ns);
            if &v == want {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cache.lookup(ns)
    }

    #[tokio::test]
    async fn lookups_follow_the_watched_list() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let cache = NamespaceCache::spawn(client);
        assert!(
            matches!(cache.lookup("shop"), NamespaceView::Unknown(r) if r.contains("not synced"))
        );
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("list request");
            assert_eq!(req.method(), http::Method::GET);
            assert!(
                req.uri().path().ends_with("/api/v1/namespaces"),
                "{}",
                req.uri()
            );
            let accept = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                accept.contains("PartialObjectMetadata"),
                "metadata-only list: {accept}"
            );
            let body = serde_json::json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "100"},
                "items": [
                    {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                     "metadata": {"name": "shop", "resourceVersion": "90", "annotations": {"velero-hook-injector.io/mode": "warn"}}},
                    {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                     "metadata": {"name": "billing", "resourceVersion": "91", "labels": {"velero-hook-injector.io/inject": "enabled"}}}
                ]
            });
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&body).expect("ser")))
                    .expect("resp"),
            );
            // The follow-up watch stays open with no events; keep the handle alive.
            let _watch = handle.next_request().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let shop = wait_for(&cache, "shop", &NamespaceView::Known(Some("warn".into()))).await;
        assert_eq!(shop, NamespaceView::Known(Some("warn".into())));
        assert_eq!(cache.lookup("billing"), NamespaceView::Known(None));
        // The reconciler's opt-in check reads the same cache.
        let opt_in = |ns| cache.has_label(ns, "velero-hook-injector.io/inject", "enabled");
        assert_eq!(
            (opt_in("billing"), opt_in("shop"), opt_in("brand-new")),
            (Some(true), Some(false), None)
        );
        assert!(matches!(
            cache.lookup("brand-new"),
            NamespaceView::Unknown(_)
        ));
        server.abort();
    }

    #[tokio::test]
    async fn an_unreachable_api_keeps_answering_unknown_with_the_reason() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let cache = NamespaceCache::spawn(kube::Client::new(svc, "default"));
        let server = tokio::spawn(async move {
            let (_req, send) = handle.next_request().await.expect("list request");
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd unavailable", "reason": "InternalError", "code": 500});
            send.send_response(
                Response::builder()
                    .status(500)
                    .body(Body::from(serde_json::to_vec(&status).expect("ser")))
                    .expect("resp"),
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut view = cache.lookup("shop");
        for _ in 0..100 {
            if matches!(&view, NamespaceView::Unknown(r) if r.contains("etcd unavailable")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            view = cache.lookup("shop");
        }
        assert!(
            matches!(&view, NamespaceView::Unknown(r) if r.contains("etcd unavailable")),
            "{view:?}"
        );
        assert!(!cache.is_synced());
        server.abort();
    }
}
