//! Start-up and the serve loop: open the store (running migrations), load keys and policies,
//! bootstrap the first admin, serve until SIGINT/SIGTERM, drain, close.

use crate::config::Config;
use crate::state::AppState;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uos_authz::Authorizer;
use uos_keys::LocalKeyStore;
use uos_mail::{DevMailbox, Mailer, SmtpMailer};
use uos_service::{Bootstrap, OidcProviders, Ports, Services};
use uos_store::Store;
use uos_store_postgres::PgStore;
use uos_store_sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] uos_store::StoreError),
    #[error("keys: {0}")]
    Keys(#[from] uos_keys::KeyError),
    #[error("policy: {0}")]
    Policy(#[from] uos_authz::AuthzError),
    #[error("service: {0}")]
    Service(#[from] uos_service::ServiceError),
    #[error("shared state: {0}")]
    Shared(#[from] uos_shared::SharedError),
    #[error("mail: {0}")]
    Mail(#[from] uos_mail::MailError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Open the configured store and bring its schema up to date (forward-only migrations).
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let url = cfg.database_url.as_str();
    if url.starts_with("sqlite:") {
        let s = SqliteStore::open(url).await?;
        s.migrate().await?;
        Ok(Arc::new(s))
    } else {
        let s = PgStore::connect(url, cfg.database_max_connections).await?;
        s.migrate().await?;
        Ok(Arc::new(s))
    }
}

/// Everything a router needs, built from configuration.
pub async fn build(cfg: &Config) -> Result<AppState, ServerError> {
    let store = open_store(cfg).await?;
    let keys = Arc::new(LocalKeyStore::open(&cfg.data_dir.join("keys"))?);
    let authz = match &cfg.policy_dir {
        Some(dir) => Authorizer::from_dir(dir)?,
        None => Authorizer::new()?,
    };
    let ca = match &cfg.redis_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            ServerError::Config(crate::config::ConfigError(format!(
                "redis_ca_file: cannot read {}: {e}",
                path.display()
            )))
        })?),
        None => None,
    };
    let shared =
        uos_shared::connect(cfg.redis_url.as_deref(), &cfg.redis_prefix, ca.as_deref()).await?;
    let mailer: Arc<dyn Mailer> = match &cfg.smtp {
        Some(smtp) => Arc::new(SmtpMailer::new(smtp)?),
        None => Arc::new(DevMailbox::open(&cfg.data_dir.join("mailbox"))?),
    };
    let ports = Ports {
        store,
        keys,
        shared,
        mailer,
    };
    let oidc = OidcProviders::new(cfg.oidc_providers.clone());
    let svc = Services::new(ports, authz, cfg.service.clone(), oidc)?;
    svc.spawn_background();
    bootstrap(&svc, cfg).await?;
    Ok(AppState::new(svc)?)
}

async fn bootstrap(svc: &Services, cfg: &Config) -> Result<(), ServerError> {
    let email = cfg
        .bootstrap_admin_email
        .as_deref()
        .map(uos_domain::Email::parse)
        .transpose()
        .map_err(|e| crate::config::ConfigError(format!("bootstrap_admin_email: {e}")))?;
    match svc
        .bootstrap(email, cfg.bootstrap_admin_password.clone())
        .await?
    {
        Bootstrap::AlreadyDone => {}
        Bootstrap::Created { email } => tracing::info!(%email, "bootstrapped platform admin"),
        Bootstrap::Generated { email, password } => {
            // The contract asks for this one-time print: it is the only way into a fresh
            // install without configured credentials, and the account must change it.
            tracing::warn!(
                %email,
                password = password.expose_secret(),
                "bootstrapped platform admin with a generated password; log in and change it now"
            );
        }
    }
    Ok(())
}

/// Serve until a shutdown signal, then drain in-flight requests (bounded by
/// `shutdown_grace_secs`) and close the store.
pub async fn run(cfg: Config) -> Result<(), ServerError> {
    ensure_data_dir(&cfg.data_dir)?;
    // Bind first: a taken port should fail before the store is touched or an admin bootstrapped.
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let state = build(&cfg).await?;
    let svc = state.svc.clone();
    let store = state.svc.store().clone();
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "admin-api listening");
    let app = crate::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let grace = Duration::from_secs(cfg.shutdown_grace_secs);
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
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn ensure_data_dir(dir: &Path) -> Result<(), ServerError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
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
