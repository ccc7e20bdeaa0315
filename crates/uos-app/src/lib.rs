//! The composition root of user-org-service: configuration → ports → services. Every binary
//! (`admin-api`, `uosctl`, `reconciler`) builds its [`Services`] here, so each port's
//! choice between the embedded default and the production adapter is made in one place, and
//! the HTTP layer never sees a store, key or mail implementation.

pub mod backup;
pub mod config;
pub mod config_doc;

mod reconciler;
pub mod telemetry;

pub use config::{Config, ConfigError, DeclarativeSettings, KafkaSettings, ObjectStoreSettings};
pub use reconciler::reconciler;
pub use telemetry::TelemetrySettings;

use secrecy::ExposeSecret;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uos_authz::Authorizer;
use uos_events::{AuditPublisher, KafkaConfig, KafkaPublisher, UsageConsumer, UsageConsumerConfig};
use uos_keys::{KeyProvider, LocalKeyStore, TransitKeyStore};
use uos_mail::{DevMailbox, Mailer, SmtpMailer};
use uos_service::{Bootstrap, OidcProviders, Ports, ReloadTrigger, Services};
use uos_store::Store;
use uos_store_postgres::PgStore;
use uos_store_sqlite::SqliteStore;

/// Why the application could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A backup that cannot be taken or restored as asked (see [`backup`]).
    #[error("{0}")]
    Backup(String),
}

/// Open the configured store and bring its schema up to date (forward-only migrations; on
/// PostgreSQL as the tables' owner when `migration_database_url` names one).
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, AppError> {
    let url = cfg.database_url.as_str();
    if url.starts_with("sqlite:") {
        let s = SqliteStore::open(url).await?;
        s.migrate().await?;
        return Ok(Arc::new(s));
    }
    let s = PgStore::connect(url, cfg.database_max_connections).await?;
    match &cfg.migration_database_url {
        Some(owner_url) => {
            let owner = PgStore::connect(owner_url, 1).await?;
            let migrated = owner.migrate().await;
            owner.close().await;
            migrated?;
        }
        None => s.migrate().await?,
    }
    Ok(Arc::new(s))
}

/// The configured store opened only to read, for tools that must change nothing (a plan):
/// nothing is created or migrated, and the store refuses writes. Its schema must be this
/// build's.
pub async fn open_store_read_only(cfg: &Config) -> Result<Arc<dyn Store>, AppError> {
    let url = cfg.database_url.as_str();
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open_read_only(url).await?));
    }
    Ok(Arc::new(PgStore::connect_read_only(url, 1).await?))
}

/// Log to stderr as `log_format` says (`text` or `json`), filtered by `RUST_LOG` (default
/// `info`), and export traces when `[telemetry]` names a collector: the same for every
/// long-running binary, whose name (`binary`) is the traces' default service name.
///
/// Keep the returned exporter until the end of `main`, outside the async runtime: dropping it
/// sends the spans still buffered.
pub fn init_logging(
    cfg: &Config,
    binary: &str,
) -> Result<Option<telemetry::Exporter>, telemetry::TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Each layer filters for itself: the log stays at `RUST_LOG` while the collector also
    // gets the `debug` spans of use cases and store operations.
    let log = if cfg.log_format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    };
    let (traces, exporter) = match telemetry::layer(&cfg.telemetry, binary)? {
        Some((layer, exporter)) => (Some(layer), Some(exporter)),
        None => (None, None),
    };
    tracing_subscriber::registry().with(log).with(traces).init();
    Ok(exporter)
}

/// The services, built from configuration: every port opened, background tasks started, the
/// first platform admin bootstrapped on an empty store.
pub async fn build(cfg: &Config) -> Result<Services, AppError> {
    let svc = services(cfg).await?;
    svc.spawn_background();
    // The embedded bundle never changes; only a directory is worth watching.
    if cfg.policy_dir.is_some() && cfg.policy_watch_secs > 0 {
        svc.spawn_policy_watch(Duration::from_secs(cfg.policy_watch_secs));
    }
    if let Some(consumer) = usage_consumer(cfg)? {
        svc.spawn_usage_consumer(consumer);
    }
    bootstrap(&svc, cfg).await?;
    Ok(svc)
}

/// The services with every port opened and nothing started: for a process that only drives
/// use cases (the reconciler), leaving the API's background work to the API.
pub async fn services(cfg: &Config) -> Result<Services, AppError> {
    let store = open_store(cfg).await?;
    let keys: Arc<dyn KeyProvider> = match cfg.transit() {
        Some(transit) => Arc::new(TransitKeyStore::connect(transit).await?),
        None => Arc::new(LocalKeyStore::open(&cfg.data_dir.join("keys"))?),
    };
    let authz = match &cfg.policy_dir {
        Some(dir) => Authorizer::from_dir(dir)?,
        None => Authorizer::new()?,
    };
    let bundle = authz.current();
    tracing::info!(
        source = %authz.source(),
        revision = bundle.revision(),
        rego_tests = bundle.rego_tests(),
        "policy bundle loaded"
    );
    drop(bundle);
    let ca = match &cfg.redis_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            ConfigError(format!(
                "redis_ca_file: cannot read {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let shared =
        uos_shared::connect(cfg.redis_url.as_deref(), &cfg.redis_prefix, ca.as_deref()).await?;
    let mailer: Arc<dyn Mailer> = match &cfg.smtp {
        Some(smtp) => Arc::new(SmtpMailer::new(smtp)?),
        None => Arc::new(DevMailbox::open(&cfg.data_dir.join("mailbox"))?),
    };
    let events: Option<Arc<dyn AuditPublisher>> = match &cfg.kafka.brokers {
        Some(brokers) => Some(Arc::new(
            KafkaPublisher::new(KafkaConfig {
                brokers: brokers.clone(),
                topic: cfg.kafka.audit_topic.clone(),
                source: cfg.public_url(),
                message_timeout: Duration::from_secs(cfg.kafka.message_timeout_secs),
            })
            .map_err(|e| ConfigError(format!("kafka.brokers: {e}")))?,
        )),
        None => None,
    };
    let objects = uos_objects::open(&cfg.object_store())
        .map_err(|e| ConfigError(format!("object_store: {e}")))?;
    let webhooks = webhooks(cfg)?;
    let ports = Ports {
        store,
        keys,
        shared,
        mailer,
        events,
        objects,
        webhooks,
        push_secret: cfg
            .declarative
            .webhook_secret
            .as_ref()
            .map(|s| uos_service::PushSecret(s.expose_secret().to_owned())),
    };
    let oidc = OidcProviders::new(cfg.oidc_providers.clone());
    Ok(Services::new(ports, authz, cfg.service.clone(), oidc)?)
}

/// The webhook endpoints and their signing key, when `webhooks.urls` names any.
fn webhooks(cfg: &Config) -> Result<Option<uos_service::Webhooks>, AppError> {
    let w = &cfg.webhooks;
    let urls = w.url_list();
    let Some(secret) = w.secret.as_ref().filter(|_| !urls.is_empty()) else {
        return Ok(None);
    };
    let transport = uos_webhooks::HttpWebhooks::new(secret.expose_secret().as_bytes())
        .map_err(|e| ConfigError(format!("webhooks: {e}")))?;
    Ok(Some(uos_service::Webhooks {
        transport: Arc::new(transport),
        urls,
        max_attempts: w.max_attempts,
        retry_base: Duration::from_millis(w.retry_base_ms),
    }))
}

/// Reload the policy bundle on every `SIGHUP`, for the life of the process. For the API
/// server only: once the handler is installed, `SIGHUP` no longer ends the process. A refused
/// bundle is logged (with file and line) and counted, and the running one stays.
#[cfg(unix)]
pub fn reload_policy_on_sighup(svc: &Services) -> Result<(), AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    let svc = svc.clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match svc.reload_policy_on(ReloadTrigger::Sighup).await {
                Ok(r) if r.changed => {}
                Ok(r) => tracing::info!(revision = %r.revision, "SIGHUP: policy bundle unchanged"),
                // The reload logged the refusal with its file and line.
                Err(uos_service::ServiceError::PolicyRefused { .. }) => {}
                Err(error) => tracing::warn!(%error, "SIGHUP: policy reload failed"),
            }
        }
    });
    Ok(())
}

/// The consumer of `billing.usage`, when Kafka is configured and consuming is not switched off.
fn usage_consumer(cfg: &Config) -> Result<Option<UsageConsumer>, AppError> {
    let k = &cfg.kafka;
    let Some(brokers) = k.brokers.as_deref().filter(|_| k.consume_usage) else {
        return Ok(None);
    };
    let consumer = UsageConsumer::new(UsageConsumerConfig {
        message_timeout: Duration::from_secs(k.message_timeout_secs),
        ..UsageConsumerConfig::new(brokers, &k.usage_topic, &k.usage_dlq_topic, &k.usage_group)
    })
    .map_err(|e| ConfigError(format!("kafka.brokers: {e}")))?;
    Ok(Some(consumer))
}

async fn bootstrap(svc: &Services, cfg: &Config) -> Result<(), AppError> {
    let email = cfg
        .bootstrap_admin_email
        .as_deref()
        .map(uos_domain::Email::parse)
        .transpose()
        .map_err(|e| ConfigError(format!("bootstrap_admin_email: {e}")))?;
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

/// Create the data directory (key files, mailbox, the default SQLite file) owner-only, if it
/// is missing.
pub fn ensure_data_dir(dir: &Path) -> Result<(), AppError> {
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
