//! The reconciler's metrics, registered into the server's shared registry.
//!
//! Names are a contract (alerts are written against them): `velero_hook_injector_reconcile_total
//! {outcome="patched"|"skipped"|"failed"}`, `velero_hook_injector_reconcile_queue_depth`,
//! `velero_hook_injector_unhooked_pods`, `velero_hook_injector_spec_hooks_shadowed_pods`, plus
//! `velero_hook_injector_reconcile_watch_errors_total`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of [`ReconcileMetrics::total`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `patched`, `skipped` or `failed`.
    pub outcome: &'static str,
}

/// Counters and gauges of the reconciler; clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct ReconcileMetrics {
    /// Pods handled, by outcome.
    pub total: Family<OutcomeLabel, Counter>,
    /// Keys waiting in the queue.
    pub queue_depth: Gauge,
    /// Pods in opted-in namespaces that should carry hooks but do not, as last seen.
    pub unhooked: Gauge,
    /// Failed list/watch requests (RBAC, API unreachable, expired watches are retried).
    pub watch_errors: Counter,
    /// Cached pods whose annotation hooks silence a Velero Schedule's spec hooks, as of the
    /// last Schedule scan.
    pub spec_hooks_shadowed: Gauge,
}

impl ReconcileMetrics {
    /// Registers the metrics into `registry` (the server's, prefix `velero_hook_injector`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for outcome in ["patched", "skipped", "failed"] {
            // Present at 0 from the start, so that rate() and absent() alerts work at once.
            let _ = m.total.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "reconcile",
            "Live pods the reconciler handled: patched, skipped (the mode or a re-decision after a conflict left it unchanged, or it was deleted), failed",
            m.total.clone(),
        );
        registry.register(
            "reconcile_queue_depth",
            "Pods waiting to be reconciled",
            m.queue_depth.clone(),
        );
        registry.register(
            "unhooked_pods",
            "Pods in opted-in namespaces that should carry backup hooks but do not, as last seen by the reconciler",
            m.unhooked.clone(),
        );
        registry.register(
            "spec_hooks_shadowed_pods",
            "Pods whose Velero annotation hooks make Velero skip the spec hooks of a Schedule that selects them, as of the reconciler's last Schedule scan (velero-hook-injector audit names them)",
            m.spec_hooks_shadowed.clone(),
        );
        registry.register(
            "reconcile_watch_errors",
            "Failed pod list/watch requests of the reconciler (each is retried with backoff)",
            m.watch_errors.clone(),
        );
        m
    }

    /// Counts one handled pod.
    pub fn count(&self, outcome: &'static str) {
        self.total.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_agreed_ones() {
        let mut metrics = crate::server::metrics::Metrics::new();
        let m = ReconcileMetrics::register(metrics.registry_mut());
        m.count("patched");
        m.queue_depth.set(3);
        m.unhooked.set(2);
        m.spec_hooks_shadowed.set(4);
        let text = metrics.encode();
        for line in [
            r#"velero_hook_injector_reconcile_total{outcome="patched"} 1"#,
            r#"velero_hook_injector_reconcile_total{outcome="skipped"} 0"#,
            r#"velero_hook_injector_reconcile_total{outcome="failed"} 0"#,
            "velero_hook_injector_reconcile_queue_depth 3",
            "velero_hook_injector_unhooked_pods 2",
            "velero_hook_injector_spec_hooks_shadowed_pods 4",
            "velero_hook_injector_reconcile_watch_errors_total 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
