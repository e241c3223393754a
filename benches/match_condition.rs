//! What the webhook's CEL match condition costs to evaluate, in a real CEL implementation (the
//! `cel` crate): the shipped expression against the one-regex candidate issue 19 measured
//! through a kube-apiserver, over an nginx pod, a postgres pod and a pod of 100 non-database
//! containers with long image references. The crate compiles a `matches` regex on every call,
//! where cel-go's planner (OptOptimize, which the API server uses) compiles a constant pattern
//! once: each candidate is also timed `folded/`, with `matches` replaced by a function that
//! caches the compiled regex.
//! The API server runs cel-go, not this crate: the figures compare the candidates, they are not
//! the API server's latency (docs/match-conditions.md).
//!
//! `cargo bench --bench match_condition`

#[path = "support/pods.rs"]
mod pods;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use cel::extractors::This;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use velero_hook_injector::hooks::match_condition;
use velero_hook_injector::hooks::template::Library;

/// The candidate the issue measured first: one `matches()` regex over every image the
/// templates name (namespaced ones with their namespace) and their patterns, `||` an `exists`
/// over the annotations. Rebuilt here from the library, as it was then.
fn one_regex(library: &Library) -> String {
    format!(
        "(has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('velero-hook-injector.io/'))) || object.spec.containers.exists(c, has(c.image) && c.image.matches('{}'))",
        one_regex_pattern(library).replace('\\', "\\\\")
    )
}

/// The candidate's regex.
fn one_regex_pattern(library: &Library) -> String {
    let mut names: Vec<String> = Vec::new();
    for t in library.iter() {
        names.extend(t.matcher.images.iter().cloned());
        names.extend(
            t.matcher
                .image_pattern_sources
                .iter()
                .map(|p| p.trim_start_matches('^').trim_end_matches('$').to_owned()),
        );
    }
    format!("^(?:[^@]*/)?(?:{})(?::[^/@]*)?(?:@.*)?$", names.join("|"))
}

/// 100 containers, none a database, each with a 200-character image reference (registry with
/// port, nested path, tag and digest): the condition has to look at every one.
fn hundred_containers() -> Value {
    let mut pod = pods::small()["request"]["object"].clone();
    let template = pod["spec"]["containers"][0].clone();
    let digest = "0123456789abcdef".repeat(4);
    let containers: Vec<Value> = (0..100)
        .map(|i| {
            let mut c = template.clone();
            c["name"] = json!(format!("sidecar-{i}"));
            let path = format!(
                "platform-team/observability/sidecars/component-{i:03}/{}",
                "x".repeat(40)
            );
            c["image"] = json!(format!(
                "registry.example.internal:5000/{path}:v1.{i}.0@sha256:{digest}"
            ));
            c
        })
        .collect();
    pod["spec"]["containers"] = json!(containers);
    pod
}

fn postgres() -> Value {
    pods::typical_database()["request"]["object"].clone()
}

fn nginx() -> Value {
    let mut pod = pods::small()["request"]["object"].clone();
    pod["spec"]["containers"][0]["image"] = json!("nginx:1.25");
    pod
}

thread_local! {
    static REGEXES: RefCell<HashMap<String, regex::Regex>> = RefCell::new(HashMap::new());
}

/// `matches` with each regex compiled once, as cel-go does for a constant pattern when the API
/// server plans the expression (the `cel` crate compiles it on every call).
fn matches_once(This(this): This<Arc<String>>, re: Arc<String>) -> bool {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(re.as_str()) {
            let compiled = regex::Regex::new(&re).expect("the expressions' regexes are valid");
            cache.insert(re.to_string(), compiled);
        }
        cache.get(re.as_str()).is_some_and(|r| r.is_match(&this))
    })
}

/// `source` with each regex compiled once, as cel-go's planner compiles a constant pattern.
fn fold(source: &str) -> String {
    source.replace(".matches(", ".matchesOnce(")
}

fn env() -> Arc<cel::Env> {
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    Arc::new(env)
}

fn conditions(c: &mut Criterion) {
    let library = Library::builtin().expect("library");
    let env = env();
    let shipped = match_condition::expression(&library);
    let regex = one_regex(&library);
    let hundred = hundred_containers();
    let image_len = hundred["spec"]["containers"][0]["image"]
        .as_str()
        .map_or(0, str::len);
    println!(
        "shipped expression: {} characters; one-regex candidate: {} characters ({}-character regex); 100-container pod: {image_len}-character images",
        shipped.len(),
        regex.len(),
        one_regex_pattern(&library).len()
    );
    let pods = [
        ("nginx", nginx(), false),
        ("postgres", postgres(), true),
        ("100_containers", hundred, false),
    ];
    let mut group = c.benchmark_group("match_condition");
    for (name, source) in [("shipped", &shipped), ("one_regex", &regex)] {
        for (how, source) in [("", source.clone()), ("folded/", fold(source))] {
            let program = env.compile(&source).expect("compiles");
            for (pod_name, pod, want) in &pods {
                let mut ctx = cel::Context::with_env(env.clone());
                ctx.add_variable("object", pod).expect("binds");
                ctx.add_function("matchesOnce", matches_once)
                    .expect("a new function");
                assert_eq!(
                    program.execute(&ctx),
                    Ok(cel::Value::Bool(*want)),
                    "{how}{name} on {pod_name}"
                );
                group.bench_function(format!("{how}{name}/{pod_name}"), |b| {
                    b.iter(|| black_box(program.execute(black_box(&ctx))))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, conditions);
criterion_main!(benches);
