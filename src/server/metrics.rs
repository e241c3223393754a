//! Prometheus metrics (text exposition via the official prometheus-client crate).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
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

/// Labels of the last-reload state: what was reloaded (`certificate`, `templates`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What was reloaded.
    pub kind: String,
}

/// Upper bounds of the admission latency buckets, in seconds. Exponential from 5µs to ~1.3s
/// (the pure path is microseconds), then the range of a webhook's `timeoutSeconds` (1-30 s), so
/// that a p99 near the API server's timeout lands in a bucket instead of +Inf.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(5e-6, 4.0, 10).chain([2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0])
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
    /// 1 when the last load of a kind (certificate, templates) succeeded, 0 when it was refused.
    pub last_reload_successful: Family<KindLabels, Gauge>,
    /// notAfter of the serving certificate in force, in Unix seconds.
    pub certificate_expiry: Gauge,
    /// Templates in the library in force (built-in and custom).
    pub templates_loaded: Gauge,
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
        let latency = Histogram::new(latency_buckets());
        let errors = Family::<ErrorLabels, Counter>::default();
        let reloads = Family::<ReloadLabels, Counter>::default();
        let fail_open = Counter::default();
        let last_reload_successful = Family::<KindLabels, Gauge>::default();
        let certificate_expiry = Gauge::default();
        let templates_loaded = Gauge::default();
        // Info metric: exposed as velero_hook_injector_build_info{version="..."} 1.
        registry.register(
            "build",
            "Version of the running server",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
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
        registry.register(
            "last_reload_successful",
            "1 when the last load of the certificate or templates succeeded, 0 when it was refused (the previous one keeps serving)",
            last_reload_successful.clone(),
        );
        registry.register(
            "certificate_expiration_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate in force, in Unix seconds",
            certificate_expiry.clone(),
        );
        registry.register(
            "templates_loaded",
            "Hook templates in the library in force (built-in and custom)",
            templates_loaded.clone(),
        );
        Self {
            registry,
            admissions,
            latency,
            errors,
            reloads,
            fail_open,
            last_reload_successful,
            certificate_expiry,
            templates_loaded,
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

    /// Counts one reload attempt and records whether it succeeded.
    pub fn reload(&self, kind: &str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                kind: kind.to_owned(),
                result: if ok { "success" } else { "failure" }.to_owned(),
            })
            .inc();
        self.loaded(kind, ok);
    }

    /// Records the state of the initial load (or a reload) of `kind` without counting a reload.
    pub fn loaded(&self, kind: &str, ok: bool) {
        self.last_reload_successful
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .set(i64::from(ok));
    }

    /// Records the expiry of the serving certificate now in force.
    pub fn certificate(&self, not_after_unix: i64) {
        self.certificate_expiry.set(not_after_unix);
    }

    /// Records how many templates the library now in force holds.
    pub fn templates(&self, count: usize) {
        self.templates_loaded
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The registry (prefix `velero_hook_injector`), for subsystems that register their own
    /// metrics before the state is shared (the reconciler: `reconcile::metrics`).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
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

    #[test]
    fn alerting_metrics_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.certificate(1_900_000_000);
        m.templates(7);
        m.loaded("certificate", true);
        m.reload("templates", false);
        let text = m.encode();
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            "# TYPE velero_hook_injector_build info".to_owned(),
            format!(r#"velero_hook_injector_build_info{{version="{version}"}} 1"#),
            "# TYPE velero_hook_injector_certificate_expiration_timestamp_seconds gauge".to_owned(),
            "velero_hook_injector_certificate_expiration_timestamp_seconds 1900000000".to_owned(),
            "velero_hook_injector_templates_loaded 7".to_owned(),
            r#"velero_hook_injector_last_reload_successful{kind="certificate"} 1"#.to_owned(),
            r#"velero_hook_injector_last_reload_successful{kind="templates"} 0"#.to_owned(),
            r#"velero_hook_injector_reloads_total{kind="templates",result="failure"} 1"#.to_owned(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // A later good reload clears the failure state.
        m.reload("templates", true);
        assert!(
            m.encode()
                .contains(r#"velero_hook_injector_last_reload_successful{kind="templates"} 1"#)
        );
    }

    #[test]
    fn latency_buckets_reach_the_longest_webhook_timeout() {
        let m = Metrics::new();
        m.admission("inject", "shop", "injected", "postgres", 4.0);
        let text = m.encode();
        // timeoutSeconds is 1-30: a 4 s admission is below the 5 s bound, not only in +Inf.
        assert!(
            text.contains(r#"velero_hook_injector_admission_duration_seconds_bucket{le="5.0"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"velero_hook_injector_admission_duration_seconds_bucket{le="2.5"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"velero_hook_injector_admission_duration_seconds_bucket{le="30.0"} 1"#),
            "{text}"
        );
    }
}
