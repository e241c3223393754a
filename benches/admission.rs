//! The pure admission path, `admission::review(body, &library)`: parse the AdmissionReview,
//! detect, render the template, build and serialise the patch. See BENCHMARKS.md.
//!
//! `cargo bench --bench admission`

#[path = "support/pods.rs"]
mod pods;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use velero_hook_injector::admission;
use velero_hook_injector::template::Library;

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

criterion_group!(benches, pods, scaling);
criterion_main!(benches);
