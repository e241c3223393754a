//! Prometheus metrics (text exposition via the official prometheus-client crate).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an admission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// Mode applied (`inject`, `warn`, `enforce`).
    pub mode: String,
    /// Namespace of the pod.
    pub namespace: String,
    /// Decision outcome (`injected`, `no_database`, …), `denied` or `passthrough`.
    pub outcome: String,
    /// Template name, empty when none.
    pub template: String,
}

/// Labels of a refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Why it was refused (`bad_request`, `too_large`, `unsupported_media_type`).
    pub reason: String,
}

/// Labels of a certificate or template reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// What was reloaded (`certificate`, `templates`).
    pub kind: String,
    /// `success` or `failure`.
    pub result: String,
}

/// All metrics of the server.
pub struct Metrics {
    registry: Registry,
    /// Admissions answered, by outcome and template.
    pub admissions: Family<AdmissionLabels, Counter>,
    /// Time spent deciding and answering one admission.
    pub latency: Histogram,
    /// Requests refused with a 4xx.
    pub errors: Family<ErrorLabels, Counter>,
    /// Certificate and template reloads.
    pub reloads: Family<ReloadLabels, Counter>,
    /// Admissions answered without the namespace policy (cache not synced, API unreachable).
    pub fail_open: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `velero_hook_injector` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("velero_hook_injector");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        // 5µs .. ~1.3s: the pure path is microseconds, a slow one must still land in a bucket.
        let latency = Histogram::new(exponential_buckets(5e-6, 4.0, 10));
        let errors = Family::<ErrorLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let fail_open = Counter::default();
        registry.register(
            "admissions",
            "AdmissionReviews answered, by outcome and template",
            admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to decide and serialise one admission response",
            latency.clone(),
        );
        registry.register(
            "request_errors",
            "Requests refused with a 4xx, by reason",
            errors.clone(),
        );
        registry.register(
            "reloads",
            "Certificate and template reloads, by kind and result",
            reloads.clone(),
        );
        registry.register(
            "policy_fail_open",
            "Admissions answered without the namespace policy (cache not synced or API unreachable)",
            fail_open.clone(),
        );
        Self {
            registry,
            admissions,
            latency,
            errors,
            reloads,
            fail_open,
        }
    }

    /// Counts one admission.
    pub fn admission(
        &self,
        mode: &str,
        namespace: &str,
        outcome: &str,
        template: &str,
        seconds: f64,
    ) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                mode: mode.to_owned(),
                namespace: namespace.to_owned(),
                outcome: outcome.to_owned(),
                template: template.to_owned(),
            })
            .inc();
        self.latency.observe(seconds);
    }

    /// Counts one admission answered without the namespace policy.
    pub fn fail_open(&self) {
        self.fail_open.inc();
    }

    /// Counts one refused request.
    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one reload attempt.
    pub fn reload(&self, kind: &str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                kind: kind.to_owned(),
                result: if ok { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_contains_counted_admissions() {
        let m = Metrics::new();
        m.admission("inject", "shop", "injected", "postgres", 0.00002);
        m.error("too_large");
        let text = m.encode();
        assert!(
            text.contains(
                r#"velero_hook_injector_admissions_total{mode="inject",namespace="shop",outcome="injected",template="postgres"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("velero_hook_injector_admission_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"velero_hook_injector_request_errors_total{reason="too_large"} 1"#),
            "{text}"
        );
    }
}
