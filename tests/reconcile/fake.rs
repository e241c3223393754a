//! A fake API server for pods and namespaces behind kube's mock client service: GET, LIST,
//! merge PATCH with the resourceVersion precondition and dryRun, as kube-apiserver does them,
//! plus scripted answers for failures. Every request is recorded, bodies byte for byte.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// One request as it reached the API server.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A change made by "someone else" just before a scripted answer.
pub type Before = Box<dyn FnOnce(&mut State) + Send>;

/// A scripted answer: the first request matching `method` whose `path?query` contains
/// `path_suffix` gets `status` with `body` instead of the fake's own answer (status 0: the
/// connection fails, as when the API server is unreachable).
pub struct Script {
    pub method: Method,
    pub path_suffix: String,
    pub status: u16,
    pub body: Value,
    /// Run before answering (e.g. another writer changing the pod first).
    pub before: Option<Before>,
}

#[derive(Default)]
pub struct State {
    pub pods: BTreeMap<(String, String), Value>,
    pub namespaces: BTreeMap<String, Value>,
    pub rv: u64,
    pub log: Vec<Recorded>,
    pub scripts: VecDeque<Script>,
    /// Watch events not yet delivered (the fake adds MODIFIED for each stored patch).
    pub events: Vec<Value>,
    pub notify: Arc<tokio::sync::Notify>,
}

impl State {
    pub fn add_pod(&mut self, mut pod: Value) {
        self.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = (
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        self.pods.insert(key, pod);
    }

    pub fn add_namespace(&mut self, name: &str, opted_in: bool, mode: Option<&str>) {
        let mut labels = json!({"kubernetes.io/metadata.name": name});
        if opted_in {
            labels["velero-hook-injector.io/inject"] = json!("enabled");
        }
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "resourceVersion": "1", "labels": labels}});
        if let Some(m) = mode {
            ns["metadata"]["annotations"] = json!({"velero-hook-injector.io/mode": m});
        }
        self.namespaces.insert(name.to_owned(), ns);
    }

    /// Another writer's change: the pod gets `annotations` merged in and a new resourceVersion.
    pub fn touch(&mut self, ns: &str, name: &str, annotations: Value) {
        self.rv += 1;
        let rv = self.rv;
        if let Some(p) = self.pods.get_mut(&(ns.to_owned(), name.to_owned())) {
            json_patch::merge(p, &json!({"metadata": {"annotations": annotations}}));
            p["metadata"]["resourceVersion"] = json!(rv.to_string());
        }
    }

    /// Queues a watch event; `kind` is ADDED, MODIFIED, DELETED or BOOKMARK.
    pub fn emit(&mut self, kind: &str, object: Value) {
        self.events.push(json!({"type": kind, "object": object}));
        self.notify.notify_waiters();
    }

    /// A new pod, as the API server stores it and announces it on the watch.
    pub fn create_pod(&mut self, pod: Value) {
        self.add_pod(pod.clone());
        let key = (
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        let stored = self.pods[&key].clone();
        self.emit("ADDED", stored);
    }

    /// Deletes a pod and announces it.
    pub fn delete_pod(&mut self, ns: &str, name: &str) {
        if let Some(p) = self.pods.remove(&(ns.to_owned(), name.to_owned())) {
            self.rv += 1;
            self.emit("DELETED", p);
        }
    }

    pub fn lists(&self) -> usize {
        self.log
            .iter()
            .filter(|r| {
                r.method == Method::GET
                    && r.path == "/api/v1/pods"
                    && !r.query.contains("watch=true")
            })
            .count()
    }

    pub fn patches(&self) -> Vec<&Recorded> {
        self.log
            .iter()
            .filter(|r| r.method == Method::PATCH)
            .collect()
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<&Value> {
        self.pods.get(&(ns.to_owned(), name.to_owned()))
    }
}

pub type Shared = Arc<Mutex<State>>;

pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// `(namespace, resource, name)` of `/api/v1/namespaces/NS/pods/NAME` and friends.
fn route(path: &str) -> (Option<String>, String, Option<String>) {
    let parts: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    match parts.as_slice() {
        ["namespaces", ns, "pods", name] => {
            (Some((*ns).into()), "pods".into(), Some((*name).into()))
        }
        ["namespaces", ns, "pods"] => (Some((*ns).into()), "pods".into(), None),
        ["namespaces", name] => (None, "namespaces".into(), Some((*name).into())),
        ["namespaces"] => (None, "namespaces".into(), None),
        ["pods"] => (None, "pods".into(), None),
        _ => (None, String::new(), None),
    }
}

/// The answer to a watch: the events queued so far, or after `WATCH_IDLE` none (the watch
/// ends as when its timeoutSeconds expire, and the client watches again).
async fn watch_answer(state: &Shared) -> Response<Body> {
    let notify = state.lock().expect("lock").notify.clone();
    let deadline = tokio::time::Instant::now() + WATCH_IDLE;
    loop {
        let notified = notify.notified();
        {
            let mut s = state.lock().expect("lock");
            if !s.events.is_empty() {
                let lines: Vec<String> = s.events.drain(..).map(|e| e.to_string()).collect();
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from(format!("{}\n", lines.join("\n")).into_bytes()))
                    .expect("response");
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Response::builder()
                .status(200)
                .body(Body::empty())
                .expect("response");
        }
    }
}

/// How long an idle watch stays open in the fake.
pub const WATCH_IDLE: std::time::Duration = std::time::Duration::from_millis(300);

/// The fake's answer; `None` for a connection failure.
pub fn handle(state: &Shared, req: Recorded) -> Option<Response<Body>> {
    let mut s = state.lock().expect("lock");
    s.log.push(req.clone());
    let target = format!("{}?{}", req.path, req.query);
    if let Some(i) = s
        .scripts
        .iter()
        .position(|sc| sc.method == req.method && target.contains(&sc.path_suffix))
    {
        let mut script = s.scripts.remove(i).expect("script");
        if let Some(f) = script.before.take() {
            f(&mut s);
        }
        if script.status == 0 {
            return None;
        }
        return Some(respond(script.status, &script.body));
    }
    Some(answer(&mut s, req))
}

fn answer(s: &mut State, req: Recorded) -> Response<Body> {
    let (ns, resource, name) = route(&req.path);
    match (req.method.clone(), resource.as_str(), name) {
        (Method::GET, "namespaces", Some(name)) => match s.namespaces.get(&name) {
            Some(n) => respond(200, n),
            None => respond(
                404,
                &status(404, "NotFound", &format!("namespaces \"{name}\" not found")),
            ),
        },
        (Method::GET, "pods", Some(name)) => {
            match s.pods.get(&(ns.clone().unwrap_or_default(), name.clone())) {
                Some(p) => respond(200, p),
                None => respond(
                    404,
                    &status(404, "NotFound", &format!("pods \"{name}\" not found")),
                ),
            }
        }
        // A watch: answered by `watch_answer`, never with the list (which would be built for nothing).
        (Method::GET, "pods", None) if req.query.contains("watch=true") => respond(200, &json!({})),
        (Method::GET, "pods", None) => {
            // Paged like kube-apiserver: `limit`, and `continue` as the offset of the next page.
            let param = |k: &str| {
                req.query
                    .split('&')
                    .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                    .map(str::to_owned)
            };
            let limit = param("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            let offset = param("continue")
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(0);
            let all: Vec<&Value> = s
                .pods
                .iter()
                .filter(|((n, _), _)| ns.as_ref().is_none_or(|want| want == n))
                .map(|(_, p)| p)
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(limit)
                .map(|p| (*p).clone())
                .collect();
            let mut metadata = json!({"resourceVersion": s.rv.to_string()});
            if offset + page.len() < all.len() {
                metadata["continue"] = json!((offset + page.len()).to_string());
            }
            respond(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page}),
            )
        }
        (Method::PATCH, "pods", Some(name)) => {
            assert_eq!(req.content_type, "application/merge-patch+json");
            let key = (ns.clone().unwrap_or_default(), name.clone());
            let Some(current) = s.pods.get(&key).cloned() else {
                return respond(
                    404,
                    &status(404, "NotFound", &format!("pods \"{name}\" not found")),
                );
            };
            let patch: Value = serde_json::from_slice(&req.body).expect("patch json");
            // The storage precondition: a resourceVersion in the patch must be the current one.
            if let Some(rv) = patch.pointer("/metadata/resourceVersion") {
                if Some(rv) != current.pointer("/metadata/resourceVersion") {
                    return respond(
                        409,
                        &status(
                            409,
                            "Conflict",
                            &format!(
                                "Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                        ),
                    );
                }
            }
            let mut next = current.clone();
            json_patch::merge(&mut next, &patch);
            let dry_run = req.query.split('&').any(|q| q == "dryRun=All");
            if !dry_run && next != current {
                s.rv += 1;
                next["metadata"]["resourceVersion"] = json!(s.rv.to_string());
                s.pods.insert(key, next.clone());
                s.emit("MODIFIED", next.clone());
            }
            respond(200, &next)
        }
        _ => respond(
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    }
}

/// A client whose requests the fake answers, all sharing `state`.
pub fn client(state: &Shared) -> kube::Client {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let state = Arc::clone(&state);
            // Each request on its own task: a watch stays open while patches are answered.
            tokio::spawn(async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect_bytes()
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                let rec = Recorded {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body,
                };
                let is_watch = rec.method == Method::GET && rec.query.contains("watch=true");
                match self::handle(&state, rec) {
                    None => send.send_error(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "connection refused",
                    )),
                    Some(r) if is_watch && r.status() == StatusCode::OK => {
                        send.send_response(watch_answer(&state).await)
                    }
                    Some(r) => send.send_response(r),
                }
            });
        }
    });
    kube::Client::new(service, "default")
}

/// A StatefulSet's database pod as the API server returns it.
pub fn db_pod(ns: &str, name: &str, image: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": {"app.kubernetes.io/name": "db"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts-uid", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
        },
        "spec": {
            "containers": [{"name": "db", "image": image,
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}],
            "nodeName": "worker-1"
        },
        "status": {"phase": "Running"}
    })
}
