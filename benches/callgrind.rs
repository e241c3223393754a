//! A fixed number of admissions of one pod, for `valgrind --tool=callgrind` (instruction
//! counts: deterministic, unlike time on a shared machine). Not a timing benchmark.
//!
//! cargo bench --bench callgrind --no-run, then (see docs/performance.md):
//! VHI_POD=typical VHI_ITERATIONS=1000 valgrind --tool=callgrind target/release/deps/callgrind-*

#[path = "support/pods.rs"]
mod pods;

use std::hint::black_box;

use velero_hook_injector::admission;
use velero_hook_injector::hooks::template::Library;

fn main() {
    // `cargo bench` passes `--bench`; any argument other than that is ignored too.
    let pod = std::env::var("VHI_POD").unwrap_or_else(|_| "typical".to_owned());
    let iterations: usize = std::env::var("VHI_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let review = match pod.as_str() {
        "small" => pods::small(),
        "large" => pods::large(),
        _ => pods::typical_database(),
    };
    let body = pods::body(&review);
    let library = Library::builtin().expect("library");
    let mut bytes = 0;
    for _ in 0..iterations {
        let out = admission::review(black_box(&body), &library).expect("reviewed");
        bytes += out.body.len();
    }
    println!(
        "{iterations} admissions of the {pod} pod ({} bytes), {bytes} bytes answered",
        body.len()
    );
}
