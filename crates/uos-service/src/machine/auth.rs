//! Authenticating service accounts on a request: API keys (`uos_…`) and client-credentials
//! access tokens. Both resolve to a [`Caller::Machine`] whose permissions are the account's
//! expanded role permissions narrowed to the credential's scopes, and both are served from a
//! per-replica cache that every revocation evicts on every replica.
//!
//! Uses of keys are recorded in memory and written in batches (`last_used_at`); refused uses of
//! revoked, expired or rotated-out keys are audited at most once per key and minute.

use crate::kernel::access::expand_roles;
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::IntrospectionView;
use crate::machine::cache::{KeyEntry, TokenEntry};
use crate::machine::surge::KeyRate;
use crate::orgs::cache::OrgRef;
use crate::{AuthMachine, Caller, Ctx, MachineCredential, Refusal, Result, ServiceError, Services};
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uos_audit::AuditAction;
use uos_authn::{parse_api_key, verify_api_key, verify_client_token, ClientClaims};
use uos_authz::Action;
use uos_domain::{ApiKey, ApiKeyId, KeyRefusal, OrgStatus, ServiceAccount};
use uos_store::ReadTx;

/// Refused uses of one key are audited at most this often: a client retrying a revoked key
/// in a loop must not fill the audit log.
const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(60);

/// Recent uses of API keys, written to the store in one statement per flush.
#[derive(Debug, Default)]
pub(crate) struct UsageRecorder {
    pending: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
    /// Local half of the refusal rate limit (the shared half keeps replicas from repeating
    /// each other); bounded like the caches.
    refusals: Mutex<HashMap<ApiKeyId, Instant>>,
}

impl UsageRecorder {
    fn note(&self, id: ApiKeyId, at: DateTime<Utc>) {
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let t = m.entry(id).or_insert(at);
        *t = (*t).max(at);
    }

    fn take(&self) -> Vec<(ApiKeyId, DateTime<Utc>)> {
        let mut m = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        m.drain().collect()
    }

    /// Whether this replica should audit a refusal of `id` now.
    fn refusal_due(&self, id: ApiKeyId) -> bool {
        let mut m = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            m.retain(|_, at| at.elapsed() < REFUSAL_AUDIT_EVERY);
        }
        match m.get(&id) {
            Some(at) if at.elapsed() < REFUSAL_AUDIT_EVERY => false,
            _ => {
                m.insert(id, Instant::now());
                true
            }
        }
    }
}

/// Permissions a credential may use: what the account's roles grant, limited to `scopes`.
pub(crate) fn narrowed(role_permissions: &BTreeSet<String>, scopes: &[String]) -> Vec<String> {
    scopes
        .iter()
        .filter(|s| role_permissions.contains(*s))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Services {
    async fn machine_caller(
        &self,
        r: &mut dyn ReadTx,
        account: ServiceAccount,
        scopes: Vec<String>,
        credential: MachineCredential,
    ) -> Result<Arc<AuthMachine>> {
        let (roles, perms) =
            expand_roles(&mut LazyRead::over(&mut *r), account.org_id, &account.roles).await?;
        // From the replica's copy of the org: a cold key then costs one statement (its own row)
        // once its account and org were read by any key. The copy is no older than this entry
        // may live, and an org change evicts both.
        let max_age = Duration::from_secs(self.inner.cfg.auth_cache_secs);
        let org = self
            .inner
            .cached_org(&mut LazyRead::over(r), &OrgRef::Id(account.org_id), max_age)
            .await;
        let org_active = match org {
            Ok(org) => org.status == OrgStatus::Active,
            Err(ServiceError::NotFound) => false,
            Err(e) => return Err(e),
        };
        Ok(Arc::new(AuthMachine {
            org_active,
            permissions: narrowed(&perms, &scopes),
            roles: roles.into_iter().collect(),
            scopes,
            account,
            credential,
        }))
    }

    /// The cached entry of the key with this prefix, loading it on a miss.
    async fn key_entry(&self, prefix: &str) -> Result<Option<Arc<KeyEntry>>> {
        let cache = &self.inner.machine.cache;
        if let Some(hit) = cache.key(prefix) {
            return Ok(hit);
        }
        let ticket = cache.fill_ticket();
        let mut r = self.inner.store.read().await?;
        let found = match r.get_api_key_by_prefix(prefix).await? {
            None => None,
            Some(key) => match self
                .inner
                .cached_account(&mut LazyRead::over(&mut *r), None, key.service_account_id)
                .await?
            {
                None => None,
                Some(account) => {
                    let account = ServiceAccount::clone(&account);
                    let scopes = key.scopes.iter().map(|p| p.as_str().to_string()).collect();
                    let credential = MachineCredential::ApiKey {
                        id: key.id,
                        prefix: key.prefix.clone(),
                    };
                    let caller = self
                        .machine_caller(&mut *r, account, scopes, credential)
                        .await?;
                    let rate = self.key_rate(&key.prefix);
                    Some(Arc::new(KeyEntry {
                        key,
                        caller,
                        noted_at: 0.into(),
                        rate,
                    }))
                }
            },
        };
        cache.put_key(ticket, prefix, found.clone());
        Ok(found)
    }

    /// The request counter of the key with `prefix` (its history on this replica, if any), when
    /// quarantine detection is on.
    fn key_rate(&self, prefix: &str) -> Option<Arc<KeyRate>> {
        let surge = self.inner.machine.surge.as_ref()?;
        Some(surge.rate(prefix, uos_domain::now().timestamp()))
    }

    /// An API key that is well formed, known, matches its stored hash, and may be used now,
    /// with the caller it authenticates. Malformed keys fail before any lookup. A quarantined
    /// key (with the right secret) is the error `api_key_quarantined`, so its holder learns
    /// why; every other refusal looks like an unknown key.
    ///
    /// Each use counts towards the key's request rate; the use that trips the quarantine is
    /// still allowed, and the quarantine is recorded by a task of its own (see
    /// [`crate::machine::quarantine`]), so no request waits on a store write here.
    async fn usable_key(
        &self,
        raw: &str,
        ctx: Option<impl FnOnce() -> Ctx>,
    ) -> Result<Option<Arc<KeyEntry>>> {
        let Ok(parsed) = parse_api_key(raw) else {
            return Ok(None);
        };
        let Some(entry) = self.key_entry(parsed.prefix).await? else {
            return Ok(None);
        };
        if !verify_api_key(
            &self.inner.machine.api_key_pepper,
            parsed.full,
            &entry.key.secret_hash,
        ) {
            return Ok(None);
        }
        let now = uos_domain::now();
        let account = &entry.caller.account;
        let key_refusal = entry.key.refusal(&account.rotation, now);
        let refusal = match key_refusal {
            Some(r) => Some(r.as_str()),
            None if !account.is_usable() => Some("account_disabled"),
            None if !entry.caller.org_active => Some("org_inactive"),
            None => None,
        };
        if let Some(reason) = refusal {
            if let Some(ctx) = ctx {
                self.audit_refusal(&ctx(), &entry.key, reason).await;
            }
            if key_refusal == Some(KeyRefusal::Quarantined) {
                return Err(ServiceError::refused(
                    Refusal::ApiKeyQuarantined,
                    "this API key is quarantined after a spike in its request rate; an admin \
                     of its organization can release it",
                ));
            }
            return Ok(None);
        }
        let secs = now.timestamp();
        if entry.noted_at.swap(secs, Ordering::Relaxed) != secs {
            self.inner.machine.usage.note(entry.key.id, now);
        }
        if let Some(trip) = entry.rate.as_ref().and_then(|rate| rate.hit(secs)) {
            let ctx = ctx.map_or_else(|| Ctx::system(String::new()), |ctx| ctx());
            self.spawn_quarantine(ctx, Arc::clone(&entry), trip);
        }
        Ok(Some(entry))
    }

    /// Authenticate a bearer API key.
    pub(crate) async fn authenticate_api_key(
        &self,
        raw: &str,
        ctx: impl FnOnce() -> Ctx,
    ) -> Result<Caller> {
        match self.usable_key(raw, Some(ctx)).await? {
            Some(entry) => Ok(Caller::Machine(Arc::clone(&entry.caller))),
            None => Err(ServiceError::Unauthenticated),
        }
    }

    /// A client-credentials token that verifies, is not revoked, and whose account may still
    /// act, with its caller.
    async fn usable_client_token(&self, token: &str) -> Result<Option<Arc<TokenEntry>>> {
        let inner = &*self.inner;
        let now = uos_domain::now();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entry = match inner.machine.cache.token(&digest) {
            Some(e) => e,
            None => {
                let ticket = inner.machine.cache.fill_ticket();
                let Ok(claims) = inner.verify_token(|keys| {
                    verify_client_token(token, keys, &inner.cfg.issuer, now.timestamp())
                }) else {
                    return Ok(None);
                };
                let mut r = inner.store.read().await?;
                if r.is_access_token_revoked(claims.jti).await? {
                    return Ok(None);
                }
                let account = inner
                    .cached_account(
                        &mut LazyRead::over(&mut *r),
                        Some(uos_domain::OrgId(claims.org)),
                        uos_domain::ServiceAccountId(claims.sub),
                    )
                    .await?;
                let Some(account) = account else {
                    return Ok(None);
                };
                let account = ServiceAccount::clone(&account);
                let scopes = claims.scope.split(' ').map(str::to_string).collect();
                let credential = MachineCredential::ClientToken { jti: claims.jti };
                let caller = self
                    .machine_caller(&mut *r, account, scopes, credential)
                    .await?;
                let entry = Arc::new(TokenEntry { claims, caller });
                inner
                    .machine
                    .cache
                    .put_token(ticket, digest, Arc::clone(&entry));
                entry
            }
        };
        let ok = entry.claims.exp > now.timestamp()
            && entry.caller.account.is_usable()
            && entry.caller.org_active;
        Ok(ok.then_some(entry))
    }

    /// Authenticate a bearer client-credentials access token.
    pub(crate) async fn authenticate_client_token(&self, token: &str) -> Result<Caller> {
        match self.usable_client_token(token).await? {
            Some(entry) => Ok(Caller::Machine(Arc::clone(&entry.caller))),
            None => Err(ServiceError::Unauthenticated),
        }
    }

    /// RFC 7662 answer for an API key or a client-credentials token; `None` if `token` is
    /// neither kind.
    pub(crate) async fn introspect_machine(
        &self,
        token: &str,
    ) -> Result<Option<IntrospectionView>> {
        if uos_authn::looks_like_api_key(token) {
            let entry = match self.usable_key(token, None::<fn() -> Ctx>).await {
                Ok(Some(entry)) => entry,
                Ok(None)
                | Err(ServiceError::Refused {
                    code: Refusal::ApiKeyQuarantined,
                    ..
                }) => return Ok(Some(IntrospectionView::default())),
                Err(e) => return Err(e),
            };
            let k = &entry.key;
            return Ok(Some(IntrospectionView {
                active: true,
                token_type: Some("api_key".into()),
                sub: Some(k.service_account_id.to_string()),
                iat: Some(k.created_at.timestamp()),
                exp: k.expires_at.map(|t| t.timestamp()),
                scope: Some(entry.caller.permissions.join(" ")),
                client_id: Some(k.service_account_id.to_string()),
                org_id: Some(k.org_id.0),
                ..IntrospectionView::default()
            }));
        }
        if uos_authn::token_type(token) != Some(uos_authn::TokenKind::Client) {
            return Ok(None);
        }
        let Some(entry) = self.usable_client_token(token).await? else {
            return Ok(Some(IntrospectionView::default()));
        };
        let c: &ClientClaims = &entry.claims;
        Ok(Some(IntrospectionView {
            active: true,
            token_type: Some("access_token".into()),
            sub: Some(c.sub.to_string()),
            iss: Some(c.iss.clone()),
            exp: Some(c.exp),
            iat: Some(c.iat),
            jti: Some(c.jti.to_string()),
            scope: Some(entry.caller.permissions.join(" ")),
            client_id: Some(c.client_id.clone()),
            org_id: Some(c.org),
            ..IntrospectionView::default()
        }))
    }

    /// Record a refused use of a key whose secret was right (revoked, expired, rotated out,
    /// overdue, account disabled). At most once per key and minute across replicas; a failure
    /// to record never turns the refusal into something else.
    async fn audit_refusal(&self, ctx: &Ctx, key: &ApiKey, reason: &str) {
        let inner = &*self.inner;
        if !inner.machine.usage.refusal_due(key.id) {
            return;
        }
        let marker = format!("apikey-refusal:{}", key.id);
        match inner
            .shared
            .put_once(&marker, "1", REFUSAL_AUDIT_EVERY)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "refusal rate limit unavailable; auditing anyway");
            }
        }
        let cap = inner.authz.system_task(Action::ApiKeyRead);
        let result = async {
            let mut uow = UnitOfWork::begin(inner, ctx).await?;
            uow.record(
                AuditAction::ApiKeyRefused,
                Some(key.org_id),
                key.id.to_string(),
                serde_json::Value::Null,
                serde_json::json!({
                    "reason": reason,
                    "prefix": key.prefix,
                    "service_account_id": key.service_account_id,
                    "ip": ctx.ip,
                    "user_agent": ctx.user_agent,
                }),
            )
            .await?;
            uow.commit_unanswered(&cap).await
        };
        if let Err(e) = result.await {
            tracing::warn!(error = %e, "could not audit a refused API key");
        }
    }

    /// Write the recorded key uses (`last_used_at`) in one statement. Runs periodically and at
    /// shutdown; a failed write puts the uses back for the next attempt.
    pub async fn flush_api_key_usage(&self) -> Result<usize> {
        let batch = self.inner.machine.usage.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let write = async {
            let mut tx = self.inner.store.begin().await?;
            tx.touch_api_keys(&batch).await?;
            tx.commit().await
        };
        if let Err(e) = write.await {
            for (id, at) in &batch {
                self.inner.machine.usage.note(*id, *at);
            }
            return Err(e.into());
        }
        Ok(batch.len())
    }
}
