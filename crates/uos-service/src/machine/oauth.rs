//! OAuth2 for service accounts: the client-credentials grant (RFC 6749 §4.4) and token
//! revocation (RFC 7009).
//!
//! oxide-auth's client-credentials state machine checks the request itself (grant type, one
//! and only one client authentication, scope syntax) and asks us, step by step, to
//! authenticate the client, bind it and negotiate the scope; we answer from the store and
//! issue our own EdDSA access token (`typ: at+jwt`), which every replica verifies like any
//! other bearer credential. Errors on these endpoints are OAuth2 bodies, not problem+json.

use crate::kernel::access::{expand_roles, org_is_active};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::OAuthTokenView;
use crate::{AuthMachine, Caller, Ctx, MachineCredential, Result, ServiceError, Services};
use oxide_auth::code_grant::client_credentials::{
    ClientCredentials, Error as FlowError, Input, Output, Request as FlowRequest,
};
use oxide_auth::code_grant::error::AccessTokenErrorType;
use oxide_auth::primitives::grant::Extensions;
use oxide_auth::primitives::registrar::{BoundClient, PreGrant, RegisteredUrl};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use uos_audit::AuditAction;
use uos_authn::{issue_client_token, ClientClaims};
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{ServiceAccount, ServiceAccountId};
use uos_keys::KeyPurpose;
use uos_store::ReadTx;

/// A token-endpoint request as the transport received it.
#[derive(Debug, Default)]
pub struct TokenRequest {
    /// `client_id` and `client_secret` from an HTTP Basic header, already form-decoded
    /// (RFC 6749 §2.3.1).
    pub basic: Option<(String, String)>,
    /// Form fields; the transport refuses repeated fields (`valid = false`).
    pub form: HashMap<String, String>,
    /// Whether the body was a well-formed form without repeated fields.
    pub valid: bool,
}

impl FlowRequest for TokenRequest {
    fn valid(&self) -> bool {
        self.valid
    }

    fn authorization(&self) -> Option<(Cow<'_, str>, Cow<'_, [u8]>)> {
        self.basic
            .as_ref()
            .map(|(id, secret)| (Cow::Borrowed(id.as_str()), Cow::Borrowed(secret.as_bytes())))
    }

    fn scope(&self) -> Option<Cow<'_, str>> {
        self.form.get("scope").map(|s| Cow::Borrowed(s.as_str()))
    }

    fn grant_type(&self) -> Option<Cow<'_, str>> {
        self.form
            .get("grant_type")
            .map(|s| Cow::Borrowed(s.as_str()))
    }

    fn extension(&self, key: &str) -> Option<Cow<'_, str>> {
        self.form.get(key).map(|s| Cow::Borrowed(s.as_str()))
    }

    /// The contract allows `client_secret_post` as well as HTTP Basic.
    fn allow_credentials_in_body(&self) -> bool {
        true
    }
}

/// An OAuth2 error response (RFC 6749 §5.2, RFC 7009 §2.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    /// `invalid_request`, `invalid_client`, `invalid_scope`, `unsupported_grant_type`, …
    pub error: &'static str,
    pub description: String,
    /// Answer with `WWW-Authenticate: Basic` (the client tried HTTP Basic).
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn invalid_client(basic: bool) -> Self {
        Self {
            basic_challenge: basic,
            ..Self::new(401, "invalid_client", "client authentication failed")
        }
    }

    /// Store or shared-state trouble: the grant cannot be answered now.
    fn unavailable(e: &ServiceError) -> Self {
        tracing::warn!(error = %e, "token endpoint failed");
        Self::new(503, "temporarily_unavailable", "try again later")
    }
}

fn flow_error(mut e: FlowError, req: &TokenRequest) -> OAuthError {
    let basic = req.basic.is_some();
    let kind = e.description().map(|d| d.kind());
    // oxide-auth reports a scope that does not parse as a generic invalid request; RFC 6749
    // §5.2 calls a malformed scope `invalid_scope`.
    let bad_scope = req.valid
        && req
            .form
            .get("scope")
            .is_some_and(|s| s.parse::<oxide_auth::primitives::scope::Scope>().is_err());
    if bad_scope && kind == Some(AccessTokenErrorType::InvalidRequest) {
        return OAuthError::new(400, "invalid_scope", "the scope is malformed");
    }
    match kind {
        Some(AccessTokenErrorType::InvalidClient) => OAuthError::invalid_client(basic),
        Some(AccessTokenErrorType::UnsupportedGrantType) => OAuthError::new(
            400,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        ),
        Some(AccessTokenErrorType::InvalidScope) => {
            OAuthError::new(400, "invalid_scope", "the scope is malformed")
        }
        _ => OAuthError::new(
            400,
            "invalid_request",
            "a form body with grant_type, and the client authenticated exactly once (HTTP Basic or client_id and client_secret)",
        ),
    }
}

/// The redirect URI oxide-auth's binding step wants; client credentials never redirect.
fn no_redirect() -> Option<RegisteredUrl> {
    url::Url::parse("urn:ietf:params:oauth:client-credentials")
        .ok()
        .map(RegisteredUrl::Semantic)
}

impl Services {
    /// The account behind a client id and secret, if both are right and the account may act.
    /// Unknown client, wrong secret, no secret issued and a disabled account look the same.
    async fn client_account(
        &self,
        r: &mut dyn ReadTx,
        client_id: &str,
        secret: &[u8],
    ) -> Result<Option<ServiceAccount>> {
        let Ok(id) = uuid::Uuid::parse_str(client_id) else {
            return Ok(None);
        };
        let Some(secret) = std::str::from_utf8(secret)
            .ok()
            .and_then(|s| uos_authn::parse_client_secret(s).ok())
        else {
            return Ok(None);
        };
        let Some(account) = r.find_service_account(ServiceAccountId(id)).await? else {
            return Ok(None);
        };
        // Machines of a suspended or deleted org get no new tokens.
        let org_active = org_is_active(r, account.org_id).await?;
        Ok(Some(account).filter(|a| {
            org_active
                && a.is_usable()
                && a.client_secret_hash.as_deref().is_some_and(|h| {
                    uos_authn::verify_api_key(&self.inner.machine.api_key_pepper, secret, h)
                })
        }))
    }

    /// The client-credentials grant: authenticate the service account, grant the requested
    /// scope (or, without one, everything its roles allow), and issue an access token.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn client_credentials_grant(
        &self,
        ctx: &Ctx,
        req: &TokenRequest,
    ) -> std::result::Result<OAuthTokenView, OAuthError> {
        let inner = &*self.inner;
        let _cap = inner
            .authorize(ctx, Action::OAuthToken, oauth_resource())
            .map_err(|e| OAuthError::unavailable(&e))?;
        let basic = req.basic.is_some();
        let mut flow = ClientCredentials::new(req);
        let mut input = Input::None;
        let mut account: Option<ServiceAccount> = None;
        let mut allowed = BTreeSet::new();
        // What negotiation granted, sorted: oxide-auth's `Scope` is a hash set and would put
        // the tokens in a different order on every request.
        let mut granted_scope = String::new();
        loop {
            input = match flow.advance(input) {
                Output::Err(e) => return Err(flow_error(*e, req)),
                Output::Authenticate { client, passdata } => {
                    let (client, passdata) = (client.to_string(), passdata.to_vec());
                    let mut r = inner
                        .store
                        .read()
                        .await
                        .map_err(|e| OAuthError::unavailable(&e.into()))?;
                    let found = self
                        .client_account(&mut *r, &client, &passdata)
                        .await
                        .map_err(|e| OAuthError::unavailable(&e))?;
                    let Some(a) = found else {
                        return Err(OAuthError::invalid_client(basic));
                    };
                    allowed = expand_roles(&mut LazyRead::over(&mut *r), a.org_id, &a.roles)
                        .await
                        .map_err(|e| OAuthError::unavailable(&e))?
                        .1;
                    account = Some(a);
                    Input::Authenticated
                }
                Output::Binding { client_id } => {
                    let url = no_redirect().ok_or_else(|| {
                        OAuthError::unavailable(&ServiceError::Internal("redirect urn".into()))
                    })?;
                    Input::Bound {
                        bound_client: BoundClient {
                            client_id: Cow::Owned(client_id.to_string()),
                            redirect_uri: Cow::Owned(url),
                        },
                    }
                }
                Output::Extend => Input::Extended {
                    extensions: Extensions::new(),
                },
                Output::Negotiate {
                    bound_client,
                    scope,
                } => {
                    let granted: Vec<String> = match &scope {
                        None => allowed.iter().cloned().collect(),
                        Some(s) => {
                            let asked: BTreeSet<String> = s.iter().map(str::to_string).collect();
                            if let Some(bad) = asked.iter().find(|p| !allowed.contains(*p)) {
                                return Err(OAuthError::new(
                                    400,
                                    "invalid_scope",
                                    format!("the client may not be granted {bad}"),
                                ));
                            }
                            asked.into_iter().collect()
                        }
                    };
                    if granted.is_empty() {
                        let why = if scope.is_some() {
                            "the scope names no permission"
                        } else {
                            "the client's roles grant no permissions"
                        };
                        return Err(OAuthError::new(400, "invalid_scope", why));
                    }
                    granted_scope = granted.join(" ");
                    let scope = granted_scope.parse().map_err(|_| {
                        OAuthError::new(400, "invalid_scope", "the scope is malformed")
                    })?;
                    Input::Negotiated {
                        pre_grant: PreGrant {
                            client_id: bound_client.client_id.to_string(),
                            redirect_uri: bound_client.redirect_uri.as_ref().clone(),
                            scope,
                        },
                    }
                }
                Output::Ok { .. } => {
                    let account = account.ok_or_else(|| {
                        OAuthError::unavailable(&ServiceError::Internal("no client".into()))
                    })?;
                    return Ok(self.client_token(&account, granted_scope));
                }
            };
        }
    }

    fn client_token(&self, account: &ServiceAccount, scope: String) -> OAuthTokenView {
        let inner = &*self.inner;
        let now = uos_domain::now().timestamp();
        let ttl = inner.cfg.client_token_ttl_secs.max(1);
        let claims = ClientClaims {
            iss: inner.cfg.issuer.clone(),
            sub: account.id.0,
            org: account.org_id.0,
            client_id: account.id.to_string(),
            scope: scope.clone(),
            iat: now,
            exp: now + crate::identity::auth::secs(ttl),
            jti: uos_domain::new_id(),
        };
        let token = issue_client_token(&inner.keys.signing_key(KeyPurpose::AccessToken), &claims);
        OAuthTokenView {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: ttl,
            scope,
        }
    }

    /// RFC 7009: the client (authenticated like at the token endpoint) revokes one of its own
    /// access tokens. Unknown, malformed, expired and other clients' tokens are answered the
    /// same way (200), as the RFC asks, and change nothing.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn revoke_client_token(
        &self,
        ctx: &Ctx,
        req: &TokenRequest,
    ) -> std::result::Result<(), OAuthError> {
        let inner = &*self.inner;
        let cap = inner
            .authorize(ctx, Action::OAuthRevoke, oauth_resource())
            .map_err(|e| OAuthError::unavailable(&e))?;
        if !req.valid {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "a form body is required",
            ));
        }
        let basic = req.basic.is_some();
        let (client_id, secret) = match (
            &req.basic,
            req.form.get("client_id"),
            req.form.get("client_secret"),
        ) {
            (Some((id, s)), None, None) => (id.as_str(), s.as_str()),
            (None, Some(id), Some(s)) => (id.as_str(), s.as_str()),
            // RFC 6749 §2.3: one authentication method per request.
            (Some(_), _, _) => {
                return Err(OAuthError::new(
                    400,
                    "invalid_request",
                    "authenticate the client once: HTTP Basic or client_id and client_secret",
                ))
            }
            _ => return Err(OAuthError::invalid_client(basic)),
        };
        let mut r = inner
            .store
            .read()
            .await
            .map_err(|e| OAuthError::unavailable(&e.into()))?;
        let account = self
            .client_account(&mut *r, client_id, secret.as_bytes())
            .await
            .map_err(|e| OAuthError::unavailable(&e))?
            .ok_or_else(|| OAuthError::invalid_client(basic))?;
        drop(r);
        let Some(token) = req.form.get("token") else {
            return Err(OAuthError::new(400, "invalid_request", "token is required"));
        };
        let now = uos_domain::now();
        let Ok(claims) = inner.verify_token(|keys| {
            uos_authn::verify_client_token(token, keys, &inner.cfg.issuer, now.timestamp())
        }) else {
            return Ok(());
        };
        if claims.sub != account.id.0 {
            return Ok(());
        }
        // The client authenticated itself: it, not "anonymous", is the audit event's actor.
        let ctx = Ctx {
            caller: Caller::Machine(Arc::new(AuthMachine {
                credential: MachineCredential::ClientToken { jti: claims.jti },
                roles: Vec::new(),
                permissions: Vec::new(),
                scopes: Vec::new(),
                org_active: true,
                account: account.clone(),
            })),
            ..ctx.clone()
        };
        let write = async {
            let mut uow = UnitOfWork::begin(inner, &ctx).await?;
            let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
            // Revoking again (or at the same time on another request) changes nothing and
            // records nothing: dropping the unit of work rolls it back.
            if !uow.tx().revoke_access_token(claims.jti, expires).await? {
                return Ok(());
            }
            uow.invalidate(uos_shared::Invalidation::AccessToken(claims.jti));
            uow.record(
                AuditAction::AccessTokenRevoked,
                Some(account.org_id),
                claims.jti.to_string(),
                serde_json::Value::Null,
                serde_json::json!({"service_account_id": account.id, "expires_at": expires}),
            )
            .await?;
            uow.commit_unanswered(&cap).await
        };
        write.await.map_err(|e| OAuthError::unavailable(&e))
    }
}

fn oauth_resource() -> Resource {
    Resource {
        kind: ResourceKind::OAuth2,
        ..Default::default()
    }
}
