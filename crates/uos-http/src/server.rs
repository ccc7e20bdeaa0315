//! The serve loop: serve the router until SIGINT/SIGTERM, drain, flush, close. The services
//! it serves are built by the composition root (`uos-app`).

use crate::client_ip::TrustedProxies;
use crate::state::AppState;
use std::net::SocketAddr;
use std::time::Duration;
use uos_service::{RateLimitConfig, Services};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Serve `svc` on `listener` until a shutdown signal, then drain in-flight requests (for at
/// most `grace`), record the last API-key uses, checkpoint the audit chains and close the store. `public_url` is where
/// clients reach it (error `type` URIs point under it); `rate_limit` says which operations are
/// limited; at most `max_in_progress` requests are worked on at once (0: the service's
/// default for the runtime's threads); `trusted_proxies` may name the client in
/// `X-Forwarded-For`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    svc: Services,
    public_url: &str,
    rate_limit: &RateLimitConfig,
    max_in_progress: usize,
    trusted_proxies: TrustedProxies,
    grace: Duration,
) -> Result<(), ServerError> {
    let state = AppState::new(
        svc.clone(),
        public_url,
        rate_limit,
        max_in_progress,
        trusted_proxies,
    )?;
    let store = state.svc.store().clone();
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "admin-api listening");
    let app = crate::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining requests");
        let _ = tx.send(());
    });
    let drained = async {
        // After the signal, give in-flight requests the grace period, then stop waiting.
        let _ = rx.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r?,
        () = drained => tracing::warn!("grace period over; closing with requests in flight"),
    }
    // Uses recorded since the last periodic write would otherwise be lost.
    if let Err(e) = svc.flush_api_key_usage().await {
        tracing::warn!(error = %e, "could not record the last API key uses");
    }
    // Seal the heads the last requests moved, so a verifier can tell they were there.
    if let Err(e) = svc.issue_checkpoint().await {
        tracing::warn!(error = %e, "could not issue the shutdown audit checkpoint");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
