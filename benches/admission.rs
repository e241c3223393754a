//! The pure admission path, `admission::review(body, &library)`: parse the AdmissionReview,
//! detect, render the template, build and serialise the patch. See docs/performance.md.
//!
//! `cargo bench --bench admission`

#[path = "support/pods.rs"]
mod pods;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use velero_hook_injector::admission;
use velero_hook_injector::hooks::template::Library;

fn check(body: &[u8], library: &Library, want_patch: bool) {
    let out = admission::review(body, library).expect("reviewed");
    let v: serde_json::Value = serde_json::from_slice(&out.body).expect("json");
    assert_eq!(
        v["response"]["patch"].is_string(),
        want_patch,
        "unexpected answer: {v}"
    );
}

fn pods(c: &mut Criterion) {
    let library = Library::builtin().expect("library");
    let cases = [
        ("small_no_database", pods::body(&pods::small()), false),
        (
            "typical_database",
            pods::body(&pods::typical_database()),
            true,
        ),
        ("large_50c_200a", pods::body(&pods::large()), true),
    ];
    let mut g = c.benchmark_group("review");
    for (name, body, want_patch) in &cases {
        check(body, &library, *want_patch);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| admission::review(black_box(body), &library).expect("reviewed"))
        });
    }
    g.finish();
}

/// How cost grows with pod size: N containers and 4N annotations.
fn scaling(c: &mut Criterion) {
    let library = Library::builtin().expect("library");
    let mut g = c.benchmark_group("review_scaling");
    for n in [1usize, 5, 10, 25, 50] {
        let body = pods::body(&pods::scaled(n, 4 * n));
        check(&body, &library, true);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("containers", format!("{n}c_{}a_{}B", 4 * n, body.len())),
            &body,
            |b, body| b.iter(|| admission::review(black_box(body), &library).expect("reviewed")),
        );
    }
    g.finish();
}

/// Where the time goes for the typical database pod: the parse alone (three ways), the
/// decision alone on an already parsed pod, and the whole review.
fn breakdown(c: &mut Criterion) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::core::admission::AdmissionReview;
    let library = Library::builtin().expect("library");
    let review = pods::typical_database();
    let body = pods::body(&review);
    let pod: Pod = serde_json::from_value(review["request"]["object"].clone()).expect("pod");
    let mut g = c.benchmark_group("typical_breakdown");
    g.bench_function("parse_skip_everything", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).expect("json"))
    });
    g.bench_function("parse_to_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("json"))
    });
    g.bench_function("parse_admission_review_pod", |b| {
        b.iter(|| serde_json::from_slice::<AdmissionReview<Pod>>(black_box(&body)).expect("review"))
    });
    let mut lean = review.clone();
    lean["request"]["object"]["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("managedFields");
    let lean = pods::body(&lean);
    g.bench_function("parse_admission_review_pod_no_managed_fields", |b| {
        b.iter(|| serde_json::from_slice::<AdmissionReview<Pod>>(black_box(&lean)).expect("review"))
    });
    g.bench_function("review_whole_no_managed_fields", |b| {
        b.iter(|| admission::review(black_box(&lean), &library).expect("reviewed"))
    });
    g.bench_function("decide_parsed_pod", |b| {
        b.iter(|| velero_hook_injector::hooks::detect::decide(black_box(&pod), &library))
    });
    g.bench_function("review_whole", |b| {
        b.iter(|| admission::review(black_box(&body), &library).expect("reviewed"))
    });
    g.finish();
}

criterion_group!(benches, pods, scaling, breakdown);
criterion_main!(benches);
