//! Use cases of user-org-service. Each write is one unit of work: authorize, change, record the
//! audit event and the idempotency response, commit — all in one store transaction.
//!
//! The HTTP layer calls these with a [`Ctx`] (who is calling, request id, idempotency ticket);
//! nothing here knows about HTTP beyond the numeric status a replayed response must carry.
//!
//! One folder per context: `kernel` (what every use case stands on: context, errors, the unit
//! of work, authorization and idempotency helpers, preconditions, views), `identity` (people,
//! sessions, credentials), `machine` (service accounts, API keys, client credentials), `orgs`
//! (orgs, members, invites, roles) and `audit` (reading the trail). Each context keeps its
//! per-replica state in one struct of the facade's shared state.

mod approvals;
mod audit;
mod budgets;
mod declarative;
mod identity;
mod kernel;
mod machine;
mod notify;
mod orgs;
mod policy;
mod retention;

pub use kernel::precondition::Precondition;
pub use kernel::views;
/// The cross-replica state port, for the transport's rate limiter (its adapter is chosen by the
/// composition root).
pub use uos_shared::SharedState;

pub use approvals::break_glass::{
    GrantUses, NewBreakGlass, MAX_BREAK_GLASS_MINUTES, MAX_BREAK_GLASS_ROLES,
};
pub use approvals::overrides::{NewOverride, MAX_OVERRIDE_HOURS};
pub use approvals::APPROVAL_REASON_MAX_CHARS;
pub use approvals::{parse_status, ApprovalStep};
pub use audit::relay::RelayStats;
pub use budgets::manage::{BudgetTarget, NewBudget};
pub use budgets::usage::{UsageReport, MAX_USAGE_BATCH, SOURCE_EVENT_ID_MAX_CHARS};
pub use declarative::{
    AttemptView, DeclaredStatusView, DriftDifference, DriftView, NotApplied, PauseView, PushSecret,
    Step, PAUSE_REASON_MAX_CHARS,
};
pub use identity::auth::Bootstrap;
pub use identity::federation::OidcProviders;
pub use identity::me::ProfilePatch;
pub use identity::passwords::PASSWORD_MAX_LEN;
pub use identity::users::REASON_MAX_CHARS;
pub use kernel::config::{LockoutConfig, QuarantineConfig, ServiceConfig};
pub use kernel::ctx::{
    AuthMachine, AuthUser, Caller, Ctx, DeclaredSource, IdemTicket, MachineCredential,
};
pub use kernel::error::{FieldError, GoneReason, Refusal, ServiceError};
pub use kernel::idempotency::IdemOutcome;
pub use kernel::rate_limit::{
    RateLimitConfig, RateLimitConfigError, RouteLimit, RouteLimitSettings, DEFAULT_RULES,
};
pub use kernel::uow::Done;
pub use machine::api_keys::{NewApiKey, MAX_ROTATION_OVERLAP_SECS};
pub use machine::oauth::{OAuthError, TokenRequest};
pub use machine::service_accounts::{NewServiceAccount, ServiceAccountPatch};
pub use notify::Webhooks;
pub use orgs::invites::NewInvite;
pub use orgs::lifecycle::OrgMove;
pub use orgs::members::MAX_ROLES;
pub use orgs::roles::{is_valid_description, NewRole, RolePatch, DESCRIPTION_MAX_CHARS};
pub use policy::bundle::ReloadTrigger;
pub use policy::decide::{DecisionRequest, PrincipalRef, MAX_DECISION_BATCH, NAME_MAX_CHARS};
pub use retention::{PurgeReport, HOLD_REASON_MAX_CHARS};
/// The usage consumer's figures, for `/metrics`.
pub use uos_events::UsageStreamCounts;

use audit::exports::ExportState;
use audit::relay::RelayState;
use identity::cache::AuthCache;
use identity::hashpool::HashPool;
use identity::IdentityState;
use kernel::ChainMemory;
use machine::auth::UsageRecorder;
use machine::cache::MachineCache;
use machine::MachineState;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uos_authn::PasswordHasher;
use uos_authn::TokenError;
use uos_authz::Authorizer;
use uos_keys::{KeyProvider, KeyPurpose};
use uos_mail::Mailer;
use uos_store::Store;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The service facade: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct Services {
    inner: Arc<Inner>,
}

/// The outside systems the use cases talk to, each behind its port (embedded default or
/// production adapter, chosen by configuration).
#[derive(Clone, Debug)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub keys: Arc<dyn KeyProvider>,
    /// Counters, one-time state and the invalidation fan-out shared by all replicas.
    pub shared: Arc<dyn SharedState>,
    pub mailer: Arc<dyn Mailer>,
    /// Where committed audit events are published; `None`: nowhere (the embedded default).
    pub events: Option<Arc<dyn uos_events::AuditPublisher>>,
    /// Where audit export files are kept (a local directory or an S3-compatible bucket).
    pub objects: Arc<dyn uos_objects::ObjectStore>,
    /// Where notifications (budget state changes) are sent; `None`: nowhere.
    pub webhooks: Option<Webhooks>,
    /// The secret Git hosts sign push webhooks with (`declarative.webhook_secret`); `None`:
    /// the webhook endpoint answers 404.
    pub push_secret: Option<PushSecret>,
}

/// The shared state of every use case: the ports, the policy engine and configuration, then
/// each context's per-replica state.
#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyProvider>,
    shared: Arc<dyn SharedState>,
    mailer: Arc<dyn Mailer>,
    push_secret: Option<PushSecret>,
    authz: Authorizer,
    cfg: ServiceConfig,
    /// This process among the replicas (the relay lease's holder).
    replica_id: String,
    chain: ChainMemory,
    /// Unwrapped keys of the data subjects whose personal data audit events encrypt.
    subjects: audit::personal::SubjectKeys,
    relay: RelayState,
    exports: ExportState,
    identity: IdentityState,
    machine: MachineState,
    /// Copies of budget statuses the decision point answers from.
    budgets: budgets::book::BudgetBook,
    /// Copies of orgs the decision point and admin reads answer from.
    orgs: orgs::cache::OrgBook,
    /// Copies of users, memberships and service accounts admin reads answer from.
    reads: kernel::reads::ReadCache,
    /// The usage consumer's figures and lease.
    usage_stream: budgets::stream::StreamState,
    policy: policy::PolicyStats,
    /// Allows signed within the last second, by everything they say (`policy::reuse`).
    signed_allows: policy::reuse::SignedAllows,
    webhooks: Option<Webhooks>,
    /// Woken when a delivery was queued on this replica.
    webhook_due: tokio::sync::Notify,
    /// Break-glass grants in force, as authorization reads them.
    grants: approvals::break_glass::GrantBook,
    /// The receiving end of the grant uses no unit of work recorded, until the recorder
    /// task takes it.
    grant_uses: std::sync::Mutex<
        Option<tokio::sync::mpsc::UnboundedReceiver<approvals::break_glass::GrantUse>>,
    >,
}

/// How often a token signed by a key this replica does not know may trigger a key reload.
const KEY_RELOAD_EVERY: Duration = Duration::from_secs(1);

impl Inner {
    /// Drop cached state a change made stale, in every per-replica cache. `Everything` covers
    /// the signing keys too: a replica that rotated them says so, and one that missed
    /// messages may have missed a rotation.
    fn evict(&self, msg: &uos_shared::Invalidation) {
        if matches!(msg, uos_shared::Invalidation::Everything) {
            self.reload_keys();
        }
        self.identity.cache.apply(msg);
        self.machine.cache.apply(msg);
        self.reads.apply(msg);
        // A released (or revoked, rotated) key starts over: no history, armed again.
        if let (uos_shared::Invalidation::ApiKey(prefix), Some(surge)) = (msg, &self.machine.surge)
        {
            surge.forget(prefix);
        }
        // A purge destroys subject keys: a replica must stop decrypting with them.
        match msg {
            uos_shared::Invalidation::User(id) => self.subjects.forget_user(*id),
            uos_shared::Invalidation::Org(id) => {
                self.subjects.forget_emails();
                self.orgs.forget(uos_domain::OrgId(*id));
            }
            uos_shared::Invalidation::Everything => {
                self.subjects.clear();
                self.orgs.clear();
            }
            _ => {}
        }
    }

    /// Pick up signing keys another replica rotated; true if they changed. Verified tokens
    /// are then dropped from the caches, since a key may have been retired.
    fn reload_keys(&self) -> bool {
        match self.keys.reload() {
            Ok(true) => {
                tracing::info!("signing keys reloaded after a rotation elsewhere");
                self.identity.cache.clear();
                self.machine
                    .cache
                    .apply(&uos_shared::Invalidation::Everything);
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "signing keys not reloaded; keeping those loaded");
                false
            }
        }
    }

    /// `verify` against the access-token keys; if the token names a key this replica has not
    /// loaded, once more after a reload. That covers a rotation whose fan-out message never
    /// arrived (Redis was down). At most one such reload a second, so made-up key ids cannot
    /// turn into disk reads.
    fn verify_token<T>(
        &self,
        verify: impl Fn(&[uos_keys::PublicKey]) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let first = verify(&self.keys.public_keys(KeyPurpose::AccessToken));
        if !matches!(first, Err(TokenError::UnknownKey)) {
            return first;
        }
        {
            let mut last = self
                .identity
                .last_key_reload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < KEY_RELOAD_EVERY) {
                return first;
            }
            *last = Some(Instant::now());
        }
        if !self.reload_keys() {
            return first;
        }
        verify(&self.keys.public_keys(KeyPurpose::AccessToken))
    }

    /// `n` audit events were committed on this replica: they count towards the next
    /// checkpoint, and the relay has something to publish.
    fn appended(&self, n: u64) {
        self.chain
            .note_appended(n, self.cfg.audit_checkpoint_every_events);
        self.relay.wake();
    }

    fn evict_all(&self) {
        self.evict(&uos_shared::Invalidation::Everything);
    }
}

impl Services {
    pub fn new(
        ports: Ports,
        authz: Authorizer,
        cfg: ServiceConfig,
        oidc: OidcProviders,
    ) -> Result<Self> {
        let hasher = PasswordHasher::new(cfg.password_hashing)
            .map_err(|e| ServiceError::Internal(format!("password hasher: {e}")))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hashes = HashPool::new(&hasher, cores)
            .map_err(|e| ServiceError::Internal(format!("hashing threads: {e}")))?;
        let ttl = Duration::from_secs(cfg.auth_cache_secs);
        let api_key_pepper = ports
            .keys
            .secret("api-key-pepper")
            .map_err(|e| ServiceError::Internal(format!("api key pepper: {e}")))?;
        let budget_cache_ms = cfg.budget_cache_ms;
        let (use_sink, uses) = tokio::sync::mpsc::unbounded_channel();
        let surge = machine::surge::Detector::new(&cfg.quarantine);
        let email_secret = ports
            .keys
            .secret(audit::personal::EMAIL_SECRET)
            .map_err(|e| ServiceError::Internal(format!("audit subject secret: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store: ports.store,
                keys: ports.keys,
                shared: ports.shared,
                mailer: ports.mailer,
                push_secret: ports.push_secret,
                authz,
                cfg,
                replica_id: uuid::Uuid::now_v7().to_string(),
                chain: ChainMemory::default(),
                subjects: audit::personal::SubjectKeys::new(email_secret),
                relay: RelayState::new(ports.events),
                exports: ExportState::new(ports.objects),
                identity: IdentityState {
                    hashes,
                    cache: AuthCache::new(ttl),
                    oidc,
                    last_key_reload: std::sync::Mutex::default(),
                },
                machine: MachineState {
                    cache: MachineCache::new(ttl),
                    usage: UsageRecorder::default(),
                    api_key_pepper,
                    overdue_keys: AtomicI64::new(0),
                    surge,
                },
                budgets: budgets::book::BudgetBook::new(Duration::from_millis(budget_cache_ms)),
                // Entity copies: every change evicts them on every replica through the
                // fan-out, so the TTL only bounds a lost message, as the auth cache's does.
                orgs: orgs::cache::OrgBook::new(ttl.max(Duration::from_millis(budget_cache_ms))),
                reads: kernel::reads::ReadCache::new(ttl),
                usage_stream: budgets::stream::StreamState::default(),
                policy: policy::PolicyStats::default(),
                signed_allows: policy::reuse::SignedAllows::default(),
                webhooks: ports.webhooks,
                webhook_due: tokio::sync::Notify::new(),
                grants: approvals::break_glass::GrantBook::new(use_sink),
                grant_uses: std::sync::Mutex::new(Some(uses)),
            }),
        })
    }

    /// Evict cached credentials when any replica says so. Runs until the process ends.
    fn spawn_invalidation_listener(&self) {
        let inner = Arc::clone(&self.inner);
        let mut rx = inner.shared.subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(msg) => inner.evict(&msg),
                    // Missed messages could have been revocations: drop everything.
                    Err(RecvError::Lagged(_)) => inner.evict_all(),
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    /// Start the background work of a replica: the invalidation listener, the audit
    /// checkpoint issuer, relay and export worker, the periodic write of API-key uses, and the
    /// rotation sweep. Must be called once from within the runtime.
    pub fn spawn_background(&self) {
        self.spawn_invalidation_listener();
        self.spawn_checkpoint_issuer();
        self.spawn_relay();
        self.spawn_export_worker();
        self.spawn_purge_sweep();
        self.spawn_webhook_worker();
        self.spawn_expiry_sweep();
        let uses = self
            .inner
            .grant_uses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(uses) = uses {
            tokio::spawn(approvals::break_glass::run_use_recorder(self.clone(), uses));
        }
        let cfg = &self.inner.cfg;
        let svc = self.clone();
        let every = Duration::from_secs(cfg.api_key_usage_flush_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = svc.flush_api_key_usage().await {
                    tracing::warn!(error = %e, "could not record API key uses; retrying");
                }
                if let Some(surge) = &svc.inner.machine.surge {
                    surge.forget_idle(uos_domain::now().timestamp());
                }
            }
        });
        let svc = self.clone();
        let every = Duration::from_secs(cfg.rotation_sweep_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = svc.sweep_api_keys().await {
                    tracing::warn!(error = %e, "rotation sweep failed; retrying");
                }
            }
        });
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn shared(&self) -> &Arc<dyn SharedState> {
        &self.inner.shared
    }

    /// Audit appends so far that chained from a stale remembered head and had to lock the
    /// head and chain again (the metric's value): how often replicas and concurrent writes
    /// contend for the chain.
    pub fn audit_head_conflicts(&self) -> u64 {
        self.inner.chain.conflicts()
    }

    /// Decisions allowed and denied by the decision point on this replica so far.
    pub fn decision_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        let p = &self.inner.policy;
        (
            p.allowed.load(Ordering::Relaxed),
            p.denied.load(Ordering::Relaxed),
        )
    }

    /// Of the denials so far, those a budget caused (at least one `budget_exceeded` reason).
    pub fn budget_denials(&self) -> u64 {
        self.inner
            .policy
            .budget_denied
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.cfg
    }
}
