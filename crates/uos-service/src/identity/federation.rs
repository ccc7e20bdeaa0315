//! Login through upstream OIDC providers (authorization-code flow with PKCE, state and nonce).
//!
//! `start` keeps the login in flight in shared state under its `state` (one-time, short-lived,
//! so any replica can take the callback); `callback` takes it back, lets the provider crate
//! verify the code and ID token, then finds or links the local account:
//! an identity already linked logs in as its user; otherwise a *verified* email links to the
//! account with that email, or creates one. A local second factor is still asked for.

use crate::identity::sessions::session_resource;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::TokenView;
use crate::{Ctx, Done, Refusal, Result, ServiceError, Services};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use uos_audit::AuditAction;
use uos_authz::Action;
use uos_domain::{Email, Membership, OrgSlug, OrgStatus, RoleName, User, UserStatus};
use uos_oidc::{ExternalLogin, OidcError, OidcProvider, PendingLogin, ProviderConfig};
use uos_store::ExternalIdentity;

/// How long a login may sit at the provider before its callback is refused.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// The configured providers by name, discovered on first use: a provider that is down when
/// the service starts must not keep the service (or its other providers) from starting.
#[derive(Clone, Debug, Default)]
pub struct OidcProviders {
    configs: Arc<BTreeMap<String, ProviderConfig>>,
    discovered: Arc<tokio::sync::Mutex<HashMap<String, Arc<OidcProvider>>>>,
}

impl OidcProviders {
    pub fn new(configs: BTreeMap<String, ProviderConfig>) -> Self {
        Self {
            configs: Arc::new(configs),
            discovered: Arc::default(),
        }
    }

    async fn get(&self, name: &str) -> Result<Arc<OidcProvider>> {
        let cfg = self.configs.get(name).ok_or(ServiceError::NotFound)?;
        let mut found = self.discovered.lock().await;
        if let Some(p) = found.get(name) {
            return Ok(Arc::clone(p));
        }
        let p = OidcProvider::discover(name, cfg.clone())
            .await
            .map_err(|e| ServiceError::Unavailable(format!("oidc provider {name}: {e}")))?;
        let p = Arc::new(p);
        found.insert(name.to_string(), Arc::clone(&p));
        Ok(p)
    }
}

fn pending_key(state: &str) -> String {
    format!("oidc:{}", uos_authn::hash_token(state))
}

fn refused(e: &OidcError) -> ServiceError {
    match e {
        OidcError::EmailDomainNotAllowed(_) => ServiceError::refused(
            Refusal::EmailDomainNotAllowed,
            "the provider's email address is not in an allowed domain",
        ),
        OidcError::EmailMissing | OidcError::EmailNotVerified => ServiceError::refused(
            Refusal::EmailUnverified,
            "the provider did not give a verified email address",
        ),
        OidcError::Unavailable(_) | OidcError::Discovery(_) => {
            ServiceError::Unavailable(format!("oidc provider: {e}"))
        }
        other => {
            tracing::info!(error = %other, "upstream login refused");
            ServiceError::refused(
                Refusal::FederationFailed,
                "the upstream login could not be verified",
            )
        }
    }
}

impl Services {
    /// Where to send the browser to log in at `provider`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn oidc_start(&self, ctx: &Ctx, provider: &str) -> Result<String> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::AuthOidc, session_resource())?;
        let p = inner.identity.oidc.get(provider).await?;
        let (url, pending) = p.start();
        let value = serde_json::to_string(&pending)
            .map_err(|e| ServiceError::Internal(format!("pending login: {e}")))?;
        inner
            .shared
            .put_once(&pending_key(&pending.state), &value, PENDING_TTL)
            .await?;
        Ok(url)
    }

    /// The provider sent the browser back: verify, find or link the account, log in.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn oidc_callback(
        &self,
        ctx: &Ctx,
        provider: &str,
        code: &str,
        state: &str,
        iss: Option<&str>,
    ) -> Result<Done<TokenView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthOidc, session_resource())?;
        let p = inner.identity.oidc.get(provider).await?;
        let pending: PendingLogin = inner
            .shared
            .take(&pending_key(state))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .filter(|pl: &PendingLogin| pl.provider == provider)
            .ok_or_else(|| {
                ServiceError::refused(
                    Refusal::InvalidState,
                    "unknown, expired or already used login state; start again",
                )
            })?;
        // RFC 9207: the callback names the issuer that answered, so a mix-up with another
        // provider is caught before the code goes anywhere.
        p.check_callback_issuer(iss).map_err(|e| refused(&e))?;
        let login = p.finish(pending, code).await.map_err(|e| refused(&e))?;
        let user = self
            .federated_user(ctx, &cap, provider, p.config(), &login)
            .await?;
        if !user.status.may_log_in() {
            return Err(ServiceError::InvalidCredentials);
        }
        if self.has_second_factor(&user).await? {
            return Err(self.mfa_challenge(ctx, &cap, &user).await?);
        }
        self.start_session(ctx, &cap, &user, &format!("oidc:{provider}"))
            .await
    }

    /// The local account of an upstream login: linked before, linked now by verified email,
    /// or created. Applies the provider's org auto-join.
    async fn federated_user(
        &self,
        ctx: &Ctx,
        cap: &uos_authz::Capability,
        provider: &str,
        cfg: &ProviderConfig,
        login: &ExternalLogin,
    ) -> Result<User> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let now = uos_domain::now();
        let linked = uow
            .tx()
            .get_external_identity(&login.issuer, &login.subject)
            .await?;
        let user = match linked {
            Some(x) => uow
                .tx()
                .get_user(x.user_id)
                .await?
                .ok_or(ServiceError::InvalidCredentials)?,
            None => {
                // Linking by email is only safe when the provider vouches for the address.
                let email = login
                    .email
                    .as_deref()
                    .filter(|_| login.email_verified)
                    .and_then(|e| Email::parse(e).ok())
                    .ok_or_else(|| {
                        ServiceError::refused(
                            Refusal::EmailUnverified,
                            "the provider did not give a verified email address",
                        )
                    })?;
                let user = match uow.tx().get_user_by_email(&email).await? {
                    Some(u) => u,
                    None => {
                        let mut u = User::new(email.clone(), UserStatus::Active, now);
                        u.display_name = login.name.clone().filter(|n| !n.trim().is_empty());
                        uow.create_user(&u).await?;
                        u
                    }
                };
                uow.tx()
                    .insert_external_identity(&ExternalIdentity {
                        issuer: login.issuer.clone(),
                        subject: login.subject.clone(),
                        user_id: user.id,
                        email: email.to_string(),
                        created_at: now,
                    })
                    .await?;
                uow.record(
                    AuditAction::IdentityLinked,
                    None,
                    user.id.to_string(),
                    serde_json::Value::Null,
                    serde_json::json!({"provider": provider, "issuer": login.issuer, "subject": login.subject}),
                )
                .await?;
                user
            }
        };
        if let Some(join) = &cfg.auto_join {
            self.auto_join(&mut uow, &user, &join.org, &join.roles)
                .await?;
        }
        uow.commit_unanswered(cap).await?;
        Ok(user)
    }

    /// Make the user a member of the provider's org, unless they already are (in any state:
    /// a suspended membership stays suspended).
    async fn auto_join(
        &self,
        uow: &mut UnitOfWork<'_>,
        user: &User,
        org: &str,
        roles: &[String],
    ) -> Result<()> {
        let (Ok(slug), Ok(roles)) = (
            OrgSlug::parse(org),
            roles
                .iter()
                .map(|r| RoleName::parse(r))
                .collect::<Result<Vec<_>, _>>(),
        ) else {
            tracing::warn!(org, "oidc auto_join is misconfigured; skipped");
            return Ok(());
        };
        let Some(org) = uow.tx().get_org_by_slug(&slug).await? else {
            tracing::warn!(%slug, "oidc auto_join org does not exist; skipped");
            return Ok(());
        };
        if org.status != OrgStatus::Active
            || uow.tx().get_membership(org.id, user.id).await?.is_some()
        {
            return Ok(());
        }
        uow.add_member(&Membership::new(org.id, user.id, roles, uos_domain::now()))
            .await
    }
}
