//! The W3C trace context, carried where a span cannot be a parent in process: from a request's
//! `traceparent` header, into the audit row a change records (the outbox relay publishes it
//! later, maybe on another replica), and into the Kafka message's `traceparent` header.
//!
//! The spans themselves are ordinary `tracing` spans (the HTTP request, each use case and
//! store operation at `debug`, each Kafka publish); the composition root (`uos-app`) exports
//! them over OTLP when a collector is configured, and calls [`set_exporting`]. Until then
//! every function here is a cheap no-op: no span has an OpenTelemetry context, so nothing is
//! carried.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and Kafka header) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Set once a process exports spans; read on every request, so callers can skip building
/// what only a collector would read.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans (a collector is configured).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Called once by whoever installs the exporting layer.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Makes the remote span `traceparent` names the parent of `span`, which must not have been
/// entered yet. A missing or malformed value leaves `span` a root: a bad header never fails
/// a request.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(value) = traceparent.filter(|_| exporting()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled (filtered out); it then stays a root.
        let _ = span.set_parent(cx);
    }
}

/// The W3C `traceparent` of `span`, if it is recorded for a collector.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    // Without an exporter no span has a context: skip asking for one on every audit event.
    if !exporting() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// [`traceparent_of`] the span the caller runs in.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_nothing_is_carried() {
        let span = tracing::info_span!("request");
        continue_trace(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(current_traceparent(), None);
    }
}
