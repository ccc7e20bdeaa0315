//! Traces over OpenTelemetry, off by default: the `tracing` spans of every crate exported as
//! OTLP/HTTP protobuf to a collector, sampled per trace. What carries a trace across processes
//! is `uos_telemetry`'s.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use schemars::JsonSchema;
use serde::Deserialize;
use std::time::Duration;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::Layer;

/// Where spans go, and how many (`[telemetry]`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP/HTTP base URL of a collector, e.g. `http://otel-collector:4318`
    /// (`UOS_TELEMETRY__OTLP_ENDPOINT`): spans are posted as protobuf to `<url>/v1/traces`.
    /// Unset: no traces (the default).
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0.0 to 1.0 (`UOS_TELEMETRY__SAMPLE_RATIO`). A request
    /// that arrives with a W3C `traceparent` follows its caller's decision instead, so a trace
    /// is recorded whole or not at all.
    pub sample_ratio: f64,
    /// `service.name` of the spans (`UOS_TELEMETRY__SERVICE_NAME`). Unset: the binary's name
    /// (`admin-api`, `reconciler`).
    pub service_name: Option<String>,
    /// Seconds an export to the collector may take before that batch is dropped; spans are
    /// never waited for by a request.
    pub export_timeout_secs: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 0.1,
            service_name: None,
            export_timeout_secs: 10,
        }
    }
}

impl TelemetrySettings {
    /// The first bad setting, as `(key, why)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if let Some(url) = &self.otlp_endpoint {
            if !crate::config::is_http_url(url) {
                return Err((
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL of a collector, without query or fragment",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(("telemetry.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if self.export_timeout_secs == 0 || self.export_timeout_secs > 300 {
            return Err((
                "telemetry.export_timeout_secs",
                "must be between 1 and 300 seconds",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// The exporter of a process: dropping it sends the spans still buffered. Drop it outside any
/// async runtime (the exporter's HTTP client blocks), e.g. at the end of `main`.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry: spans may have been lost at shutdown: {e}");
        }
    }
}

/// The spans recorded for a collector: every span and event of this project's crates down to
/// `debug` (use cases and store operations are `debug` spans), and sqlx's statements, which
/// become events of the store span that ran them.
fn exported() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("uos_", LevelFilter::DEBUG)
        .with_target("admin_api", LevelFilter::DEBUG)
        .with_target("reconciler", LevelFilter::DEBUG)
        .with_target("sqlx::query", LevelFilter::DEBUG)
}

/// A layer exporting spans to the collector `settings` name, and the exporter to keep until
/// shutdown; `None` when no collector is configured. `binary` is the default service name.
///
/// Also installs the W3C trace-context propagator process-wide, so libraries that propagate
/// through the global one agree with this crate's headers.
pub fn layer<S>(
    settings: &TelemetrySettings,
    binary: &str,
) -> Result<Option<(impl Layer<S>, Exporter)>, TelemetryError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(base) = &settings.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(settings.export_timeout_secs))
        .build()
        .map_err(|e| TelemetryError(format!("the OTLP exporter for {base}: {e}")))?;
    let service = settings
        .service_name
        .as_deref()
        .unwrap_or(binary)
        .to_owned();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    uos_telemetry::set_exporting();
    let tracer = provider.tracer("user-org-service");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(exported());
    Ok(Some((layer, Exporter { provider })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_by_key() {
        let ok = TelemetrySettings {
            otlp_endpoint: Some("http://collector:4318".into()),
            ..TelemetrySettings::default()
        };
        assert_eq!(ok.check(), Ok(()));
        for (bad, key) in [
            (
                TelemetrySettings {
                    otlp_endpoint: Some("collector:4318".into()),
                    ..TelemetrySettings::default()
                },
                "telemetry.otlp_endpoint",
            ),
            (
                TelemetrySettings {
                    sample_ratio: 1.5,
                    ..TelemetrySettings::default()
                },
                "telemetry.sample_ratio",
            ),
            (
                TelemetrySettings {
                    export_timeout_secs: 0,
                    ..TelemetrySettings::default()
                },
                "telemetry.export_timeout_secs",
            ),
        ] {
            assert_eq!(bad.check().map_err(|(k, _)| k), Err(key));
        }
    }
}
