//! Configuration: defaults, then an optional TOML file (`UOS_CONFIG`), then `UOS_` environment
//! variables (`__` nests: `UOS_SERVICE__ACCESS_TOKEN_TTL_SECS`). Unknown keys and bad values
//! stop start-up with a message naming the key. The doc comments below are the reference:
//! `docs/configuration.md` is generated from them (see [`crate::config_doc`]), so every field
//! needs one, and a new settings struct needs `JsonSchema` beside `Deserialize`. Secrets are
//! described as `writeOnly` strings (`#[schemars(with = …, extend("writeOnly" = true))]`), which
//! the reference shows without a value.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use uos_service::{RateLimitConfig, ServiceConfig};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the API listens on (`UOS_LISTEN`).
    pub listen: SocketAddr,
    /// The URL clients reach the API at, behind any proxy (`UOS_PUBLIC_URL`,
    /// `https://id.example.com`). Error `type` URIs point under it, at pages the service
    /// serves itself. Unset: `http://<listen>`.
    pub public_url: Option<String>,
    /// `sqlite://path/file.db` (embedded default) or `postgres://…` (`UOS_DATABASE_URL`). On
    /// PostgreSQL, give the service a role that neither owns the tables nor is a superuser,
    /// so the row-level security policies bind it.
    pub database_url: String,
    /// The URL migrations run with on PostgreSQL: the role that owns the tables
    /// (`UOS_MIGRATION_DATABASE_URL`). Unset: migrations run with `database_url`.
    pub migration_database_url: Option<String>,
    /// Connection pool size for PostgreSQL.
    pub database_max_connections: u32,
    /// Where key files (and the default SQLite file) live; created on first start, 0700.
    pub data_dir: PathBuf,
    /// First platform admin, created on an empty store (`UOS_BOOTSTRAP_ADMIN_EMAIL`).
    pub bootstrap_admin_email: Option<String>,
    /// Its password (`UOS_BOOTSTRAP_ADMIN_PASSWORD`); set both or neither.
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub bootstrap_admin_password: Option<SecretString>,
    /// Load the policy bundle (every `*.rego` file directly inside, Rego tests included) from
    /// this directory instead of the built-in one (`UOS_POLICY_DIR`). It is reloaded when its
    /// files change, on `SIGHUP` and by `POST /v1/policy/reload`; see docs/policy.md.
    pub policy_dir: Option<PathBuf>,
    /// Seconds between checks of `policy_dir` for changed files (`UOS_POLICY_WATCH_SECS`); 0
    /// turns watching off (reloads then come from `SIGHUP` and the API only).
    pub policy_watch_secs: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Threads serving requests (`UOS_WORKER_THREADS`). 0: one per core available to the
    /// process (cgroup CPU limits included). Password hashing runs on its own threads, so
    /// fewer workers than cores leaves room for a sidecar or a co-located load generator.
    pub worker_threads: usize,
    /// Requests the API works on at once (`UOS_MAX_REQUESTS_IN_PROGRESS`); more wait their
    /// turn in arrival order and none is refused for it. Health probes, metrics and the
    /// authentication endpoints (`/v1/auth/*`, `/oauth2/*`) are not counted. Under thousands
    /// of connections this keeps a request that holds a database connection from waiting
    /// behind all the others to run again. 0: 32 per request-serving thread.
    pub max_requests_in_progress: usize,
    /// Reverse proxies (an ingress controller, a load balancer) in front of the API, as
    /// addresses or networks (`["10.0.0.0/8", "192.0.2.7"]`, `UOS_TRUSTED_PROXIES`). A request
    /// arriving from one of them is from the nearest address in its `X-Forwarded-For` that is
    /// not one of them; that address is what per-address rate limits and lockout count and
    /// what audit events record. Empty (the default): the connection's peer is the client and
    /// `X-Forwarded-For` is ignored, so clients cannot choose their own address. Behind an
    /// ingress, leaving it empty makes every client one address to those limits.
    pub trusted_proxies: Vec<String>,
    /// `redis://host:port/db` for state shared by replicas (lockout counters, one-time
    /// tokens, revocation fan-out); `rediss://` for TLS. Unset: in-process, for a single node
    /// (`UOS_REDIS_URL`).
    pub redis_url: Option<String>,
    /// PEM file of the CA certificates a `rediss://` server's certificate must chain to (a
    /// cluster's private CA). Unset: the system's trust store (`UOS_REDIS_CA_FILE`).
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// Outgoing mail over SMTP (`[smtp]`: host, port, security none|starttls|tls, username,
    /// password, from, timeout_secs). Unset: mails go to the dev mailbox in the data dir,
    /// printed by `uosctl mail list`.
    pub smtp: Option<uos_mail::SmtpConfig>,
    /// Upstream OIDC providers by name (`[oidc_providers.<name>]`: issuer, client_id,
    /// client_secret, redirect_uri, scopes, claim mapping, allowed_email_domains, auto_join).
    pub oidc_providers: std::collections::BTreeMap<String, uos_oidc::ProviderConfig>,
    /// The event stream (`[kafka]`). Unset brokers: audit events stay in the store only.
    pub kafka: KafkaSettings,
    /// Where audit export files are kept (`[object_store]`). Unset url: `<data_dir>/exports`.
    pub object_store: ObjectStoreSettings,
    /// Key material from Vault/OpenBao Transit (`[vault]`). Unset address: key files in
    /// `<data_dir>/keys` (the embedded default).
    pub vault: VaultSettings,
    /// Use-case settings (token lifetimes, retention, password hashing).
    pub service: ServiceConfig,
    /// Rate limits on the risky operations, per caller and per client address, shared by
    /// every replica through `redis_url` (`[rate_limit]`: enabled, reserve_ms,
    /// `routes.<name>` with route, per_caller, per_address, window_secs). See
    /// docs/rate-limits.md.
    pub rate_limit: RateLimitConfig,
    /// Notifications of budget state changes to HTTP endpoints (`[webhooks]`: urls, secret,
    /// max_attempts, retry_base_ms). Unset urls: none are sent.
    pub webhooks: WebhookSettings,
    /// The config repo the reconciler applies (`[declarative]`; see docs/declarative.md).
    pub declarative: DeclarativeSettings,
    /// OpenTelemetry traces over OTLP (`[telemetry]`: otlp_endpoint, sample_ratio,
    /// service_name, export_timeout_secs). Unset endpoint: no traces (the default).
    pub telemetry: crate::telemetry::TelemetrySettings,
}

/// Where the reconciler finds the org files, how often it looks, and what it trusts.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeclarativeSettings {
    /// A local directory or repository, `file://`, `https://` or `ssh://` URL
    /// (`UOS_DECLARATIVE__REPO`; `--repo` on the reconciler's command line).
    pub repo: Option<String>,
    /// The branch applied (`UOS_DECLARATIVE__BRANCH`). A plain directory has none.
    pub branch: String,
    /// Seconds between fetches (`UOS_DECLARATIVE__POLL_SECS`).
    pub poll_secs: u64,
    /// Seconds between drift checks of the applied orgs (`UOS_DECLARATIVE__DRIFT_SECS`).
    pub drift_secs: u64,
    /// An SSH allowed-signers file; set, every applied commit must be SSH-signed by one of
    /// them (`UOS_DECLARATIVE__ALLOWED_SIGNERS`). Unset: signatures are not required.
    pub allowed_signers: Option<PathBuf>,
    /// The HMAC key of `POST /v1/declarative/webhook` (`X-Hub-Signature-256`), read by the
    /// admin-api (`UOS_DECLARATIVE__WEBHOOK_SECRET`). Unset: the endpoint answers 404.
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub webhook_secret: Option<SecretString>,
    /// A bearer token for `https://` repositories (`UOS_DECLARATIVE__TOKEN`).
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub token: Option<SecretString>,
    /// The private key for `ssh://` repositories (`UOS_DECLARATIVE__SSH_KEY`, a file).
    pub ssh_key: Option<PathBuf>,
    /// An OpenSSH known_hosts file the SSH server's key must be in
    /// (`UOS_DECLARATIVE__KNOWN_HOSTS`); required with `ssh://`.
    pub known_hosts: Option<PathBuf>,
    /// Where `/metrics` and `/healthz` of the reconciler are served
    /// (`UOS_DECLARATIVE__LISTEN`).
    pub listen: SocketAddr,
}

impl Default for DeclarativeSettings {
    fn default() -> Self {
        Self {
            repo: None,
            branch: "main".into(),
            poll_secs: 30,
            drift_secs: 300,
            allowed_signers: None,
            webhook_secret: None,
            token: None,
            ssh_key: None,
            known_hosts: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

/// Webhook endpoints and how deliveries to them are signed and retried.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Comma-separated `http(s)://` URLs every notification is posted to
    /// (`UOS_WEBHOOKS__URLS`). Unset: no webhooks.
    pub urls: Option<String>,
    /// The HMAC-SHA256 key deliveries are signed with (`UOS_WEBHOOKS__SECRET`, at least 32
    /// characters); required with `urls`.
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub secret: Option<SecretString>,
    /// Attempts per delivery before it is given up as `failed`.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubling with each further one (to an hour).
    pub retry_base_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            urls: None,
            secret: None,
            max_attempts: 10,
            retry_base_ms: 1000,
        }
    }
}

impl WebhookSettings {
    /// The endpoint URLs, when any are configured.
    pub fn url_list(&self) -> Vec<String> {
        self.urls
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Kafka, where every audit event is published by the outbox relay and usage events are
/// consumed from.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` of bootstrap brokers (`UOS_KAFKA__BROKERS`). Unset: no
    /// relay runs (the embedded default).
    pub brokers: Option<String>,
    /// The topic of audit events (`UOS_KAFKA__AUDIT_TOPIC`).
    pub audit_topic: String,
    /// Seconds a message may wait for the brokers before its send fails and the relay tries
    /// again from where it got to.
    pub message_timeout_secs: u64,
    /// The topic usage events are consumed from, each the body of `POST /v1/usage`
    /// (`UOS_KAFKA__USAGE_TOPIC`).
    pub usage_topic: String,
    /// Where usage messages that cannot be counted go, with the reason
    /// (`UOS_KAFKA__USAGE_DLQ_TOPIC`).
    pub usage_dlq_topic: String,
    /// The consumer group whose committed offsets record how far usage was counted
    /// (`UOS_KAFKA__USAGE_GROUP`).
    pub usage_group: String,
    /// Whether usage is consumed when `brokers` is set (`UOS_KAFKA__CONSUME_USAGE`); false
    /// leaves the topic to other deployments.
    pub consume_usage: bool,
}

/// Vault or OpenBao Transit, from which every signing and encryption key is derived (no key
/// file is written then; see `uos_keys::TransitKeyStore`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    /// `http(s)://host:port` (`UOS_VAULT__ADDRESS`). Unset: local key files.
    pub address: Option<String>,
    /// A token whose policy allows read, create, rotate and hmac on the Transit keys
    /// (`UOS_VAULT__TOKEN`); required with `address`.
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub token: Option<SecretString>,
    /// Mount path of the Transit engine (`UOS_VAULT__TRANSIT_MOUNT`).
    pub transit_mount: String,
    /// Transit key names start with this (`<prefix>-access-token`, `-audit`, `-decision`,
    /// `-data`, `-secrets`), so several deployments can share one Transit mount.
    pub key_prefix: String,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            address: None,
            token: None,
            transit_mount: "transit".into(),
            key_prefix: "uos".into(),
        }
    }
}

impl Config {
    /// Transit's settings when `vault.address` is set (validation made sure a token is too).
    pub fn transit(&self) -> Option<uos_keys::TransitConfig> {
        let v = &self.vault;
        Some(uos_keys::TransitConfig {
            address: v.address.clone()?,
            token: v.token.as_ref()?.expose_secret().to_owned(),
            mount: v.transit_mount.clone(),
            key_prefix: v.key_prefix.clone(),
        })
    }
}

/// The object store audit exports are written to and downloaded from.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSettings {
    /// `file:///absolute/dir` or `s3://bucket[/prefix]` (`UOS_OBJECT_STORE__URL`). Unset: the
    /// directory `exports` in `data_dir` (the embedded default).
    pub url: Option<String>,
    /// `http(s)://host[:port]` of an S3-compatible server (MinIO, Ceph…); unset: AWS
    /// (`UOS_OBJECT_STORE__ENDPOINT`). `s3://` only.
    pub endpoint: Option<String>,
    /// Access key id (`UOS_OBJECT_STORE__ACCESS_KEY_ID`); set with the secret, or neither to
    /// use the standard `AWS_*` environment or the instance's role. `s3://` only.
    pub access_key_id: Option<String>,
    /// Secret access key (`UOS_OBJECT_STORE__SECRET_ACCESS_KEY`). `s3://` only.
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub secret_access_key: Option<SecretString>,
    /// Region of the bucket (`UOS_OBJECT_STORE__REGION`); unset: `AWS_REGION` or `us-east-1`.
    /// `s3://` only.
    pub region: Option<String>,
}

impl Config {
    /// The object store's settings with the default directory filled in.
    pub fn object_store(&self) -> uos_objects::StoreSettings {
        let o = &self.object_store;
        let url = o.url.clone().unwrap_or_else(|| {
            // file:// needs an absolute directory; a relative data_dir is the process's.
            let dir = self.data_dir.join("exports");
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            format!("file://{}", dir.display())
        });
        uos_objects::StoreSettings {
            url,
            s3: uos_objects::S3Settings {
                endpoint: o.endpoint.clone(),
                access_key_id: o.access_key_id.clone(),
                secret_access_key: o.secret_access_key.clone(),
                region: o.region.clone(),
            },
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: None,
            audit_topic: "uos.audit.v1".into(),
            message_timeout_secs: 30,
            usage_topic: "billing.usage".into(),
            usage_dlq_topic: "billing.usage.dlq".into(),
            usage_group: "uos-usage".into(),
            consume_usage: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: "sqlite://.uos/uos.db".into(),
            database_max_connections: 16,
            migration_database_url: None,
            data_dir: PathBuf::from(".uos"),
            bootstrap_admin_email: None,
            bootstrap_admin_password: None,
            policy_dir: None,
            policy_watch_secs: 5,
            log_format: "text".into(),
            shutdown_grace_secs: 30,
            worker_threads: 0,
            max_requests_in_progress: 0,
            trusted_proxies: Vec::new(),
            redis_url: None,
            redis_ca_file: None,
            redis_prefix: "uos:".into(),
            smtp: None,
            oidc_providers: Default::default(),
            kafka: KafkaSettings::default(),
            object_store: ObjectStoreSettings::default(),
            vault: VaultSettings::default(),
            service: ServiceConfig::default(),
            rate_limit: RateLimitConfig::default(),
            webhooks: WebhookSettings::default(),
            declarative: DeclarativeSettings::default(),
            telemetry: crate::telemetry::TelemetrySettings::default(),
        }
    }
}

/// A proxy's address (`192.0.2.7`, `::1`: that address alone) or network (`10.0.0.0/8`).
fn parse_network(entry: &str) -> Result<ipnet::IpNet, String> {
    let s = entry.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a network such as 10.0.0.0/8"))
}

/// Whether `url` is an `http://` or `https://` URL with a host and no query, fragment, space
/// or non-ASCII character: what a base URL the service builds paths onto must be.
pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with('/')
            && !rest.contains(['?', '#', ' '])
            && rest.is_ascii()
    })
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Load from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment())
    }

    /// The layered sources; tests add their own on top.
    pub fn figment() -> Figment {
        let mut f = Figment::new();
        if let Ok(path) = std::env::var("UOS_CONFIG") {
            f = f.merge(Toml::file_exact(path));
        }
        // UOS_CONFIG names the file; UOS_TEST_* belong to the test suite, not the server.
        f.merge(
            Env::prefixed("UOS_")
                .filter(|k| k != "config" && !k.as_str().starts_with("test_"))
                .split("__"),
        )
    }

    pub fn from_figment(f: Figment) -> Result<Self, ConfigError> {
        let cfg: Config = f.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`Config::public_url`], or where the API listens when it is unset.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// [`Config::trusted_proxies`] as networks (validated at load: an entry that is neither
    /// an address nor a network has stopped start-up by then).
    pub fn trusted_proxy_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|e| parse_network(e).ok())
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if let Some(url) = &self.public_url {
            if !is_http_url(url) {
                return bad(
                    "public_url",
                    "must be an http:// or https:// URL with a host and no query or fragment",
                );
            }
        }
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return bad("database_url", "must start with sqlite:// or postgres://");
        }
        if let Some(owner) = &self.migration_database_url {
            if url.starts_with("sqlite:") {
                return bad("migration_database_url", "applies to PostgreSQL only");
            }
            if !(owner.starts_with("postgres://") || owner.starts_with("postgresql://")) {
                return bad("migration_database_url", "must start with postgres://");
            }
        }
        if self.database_max_connections == 0 {
            return bad("database_max_connections", "must be at least 1");
        }
        match (&self.bootstrap_admin_email, &self.bootstrap_admin_password) {
            (Some(e), Some(_)) => {
                if uos_domain::Email::parse(e).is_err() {
                    return bad("bootstrap_admin_email", "is not a valid email address");
                }
            }
            (None, None) => {}
            _ => {
                return bad(
                    "bootstrap_admin_email",
                    "set bootstrap_admin_email and bootstrap_admin_password together",
                )
            }
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return bad("redis_url", "must start with redis:// or rediss://");
            }
        }
        if self.redis_ca_file.is_some()
            && !self
                .redis_url
                .as_ref()
                .is_some_and(|u| u.starts_with("rediss://"))
        {
            return bad("redis_ca_file", "is only for a rediss:// redis_url");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad("log_format", "must be text or json");
        }
        if let Err((key, why)) = self.telemetry.check() {
            return bad(key, why);
        }
        if let Some(dir) = &self.policy_dir {
            if !dir.is_dir() {
                return bad(
                    "policy_dir",
                    &format!("{} is not a directory", dir.display()),
                );
            }
        }
        if self.policy_watch_secs > 86_400 {
            return bad(
                "policy_watch_secs",
                "must be at most 86400 seconds (0 turns watching off)",
            );
        }
        if self.worker_threads > 1024 {
            return bad("worker_threads", "must be at most 1024 (0: one per core)");
        }
        if self.max_requests_in_progress > 1_000_000 {
            return bad(
                "max_requests_in_progress",
                "must be at most 1000000 (0: 32 per worker thread)",
            );
        }
        for entry in &self.trusted_proxies {
            if let Err(e) = parse_network(entry) {
                return bad("trusted_proxies", &e);
            }
        }
        let s = &self.service;
        if s.access_token_ttl_secs == 0 || s.session_ttl_secs == 0 {
            return bad(
                "service.access_token_ttl_secs",
                "token and session lifetimes must be positive",
            );
        }
        if !(8..=128).contains(&s.password_min_length) {
            return bad("service.password_min_length", "must be between 8 and 128");
        }
        if s.password_min_score > 4 {
            return bad("service.password_min_score", "must be between 0 and 4");
        }
        let l = &s.lockout;
        if l.threshold == 0 || l.ip_threshold == 0 || l.window_secs == 0 || l.base_lock_secs == 0 {
            return bad(
                "service.lockout",
                "threshold, ip_threshold, window_secs and base_lock_secs must be positive",
            );
        }
        if s.mfa_token_ttl_secs == 0 || s.reset_token_ttl_secs == 0 {
            return bad(
                "service.mfa_token_ttl_secs",
                "one-time token lifetimes must be positive",
            );
        }
        if !(1..=86_400).contains(&s.decision_ttl_secs) {
            return bad("service.decision_ttl_secs", "must be between 1 and 86400");
        }
        if !(1..=720).contains(&s.approval_ttl_hours) {
            return bad("service.approval_ttl_hours", "must be between 1 and 720");
        }
        if let Err((key, why)) = s.quarantine.check() {
            return bad(&format!("service.quarantine.{key}"), why);
        }
        if s.budget_cache_ms > 1000 {
            return bad(
                "service.budget_cache_ms",
                "must be at most 1000 (other replicas' usage must count within a second)",
            );
        }
        let d = &self.declarative;
        if !(1..=86_400).contains(&d.poll_secs) {
            return bad("declarative.poll_secs", "must be between 1 and 86400");
        }
        if !(1..=86_400).contains(&d.drift_secs) {
            return bad("declarative.drift_secs", "must be between 1 and 86400");
        }
        if d.branch.is_empty() || d.branch.starts_with('-') || d.branch.contains("..") {
            return bad("declarative.branch", "must be a branch name");
        }
        if d.webhook_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 16)
        {
            return bad(
                "declarative.webhook_secret",
                "must be at least 16 characters",
            );
        }
        if let Some(path) = &d.allowed_signers {
            if !path.is_file() {
                return bad(
                    "declarative.allowed_signers",
                    &format!("{} is not a file", path.display()),
                );
            }
        }
        if let Some(brokers) = &self.kafka.brokers {
            let bad_broker = |b: &str| {
                b.rsplit_once(':')
                    .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            };
            if brokers.split(',').map(str::trim).any(bad_broker) {
                return bad("kafka.brokers", "must be comma-separated host:port pairs");
            }
        }
        let k = &self.kafka;
        for (key, name) in [
            ("kafka.audit_topic", &k.audit_topic),
            ("kafka.usage_topic", &k.usage_topic),
            ("kafka.usage_dlq_topic", &k.usage_dlq_topic),
            ("kafka.usage_group", &k.usage_group),
        ] {
            if name.is_empty()
                || name.len() > 249
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return bad(key, "must be 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'");
            }
        }
        if k.usage_dlq_topic == k.usage_topic {
            return bad(
                "kafka.usage_dlq_topic",
                "must differ from kafka.usage_topic (rejected messages would come back)",
            );
        }
        if self.kafka.message_timeout_secs == 0 {
            return bad("kafka.message_timeout_secs", "must be positive");
        }
        if let Err(e) = self.rate_limit.rules() {
            return bad(&e.key, &e.why);
        }
        self.validate_object_store()?;
        self.validate_vault()?;
        self.validate_webhooks()?;
        if s.audit_checkpoint_every_events == 0 {
            return bad("service.audit_checkpoint_every_events", "must be positive");
        }
        if s.audit_checkpoint_secs == 0 {
            return bad("service.audit_checkpoint_secs", "must be positive");
        }
        Ok(())
    }
}

impl Config {
    fn validate_vault(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("vault.{key}: {why}")));
        let v = &self.vault;
        let name_ok = |s: &str, extra: char| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == extra)
        };
        if !name_ok(&v.transit_mount, '/') || v.transit_mount.starts_with('/') {
            return bad("transit_mount", "must be a mount path like transit");
        }
        if !name_ok(&v.key_prefix, '-') {
            return bad(
                "key_prefix",
                "must be 1 to 64 of a-z, A-Z, 0-9, '-' and '_'",
            );
        }
        match (&v.address, &v.token) {
            (None, None) => Ok(()),
            (None, Some(_)) => bad("token", "applies only with vault.address"),
            (Some(_), None) => bad("token", "is required with vault.address"),
            (Some(address), Some(_)) => {
                let rest = address
                    .strip_prefix("http://")
                    .or_else(|| address.strip_prefix("https://"));
                if rest.is_none_or(|r| r.is_empty() || r.contains(['?', '#', ' '])) {
                    return bad("address", "must be http(s)://host:port");
                }
                Ok(())
            }
        }
    }

    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("webhooks.{key}: {why}")));
        let w = &self.webhooks;
        let urls = w.url_list();
        for url in &urls {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains([' ', '#'])) {
                return bad("urls", "must be comma-separated http(s):// URLs");
            }
        }
        if !(1..=100).contains(&w.max_attempts) {
            return bad("max_attempts", "must be between 1 and 100");
        }
        if !(10..=3_600_000).contains(&w.retry_base_ms) {
            return bad("retry_base_ms", "must be between 10 and 3600000");
        }
        match (&w.secret, urls.is_empty()) {
            (None, false) => bad("secret", "is required with webhooks.urls"),
            (Some(s), false) if s.expose_secret().chars().count() < 32 => {
                bad("secret", "must be at least 32 characters")
            }
            _ => Ok(()),
        }
    }

    fn validate_object_store(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("object_store.{key}: {why}")));
        let o = &self.object_store;
        let s3 = match o.url.as_deref() {
            None => false,
            Some(url) => {
                if let Some(dir) = url.strip_prefix("file://") {
                    if !dir.starts_with('/') {
                        return bad(
                            "url",
                            "file:// needs an absolute directory (file:///srv/exports)",
                        );
                    }
                    false
                } else if let Some(rest) = url.strip_prefix("s3://") {
                    let bucket = rest.split('/').next().unwrap_or_default();
                    let valid = (3..=63).contains(&bucket.len())
                        && bucket.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')
                        });
                    if !valid {
                        return bad(
                            "url",
                            "s3:// needs a bucket name (3 to 63 of a-z, 0-9, '-', '.')",
                        );
                    }
                    true
                } else {
                    return bad("url", "must start with file:// or s3://");
                }
            }
        };
        let s3_only = [
            ("endpoint", o.endpoint.is_some()),
            ("access_key_id", o.access_key_id.is_some()),
            ("secret_access_key", o.secret_access_key.is_some()),
            ("region", o.region.is_some()),
        ];
        if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set && !s3) {
            return bad(key, "applies to an s3:// url only");
        }
        if let Some(endpoint) = &o.endpoint {
            let rest = endpoint
                .strip_prefix("https://")
                .or_else(|| endpoint.strip_prefix("http://"));
            if rest
                .is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(['?', '#', ' ']))
            {
                return bad("endpoint", "must be an http:// or https:// URL with a host");
            }
        }
        if o.access_key_id.is_some() != o.secret_access_key.is_some() {
            return bad(
                "access_key_id",
                "set access_key_id and secret_access_key together",
            );
        }
        if o.region
            .as_deref()
            .is_some_and(|r| r.is_empty() || r.contains(char::is_whitespace))
        {
            return bad("region", "must be a region name such as us-east-1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use figment::providers::Serialized;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut f = Figment::new();
        for (k, v) in pairs {
            f = f.merge(Serialized::default(k, v));
        }
        Config::from_figment(f)
    }

    #[test]
    fn quarantine_thresholds_default_on_and_are_checked() {
        let q = with(&[]).unwrap().service.quarantine;
        assert!(q.enabled);
        assert_eq!(
            (
                q.multiple,
                q.window_secs,
                q.min_requests,
                q.min_history_windows
            ),
            (10.0, 60, 1000, 3)
        );
        let multiple = |m: f64| {
            Config::from_figment(
                Figment::new().merge(Serialized::default("service.quarantine.multiple", m)),
            )
        };
        let err = multiple(1.0).unwrap_err().to_string();
        assert!(
            err.contains("service.quarantine.multiple: must be more than 1"),
            "{err}"
        );
        assert_eq!(multiple(2.5).unwrap().service.quarantine.multiple, 2.5);
    }

    #[test]
    fn defaults_are_valid() {
        let c = with(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.database_url.starts_with("sqlite://"));
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn zero_intervals_name_their_key() {
        for key in [
            "kafka.message_timeout_secs",
            "service.audit_checkpoint_secs",
            "service.audit_checkpoint_every_events",
        ] {
            let err = Config::from_figment(Figment::new().merge(Serialized::default(key, 0u64)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn kafka_is_off_unless_brokers_are_set() {
        let c = with(&[]).unwrap();
        assert_eq!(c.kafka.brokers, None);
        assert_eq!(c.kafka.audit_topic, "uos.audit.v1");
        assert_eq!(c.kafka.usage_topic, "billing.usage");
        assert_eq!(c.kafka.usage_dlq_topic, "billing.usage.dlq");
        assert_eq!(c.kafka.usage_group, "uos-usage");
        assert!(c.kafka.consume_usage);
        let c = with(&[("kafka.brokers", "k1:9092, k2:9093")]).unwrap();
        assert_eq!(c.kafka.brokers.as_deref(), Some("k1:9092, k2:9093"));
    }

    #[test]
    fn exports_go_to_the_data_dir_unless_a_store_is_named() {
        let c = with(&[("data_dir", "/var/lib/uos")]).unwrap();
        assert_eq!(c.object_store().url, "file:///var/lib/uos/exports");
        let c = with(&[
            ("object_store.url", "s3://audit-exports/uos"),
            ("object_store.endpoint", "http://127.0.0.1:9000"),
            ("object_store.access_key_id", "id"),
            ("object_store.secret_access_key", "secret"),
            ("object_store.region", "eu-west-1"),
        ])
        .unwrap();
        let s = c.object_store();
        assert_eq!(s.url, "s3://audit-exports/uos");
        assert_eq!(s.s3.region.as_deref(), Some("eu-west-1"));
        // The secret never shows in a debug print of the configuration.
        assert!(!format!("{c:?}").contains("secret\""), "{c:?}");
        let err = with(&[
            ("object_store.url", "s3://audit-exports"),
            ("object_store.access_key_id", "id"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("object_store.access_key_id"), "{err}");
        let err = with(&[
            ("object_store.url", "s3://audit-exports"),
            ("object_store.endpoint", "ftp://x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("object_store.endpoint"), "{err}");
    }

    #[test]
    fn transit_is_used_only_with_an_address_and_a_token() {
        assert!(with(&[]).unwrap().transit().is_none());
        let c = with(&[
            ("vault.address", "http://127.0.0.1:8200"),
            ("vault.token", "s.secret-token"),
        ])
        .unwrap();
        let t = c.transit().unwrap();
        assert_eq!(
            (t.mount.as_str(), t.key_prefix.as_str()),
            ("transit", "uos")
        );
        assert!(!format!("{c:?}").contains("secret-token"), "{c:?}");
        assert!(!format!("{t:?}").contains("secret-token"), "{t:?}");
        let err = with(&[("vault.address", "vault:8200"), ("vault.token", "t")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("vault.address"), "{err}");
    }

    #[test]
    fn rate_limits_are_on_and_overridable_per_route() {
        let c = with(&[]).unwrap();
        assert!(c.rate_limit.enabled);
        // As the environment gives them (`UOS_RATE_LIMIT__ROUTES__LOGIN__PER_ADDRESS=100`):
        // figment reads numbers there as numbers.
        let f = Figment::new()
            .merge(Serialized::default(
                "rate_limit.routes.login.per_address",
                100,
            ))
            .merge(Serialized::default(
                "rate_limit.routes.me.route",
                "GET /v1/me",
            ))
            .merge(Serialized::default("rate_limit.routes.me.per_caller", 7))
            .merge(Serialized::default("rate_limit.routes.me.window_secs", 10));
        let c = Config::from_figment(f).unwrap();
        let rules = c.rate_limit.rules().unwrap();
        let login = rules.iter().find(|r| r.name == "login").unwrap();
        assert_eq!(login.per_address, 100);
        let me = rules.iter().find(|r| r.name == "me").unwrap();
        assert_eq!((me.route.as_str(), me.per_caller), ("/v1/me", 7));
        let c = Config::from_figment(
            Figment::new().merge(Serialized::default("rate_limit.enabled", false)),
        )
        .unwrap();
        assert!(c.rate_limit.rules().unwrap().is_empty());
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let list = |v: &[&str]| {
            Config::from_figment(Figment::new().merge(Serialized::default("trusted_proxies", v)))
        };
        let c = list(&["10.0.0.0/8", "192.0.2.7", " ::1 "]).unwrap();
        let nets: Vec<ipnet::IpNet> = ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(c.trusted_proxy_networks(), nets);
        assert!(Config::default().trusted_proxy_networks().is_empty());
        for bad in ["ingress.local", "10.0.0.0/33", ""] {
            let err = list(&["10.0.0.0/8", bad]).unwrap_err().to_string();
            assert!(err.contains("trusted_proxies: "), "{err}");
            assert!(err.contains(&format!("{:?}", bad.trim())), "{err}");
        }
        // As an environment variable the list is written as the README shows; the `Env`
        // provider reads each value as a figment `Value`, parsed here without touching the
        // process's environment (other tests run beside this one).
        let value: figment::value::Value = "[10.0.0.0/8, 192.0.2.7]".parse().unwrap();
        let c = Config::from_figment(
            Figment::new().merge(Serialized::default("trusted_proxies", value)),
        )
        .unwrap();
        assert_eq!(c.trusted_proxy_networks().len(), 2);
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let c = with(&[("public_url", "https://id.example.com/uos/")]).unwrap();
        assert_eq!(c.public_url(), "https://id.example.com/uos");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (k, v, expect) in [
            ("listen", "nowhere", "listen"),
            ("database_url", "mysql://x", "database_url"),
            ("log_format", "xml", "log_format"),
            ("worker_threads", "5000", "worker_threads"),
            ("policy_dir", "/nonexistent/policies", "policy_dir"),
            ("policy_watch_secs", "100000", "policy_watch_secs"),
            ("worker_threads", "-1", "worker_threads"),
            (
                "max_requests_in_progress",
                "2000000",
                "max_requests_in_progress",
            ),
            ("redis_url", "http://x", "redis_url"),
            ("public_url", "id.example.com", "public_url"),
            ("public_url", "https://", "public_url"),
            ("public_url", "https://id.example.com/?x=1", "public_url"),
            ("redis_ca_file", "/etc/ca.pem", "redis_ca_file"),
            ("service.password_min_score", "5", "password_min_score"),
            ("service.lockout.threshold", "0", "service.lockout"),
            (
                "service.quarantine.multiple",
                "1",
                "service.quarantine.multiple",
            ),
            (
                "service.quarantine.window_secs",
                "0",
                "service.quarantine.window_secs",
            ),
            (
                "service.quarantine.min_requests",
                "0",
                "service.quarantine.min_requests",
            ),
            (
                "service.quarantine.min_history_windows",
                "0",
                "service.quarantine.min_history_windows",
            ),
            ("service.quarantine.enabled", "perhaps", "enabled"),
            (
                "bootstrap_admin_email",
                "admin@example.com",
                "bootstrap_admin_email",
            ),
            ("no_such_key", "1", "no_such_key"),
            ("rate_limit.reserve_ms", "0", "rate_limit.reserve_ms"),
            (
                "rate_limit.routes.login.window_secs",
                "0",
                "rate_limit.routes.login.window_secs",
            ),
            (
                "rate_limit.routes.mine.route",
                "GET /v1/me",
                "rate_limit.routes.mine.window_secs",
            ),
            (
                "rate_limit.routes.mine.route",
                "/v1/me",
                "rate_limit.routes.mine.route",
            ),
            ("rate_limit.routes.login.per_adress", "5", "per_adress"),
            ("kafka.brokers", "localhost", "kafka.brokers"),
            ("kafka.brokers", "a:9092,:9092", "kafka.brokers"),
            ("kafka.audit_topic", "audit events", "kafka.audit_topic"),
            ("kafka.usage_topic", "", "kafka.usage_topic"),
            (
                "kafka.usage_dlq_topic",
                "dead/letters",
                "kafka.usage_dlq_topic",
            ),
            (
                "kafka.usage_dlq_topic",
                "billing.usage",
                "kafka.usage_dlq_topic",
            ),
            ("kafka.usage_group", "a group", "kafka.usage_group"),
            ("kafka.consume_usage", "perhaps", "kafka.consume_usage"),
            ("vault.address", "127.0.0.1:8200", "vault.token"),
            ("vault.token", "s.abc", "vault.token"),
            ("vault.transit_mount", "/transit", "vault.transit_mount"),
            ("vault.key_prefix", "a b", "vault.key_prefix"),
            ("object_store.url", "gs://bucket", "object_store.url"),
            (
                "object_store.url",
                "file://relative/dir",
                "object_store.url",
            ),
            ("object_store.url", "s3://", "object_store.url"),
            ("object_store.region", "us-east-1", "object_store.region"),
            (
                "object_store.endpoint",
                "http://minio:9000",
                "object_store.endpoint",
            ),
        ] {
            let err = with(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(expect), "{k}={v}: {err}");
        }
    }
}
