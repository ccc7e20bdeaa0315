//! Traces end to end: an admin-api process exporting over OTLP/HTTP to a receiver built from
//! the official protobuf definitions (`opentelemetry-proto`), publishing audit events to a real
//! Kafka-protocol broker. One request carrying a W3C `traceparent` must come back as one span
//! tree — HTTP server span, use case, store operation, and the Kafka publish of its audit event
//! — and the Kafka message must carry the trace on; a request its caller did not sample must
//! leave no span.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uos_events::testing::{consume, Broker};

use crate::replicas::{admin_token, Cluster};

/// One received span, flattened with its resource's `service.name`.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        let value = self.attributes.iter().find(|kv| kv.key == key)?;
        match value.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        }
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// `POST /v1/traces` of OTLP/HTTP with a protobuf body, as a collector answers it.
async fn receive(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut received = spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for s in scope.spans {
                received.push(Received {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attributes: s.attributes,
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP receiver on a free port: its base URL and what it received.
async fn otlp_receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, spans)
}

/// The spans of `trace` received so far.
fn of_trace(spans: &Spans, trace: &str) -> Vec<Received> {
    spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect()
}

/// Whether `span` has `ancestor` above it in `tree`.
fn descends_from(tree: &[Received], span: &Received, ancestor: &Received) -> bool {
    let mut parent = span.parent_span_id.clone();
    while let Some(p) = tree.iter().find(|s| s.span_id == parent) {
        if p.span_id == ancestor.span_id {
            return true;
        }
        parent = p.parent_span_id.clone();
    }
    false
}

fn named<'a>(tree: &'a [Received], name: &str) -> &'a Received {
    tree.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {tree:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis and tansu (a Kafka-protocol broker)"]
async fn one_request_is_one_span_tree_from_http_to_the_kafka_publish() {
    let (collector, spans) = otlp_receiver().await;
    let broker = Broker::start();
    // Ratio 0: only what a caller sampled is recorded, so the admin's own login is not.
    let cluster = Cluster::new(&[
        ("UOS_KAFKA__BROKERS", broker.address.as_str()),
        ("UOS_TELEMETRY__OTLP_ENDPOINT", collector.as_str()),
        ("UOS_TELEMETRY__SAMPLE_RATIO", "0"),
        // The SDK's batch delay, so spans arrive within the test's patience.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    let r = cluster.replica().await;
    let client = reqwest::Client::new();
    let admin = admin_token(&client, &r).await;

    let create = |slug: &'static str, traceparent: String| {
        client
            .post(format!("{}/v1/orgs", r.base))
            .bearer_auth(&admin)
            .header("traceparent", traceparent)
            .json(&json!({"slug": slug, "display_name": slug}))
            .send()
    };
    let unsampled = "5b8efff798038103d269b633813fc60c";
    let res = create("not-traced", format!("00-{unsampled}-eee19b7ec3c1b174-00"))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let res = create("traced", format!("00-{trace}-{caller_span}-01"))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let org: serde_json::Value = res.json().await.unwrap();

    // The relay publishes the event after the commit; its span closes the tree.
    let publish_name = "uos.audit.v1 publish";
    let deadline = Instant::now() + Duration::from_secs(30);
    let tree = loop {
        let tree = of_trace(&spans, trace);
        if tree.iter().any(|s| s.name == publish_name) {
            break tree;
        }
        assert!(Instant::now() < deadline, "no publish span: {tree:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let server = named(&tree, "POST /v1/orgs");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(
        server.parent_span_id, caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(server.attribute("http.route").as_deref(), Some("/v1/orgs"));
    assert_eq!(
        server.attribute("http.response.status_code").as_deref(),
        Some("201")
    );
    let use_case = named(&tree, "create_org");
    assert!(descends_from(&tree, use_case, server), "{tree:#?}");
    let store = named(&tree, "insert_org");
    assert!(descends_from(&tree, store, use_case), "{tree:#?}");
    assert!(
        store
            .attribute("code.module.name")
            .is_some_and(|m| m.starts_with("uos_store_sql")),
        "{store:#?}"
    );
    let publish = named(&tree, publish_name);
    assert_eq!(publish.kind, SpanKind::Producer as i32);
    assert!(descends_from(&tree, publish, use_case), "{tree:#?}");
    assert_eq!(
        publish.attribute("messaging.destination.name").as_deref(),
        Some("uos.audit.v1")
    );
    assert!(tree.iter().all(|s| s.service == "admin-api"), "{tree:#?}");

    // The message carries the trace on, from the publish span.
    let brokers = broker.address.clone();
    let messages = tokio::task::spawn_blocking(move || {
        consume(&brokers, "uos.audit.v1", usize::MAX, Duration::from_secs(3))
    })
    .await
    .unwrap();
    let created = messages
        .iter()
        .find(|m| {
            m.header("ce_type") == Some("org.created") && m.value["target"]["id"] == org["id"]
        })
        .expect("the org.created event of the traced request");
    assert_eq!(
        created.header("traceparent"),
        Some(format!("00-{trace}-{}-01", publish.span_id).as_str())
    );

    // Spans are exported in the order they end: the unsampled request's would be here by now.
    assert!(
        of_trace(&spans, unsampled).is_empty(),
        "a request its caller did not sample is not recorded"
    );
}
