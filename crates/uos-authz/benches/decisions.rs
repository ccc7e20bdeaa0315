//! In-process cost of the decision point's policy step (`Authorizer::pdp_decide`), one core:
//! a repeated question (answered from the per-revision memo, as a gateway asking about the
//! same key and model gets) and a new question every time (a full Rego evaluation). Run with
//! `cargo bench -p uos-authz --bench decisions`; decisions/s per core = 1 / the time shown,
//! beside a SHA-256 of 1 KiB measured in the same run.

// A bench, like a test, stops on a broken setup.
#![allow(clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::sync::atomic::{AtomicU64, Ordering};
use uos_authz::{Authorizer, PdpInput, PdpPrincipal, PdpResource};
use uuid::Uuid;

fn principal() -> PdpPrincipal {
    PdpPrincipal {
        kind: "api_key",
        id: Uuid::now_v7(),
        status: "active".to_owned(),
        member: true,
        membership_status: Some("active".to_owned()),
        roles: vec!["member".to_owned(), "ml-user".to_owned()],
        permissions: vec!["org:read".to_owned()],
        user_id: None,
        service_account_id: Some(Uuid::now_v7()),
        api_key_id: Some(Uuid::now_v7()),
        scopes: vec!["org:read".to_owned()],
    }
}

fn resource(id: String) -> PdpResource {
    PdpResource {
        kind: "model".to_owned(),
        id: Some(id),
        org_id: Uuid::now_v7(),
        org_status: "active".to_owned(),
        attributes: serde_json::json!({"required_roles": ["ml-user"]}),
    }
}

fn decisions(c: &mut Criterion) {
    // The reference measured in the same run: these machines' speed drifts by up to 2×.
    let kib = vec![7u8; 1024];
    c.bench_function("reference: SHA-256 of 1 KiB", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(std::hint::black_box(&kib)));
    });
    let authz = Authorizer::new().expect("the embedded policies load");
    let principal = principal();
    let context = serde_json::json!({"cost_cents": 12});
    let same = resource("large".to_owned());
    c.bench_function("pdp_decide, repeated question (memo)", |b| {
        b.iter(|| {
            let input = PdpInput {
                principal: &principal,
                action: "llm.invoke",
                resource: &same,
                context: &context,
            };
            assert!(authz.pdp_decide(&input).expect("decides").allow);
        });
    });
    let n = AtomicU64::new(0);
    c.bench_function("pdp_decide, new question (Rego evaluation)", |b| {
        b.iter_batched(
            || resource(format!("model-{}", n.fetch_add(1, Ordering::Relaxed))),
            |fresh| {
                let input = PdpInput {
                    principal: &principal,
                    action: "llm.invoke",
                    resource: &fresh,
                    context: &context,
                };
                assert!(authz.pdp_decide(&input).expect("decides").allow);
            },
            BatchSize::SmallInput,
        );
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
