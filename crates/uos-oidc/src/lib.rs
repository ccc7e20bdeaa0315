//! Upstream OpenID Connect federation: this service as a relying party of an outside identity
//! provider (a company's IdP, Google, Keycloak, …).
//!
//! One [`OidcProvider`] per configured provider, made once at startup with
//! [`OidcProvider::discover`] (OpenID Connect Discovery: endpoints and signing keys). A login is
//! the authorization-code flow with PKCE (S256), `state` and `nonce`:
//!
//! 1. [`OidcProvider::start`] returns the provider's authorization URL to redirect the browser to,
//!    and a [`PendingLogin`] that the service keeps **server side** until the callback: one-time,
//!    keyed by [`PendingLogin::state`], with a short time to live ([`PENDING_LOGIN_TTL`]).
//! 2. The provider redirects the browser back to `redirect_uri?code=…&state=…` (and `iss=…` where
//!    the provider supports RFC 9207: check it with [`OidcProvider::check_callback_issuer`]).
//!    The service takes the pending login stored under that `state` out of its store (so it can
//!    be used once only); an unknown `state` is refused before anything reaches this crate. That
//!    lookup *is* the CSRF check: [`OidcProvider::finish`] does not compare `state` again.
//! 3. [`OidcProvider::finish`] exchanges the code (with the PKCE verifier), verifies the ID token
//!    (signature against the provider's JWKS, issuer, audience, expiry, nonce, `at_hash`), reads
//!    the configured email and name claims (from the ID token, else from userinfo), applies the
//!    email-domain allowlist and returns the [`ExternalLogin`].
//!
//! TLS: reqwest 0.12 on rustls; reqwest takes the process-wide rustls crypto provider when one
//! is installed and *ring* otherwise, so this crate needs no setup and never pulls in aws-lc-rs.
//! Trusted roots: the system store plus the bundled Mozilla roots. Nothing here logs the client
//! secret, the code, tokens, the nonce or the PKCE verifier.

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreSubjectIdentifierType, CoreTokenIntrospectionResponse,
    CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthorizationCode,
    Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IdTokenClaims, IdTokenFields, IdTokenVerifier, IssuerUrl,
    JsonWebKeySet, JsonWebKeySetUrl, LocalizedClaim, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError, Scope, StandardClaims,
    StandardErrorResponse, StandardTokenResponse, TokenResponse, UserInfoClaims,
};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// How long a [`PendingLogin`] is good for: [`OidcProvider::finish`] refuses older ones. The
/// service should store pending logins with (at most) this time to live.
pub const PENDING_LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// Time limit for one request to the provider (discovery, token, JWKS, userinfo).
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Configuration

/// One upstream provider, as configured by the operator.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The issuer identifier, exactly as the provider states it in its discovery document (e.g.
    /// `https://accounts.google.com`; no trailing slash unless the provider's has one).
    pub issuer: String,
    /// This service's client id, as registered with the provider.
    pub client_id: String,
    /// The client secret the provider issued with `client_id`.
    #[schemars(with = "String", extend("writeOnly" = true))]
    pub client_secret: SecretString,
    /// Scopes to request; `openid` is always requested.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// This service's callback URL, registered with the provider.
    pub redirect_uri: String,
    /// The claim that holds the user's email address. `email` (the default) is the standard
    /// claim, whose `email_verified` says whether the provider verified it; any other name is read
    /// from the ID token's (or userinfo's) claims of that name, and counts as verified only with
    /// [`ProviderConfig::trust_email`].
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// The claim that holds the user's display name (default `name`).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Treat the provider's email as verified when it does not say (no `email_verified`, or a
    /// custom `email_claim`): for providers that only hand out addresses they own, such as a
    /// company IdP. An explicit `email_verified: false` is never overridden.
    #[serde(default)]
    pub trust_email: bool,
    /// Email domains allowed to log in through this provider (`example.com`; exact match, case
    /// insensitive, subdomains are not included). Empty: any. When set, a login needs a verified
    /// email address in one of these domains.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Passed through for the service: what to do with a user the first time they log in.
    #[serde(default)]
    pub auto_join: Option<AutoJoin>,
}

/// Join users who log in through a provider to an organization (applied by the service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoJoin {
    /// Slug of the org such users join.
    pub org: String,
    /// The roles they get in it.
    #[serde(default)]
    pub roles: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_email_claim() -> String {
    "email".into()
}

fn default_name_claim() -> String {
    "name".into()
}

impl ProviderConfig {
    /// A configuration with the defaults for everything optional.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            scopes: default_scopes(),
            redirect_uri: redirect_uri.into(),
            email_claim: default_email_claim(),
            name_claim: default_name_claim(),
            trust_email: false,
            allowed_email_domains: Vec::new(),
            auto_join: None,
        }
    }

    fn validate(&self, name: &str) -> Result<(), OidcError> {
        let bad = |what: &str| Err(OidcError::Config(format!("provider {name:?}: {what}")));
        if name.trim().is_empty() {
            return Err(OidcError::Config("a provider needs a name".into()));
        }
        if self.client_id.trim().is_empty() {
            return bad("client_id is empty");
        }
        if self.client_secret.expose_secret().is_empty() {
            return bad("client_secret is empty");
        }
        if self.email_claim.trim().is_empty() || self.name_claim.trim().is_empty() {
            return bad("email_claim and name_claim must name a claim");
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return bad("a scope is empty or holds a space");
        }
        if self
            .allowed_email_domains
            .iter()
            .any(|d| normalize_domain(d).is_empty())
        {
            return bad("allowed_email_domains holds an empty domain");
        }
        Ok(())
    }
}

fn normalize_domain(domain: &str) -> String {
    domain
        .trim()
        .trim_start_matches('@')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Results and errors

/// Who logged in, as the provider vouches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalLogin {
    /// The provider's issuer identifier; `(issuer, subject)` identifies the external account.
    pub issuer: String,
    /// The `sub` claim: stable and unique within the issuer (unlike the email address).
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider says it verified `email` (see [`ProviderConfig::trust_email`]).
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Why a provider could not be set up or a login failed. Messages never hold secrets, codes or
/// tokens.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider's configuration is unusable (operator error; at startup).
    #[error("invalid OIDC provider configuration: {0}")]
    Config(String),
    /// Discovery failed: the provider is unreachable or its metadata is unusable.
    #[error("OIDC discovery failed: {0}")]
    Discovery(String),
    /// The pending login was started for another provider.
    #[error("the login was started with provider {expected:?}, not {actual:?}")]
    ProviderMismatch { expected: String, actual: String },
    /// The pending login is older than [`PENDING_LOGIN_TTL`].
    #[error("the login took too long; start again")]
    LoginExpired,
    /// The callback's `iss` parameter names another issuer (RFC 9207 mix-up defence), or is
    /// missing although the provider promises to send it.
    #[error("the callback's issuer does not match the provider")]
    IssuerMismatch,
    /// The provider refused the code exchange (bad or reused code, wrong PKCE verifier, wrong
    /// client credentials) or answered it with something unusable.
    #[error("the provider refused the code exchange: {0}")]
    Exchange(String),
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce, at_hash) or
    /// was missing.
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
    /// The userinfo endpoint refused the request or answered with something unusable.
    #[error("userinfo failed: {0}")]
    UserInfo(String),
    /// The provider could not be reached during a login (token, JWKS or userinfo endpoint).
    #[error("the provider is unreachable: {0}")]
    Unavailable(String),
    /// The allowlist is set and the provider gave no email address.
    #[error("the provider did not share an email address")]
    EmailMissing,
    /// The allowlist is set and the email address is not verified.
    #[error("the email address is not verified by the provider")]
    EmailNotVerified,
    /// The email address is outside the allowed domains.
    #[error("email domain {0:?} is not allowed for this provider")]
    EmailDomainNotAllowed(String),
}

/// An error and its sources, joined: `reqwest` puts the useful part (connection refused, …) in
/// the source chain.
fn chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pending logins

/// What must be kept (server side) from [`OidcProvider::start`] until the callback.
///
/// Store it under [`PendingLogin::state`], one-time, for at most [`PENDING_LOGIN_TTL`]. It
/// serializes with its secrets (nonce and PKCE verifier) in the clear, so keep it out of cookies
/// and logs; `Debug` redacts them.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The provider's configured name.
    pub provider: String,
    /// The `state` sent to the provider; the callback's `state` is the lookup key.
    pub state: String,
    nonce: String,
    #[serde(serialize_with = "serialize_secret")]
    pkce_verifier: SecretString,
    /// Unix seconds.
    pub created_at: i64,
}

fn serialize_secret<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("provider", &self.provider)
            .field("state", &self.state)
            .field("nonce", &"[REDACTED]")
            .field("pkce_verifier", &"[REDACTED]")
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl PendingLogin {
    /// Whether it is older than [`PENDING_LOGIN_TTL`] at `now` (unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        now.saturating_sub(self.created_at) > PENDING_LOGIN_TTL.as_secs() as i64
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// openidconnect types

/// Claims beyond the standard ones (custom `email_claim` / `name_claim`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    claims: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

/// Discovery metadata that openidconnect does not model (RFC 8414, RFC 9207).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ExtraMetadata {
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
type IdFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResp = StandardTokenResponse<IdFields, CoreTokenType>;
type IdTok = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type IdClaims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type UserInfo = UserInfoClaims<ExtraClaims, CoreGenderClaim>;
type RpClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResp,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The HTTP client for talking to providers: no redirects (SSRF), bounded time.
fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(HTTP_TIMEOUT)
        .user_agent(concat!("uos-oidc/", env!("CARGO_PKG_VERSION")))
        .build()
}

// ---------------------------------------------------------------------------------------------
// The provider

/// A discovered upstream provider, ready for logins. Cheap to share (`Arc`); `Send + Sync`.
pub struct OidcProvider {
    name: String,
    config: ProviderConfig,
    client: RpClient,
    http: reqwest::Client,
    issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    /// Refreshed when an ID token names a key we do not have (key rotation).
    jwks: RwLock<CoreJsonWebKeySet>,
    id_token_algs: Vec<CoreJwsSigningAlgorithm>,
    iss_parameter_supported: bool,
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.name)
            .field("issuer", &self.issuer.as_str())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// Fetch the provider's discovery document and signing keys, and check that it can do the
    /// authorization-code flow with PKCE S256. `name` is the service's name for the provider
    /// (the `{provider}` of its routes).
    pub async fn discover(name: &str, cfg: ProviderConfig) -> Result<Self, OidcError> {
        cfg.validate(name)?;
        let issuer = IssuerUrl::new(cfg.issuer.clone()).map_err(|e| {
            OidcError::Config(format!("provider {name:?}: issuer is not a URL: {e}"))
        })?;
        let redirect = RedirectUrl::new(cfg.redirect_uri.clone()).map_err(|e| {
            OidcError::Config(format!("provider {name:?}: redirect_uri is not a URL: {e}"))
        })?;
        let http = http_client()
            .map_err(|e| OidcError::Config(format!("building the HTTP client: {}", chain(&e))))?;

        let discovery_error = |what: String| {
            OidcError::Discovery(format!("provider {name:?} ({}): {what}", cfg.issuer))
        };
        let metadata = Metadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| discovery_error(chain(&e)))?;
        if metadata.token_endpoint().is_none() {
            return Err(discovery_error("no token endpoint".into()));
        }
        if !metadata
            .response_types_supported()
            .iter()
            .any(|types| types.as_slice() == [CoreResponseType::Code])
        {
            return Err(discovery_error(
                "the authorization-code flow (response_type=code) is not supported".into(),
            ));
        }
        if let Some(methods) = &metadata
            .additional_metadata()
            .code_challenge_methods_supported
        {
            if !methods.iter().any(|m| m == "S256") {
                return Err(discovery_error("PKCE with S256 is not supported".into()));
            }
        }
        // client_secret_basic is the default; use the form body when only that is offered.
        let auth_type = match metadata.token_endpoint_auth_methods_supported() {
            Some(methods)
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                AuthType::RequestBody
            }
            _ => AuthType::BasicAuth,
        };
        let iss_parameter_supported = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true);
        let jwks = metadata.jwks().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let id_token_algs = metadata.id_token_signing_alg_values_supported().clone();

        let client = RpClient::from_provider_metadata(
            metadata,
            ClientId::new(cfg.client_id.clone()),
            Some(ClientSecret::new(
                cfg.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type);

        tracing::info!(provider = name, issuer = %cfg.issuer, "OIDC provider discovered");
        Ok(Self {
            name: name.to_owned(),
            config: cfg,
            client,
            http,
            issuer,
            jwks_uri,
            jwks: RwLock::new(jwks),
            id_token_algs,
            iss_parameter_supported,
        })
    }

    /// The service's name for this provider.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The issuer identifier (as in [`ExternalLogin::issuer`]).
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// Start a login: the authorization-code flow with PKCE (S256), `state` and `nonce`.
    /// Returns the URL to redirect the browser to, and what must be kept until the callback
    /// (see [`PendingLogin`]).
    pub fn start(&self) -> (String, PendingLogin) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = PendingLogin {
            provider: self.name.clone(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
            created_at: unix_now(),
        };
        tracing::debug!(provider = %self.name, "OIDC login started");
        (url.to_string(), pending)
    }

    /// Check the callback's `iss` parameter (RFC 9207), when the service has it: it must name
    /// this provider's issuer, and must be there if the provider advertises it.
    pub fn check_callback_issuer(&self, iss: Option<&str>) -> Result<(), OidcError> {
        match iss {
            Some(iss) if iss == self.issuer.as_str() => Ok(()),
            Some(_) => Err(OidcError::IssuerMismatch),
            None if self.iss_parameter_supported => Err(OidcError::IssuerMismatch),
            None => Ok(()),
        }
    }

    /// Finish a login: exchange the `code` (with the PKCE verifier), verify the ID token
    /// (signature via the provider's JWKS, issuer, audience, expiry, nonce, `at_hash`), read the
    /// email and name claims (userinfo fills in what the ID token lacks), apply the email-domain
    /// allowlist and return who logged in.
    ///
    /// `pending` must be the one stored under the callback's `state` (the service's lookup is the
    /// state check, see the crate docs).
    pub async fn finish(
        &self,
        pending: PendingLogin,
        code: &str,
    ) -> Result<ExternalLogin, OidcError> {
        if pending.provider != self.name {
            return Err(OidcError::ProviderMismatch {
                expected: pending.provider,
                actual: self.name.clone(),
            });
        }
        if pending.is_expired(unix_now()) {
            return Err(OidcError::LoginExpired);
        }
        let nonce = Nonce::new(pending.nonce);
        let verifier = PkceCodeVerifier::new(pending.pkce_verifier.expose_secret().to_owned());

        let token: TokenResp = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(chain(&e)))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(token_error)?;

        let id_token = token.id_token().ok_or_else(|| {
            OidcError::InvalidIdToken("the token response has no ID token".into())
        })?;
        let claims = self.verify_id_token(id_token, &nonce).await?;
        self.check_access_token_hash(&token, id_token, claims)?;

        let subject = claims.subject().clone();
        let mut found = Found::default();
        found.fill(&self.config, &IdTokenSource(claims));
        if (found.email.is_none() || found.name.is_none()) && self.client.user_info_url().is_some()
        {
            let userinfo: Result<UserInfo, OidcError> = async {
                self.client
                    .user_info(token.access_token().clone(), Some(subject.clone()))
                    .map_err(|e| OidcError::UserInfo(chain(&e)))?
                    .request_async(&self.http)
                    .await
                    .map_err(userinfo_error)
            }
            .await;
            match userinfo {
                Ok(userinfo) => found.fill(&self.config, &UserInfoSource(&userinfo)),
                // Only the display name was missing: log in without it.
                Err(e) if found.email.is_some() => {
                    tracing::warn!(provider = %self.name, error = %e, "userinfo failed; no display name");
                }
                Err(e) => return Err(e),
            }
        }

        self.check_email_domain(found.email.as_deref(), found.email_verified)?;
        tracing::info!(provider = %self.name, "OIDC login verified");
        Ok(ExternalLogin {
            issuer: self.issuer.as_str().to_owned(),
            subject: subject.as_str().to_owned(),
            email: found.email,
            email_verified: found.email_verified,
            name: found.name,
        })
    }

    fn verifier(&self, jwks: CoreJsonWebKeySet) -> IdTokenVerifier<'static, CoreJsonWebKey> {
        IdTokenVerifier::new_confidential_client(
            ClientId::new(self.config.client_id.clone()),
            ClientSecret::new(self.config.client_secret.expose_secret().to_owned()),
            self.issuer.clone(),
            jwks,
        )
        .set_allowed_algs(self.id_token_algs.iter().cloned())
    }

    fn current_jwks(&self) -> CoreJsonWebKeySet {
        match self.jwks.read() {
            Ok(jwks) => jwks.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn verify_id_token<'t>(
        &self,
        id_token: &'t IdTok,
        nonce: &Nonce,
    ) -> Result<&'t IdClaims, OidcError> {
        use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
        let first = id_token.claims(&self.verifier(self.current_jwks()), nonce);
        match first {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys since discovery: fetch them again, once.
                tracing::info!(provider = %self.name, "ID token signed with an unknown key; refreshing the JWKS");
                let jwks: CoreJsonWebKeySet =
                    JsonWebKeySet::fetch_async(&self.jwks_uri, &self.http)
                        .await
                        .map_err(|e| {
                            OidcError::Unavailable(format!("fetching the JWKS: {}", chain(&e)))
                        })?;
                match self.jwks.write() {
                    Ok(mut guard) => *guard = jwks.clone(),
                    Err(poisoned) => *poisoned.into_inner() = jwks.clone(),
                }
                id_token
                    .claims(&self.verifier(jwks), nonce)
                    .map_err(|e| OidcError::InvalidIdToken(chain(&e)))
            }
            other => other.map_err(|e| OidcError::InvalidIdToken(chain(&e))),
        }
    }

    /// `at_hash` binds the access token (used for userinfo) to the ID token.
    fn check_access_token_hash(
        &self,
        token: &TokenResp,
        id_token: &IdTok,
        claims: &IdClaims,
    ) -> Result<(), OidcError> {
        let Some(expected) = claims.access_token_hash() else {
            return Ok(());
        };
        let invalid = |what: String| OidcError::InvalidIdToken(format!("at_hash: {what}"));
        let verifier = self.verifier(self.current_jwks());
        let alg = id_token.signing_alg().map_err(|e| invalid(chain(&e)))?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(|e| invalid(chain(&e)))?;
        let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
            .map_err(|e| invalid(chain(&e)))?;
        if actual != *expected {
            return Err(invalid("does not match the access token".into()));
        }
        Ok(())
    }

    fn check_email_domain(&self, email: Option<&str>, verified: bool) -> Result<(), OidcError> {
        let allowed = &self.config.allowed_email_domains;
        if allowed.is_empty() {
            return Ok(());
        }
        let email = email.ok_or(OidcError::EmailMissing)?;
        if !verified {
            return Err(OidcError::EmailNotVerified);
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, domain)| normalize_domain(domain))
            .unwrap_or_default();
        if domain.is_empty() || !allowed.iter().any(|d| normalize_domain(d) == domain) {
            return Err(OidcError::EmailDomainNotAllowed(domain));
        }
        Ok(())
    }
}

fn token_error<RE: StdError + 'static>(
    err: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match err {
        RequestTokenError::ServerResponse(response) => OidcError::Exchange(response.to_string()),
        RequestTokenError::Request(e) => {
            OidcError::Unavailable(format!("token endpoint: {}", chain(&e)))
        }
        // Only the path: serde's messages may quote values, and the body holds tokens.
        RequestTokenError::Parse(e, _body) => {
            OidcError::Exchange(format!("unreadable token response (at {})", e.path()))
        }
        RequestTokenError::Other(message) => OidcError::Exchange(message),
    }
}

fn userinfo_error<RE: StdError + 'static>(err: openidconnect::UserInfoError<RE>) -> OidcError {
    use openidconnect::UserInfoError;
    match err {
        UserInfoError::Request(e) => {
            OidcError::Unavailable(format!("userinfo endpoint: {}", chain(&e)))
        }
        UserInfoError::Parse(e) => {
            OidcError::UserInfo(format!("unreadable userinfo response (at {})", e.path()))
        }
        UserInfoError::Response(status, _body, message) => {
            OidcError::UserInfo(format!("{status}: {message}"))
        }
        UserInfoError::ClaimsVerification(e) => OidcError::UserInfo(chain(&e)),
        UserInfoError::Other(message) => OidcError::UserInfo(message),
        // The enum is non-exhaustive.
        #[allow(unreachable_patterns)]
        other => OidcError::UserInfo(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Claim mapping

/// A set of claims: the ID token's or userinfo's.
trait ClaimSource {
    /// A standard claim holding a string, by name.
    fn standard(&self, name: &str) -> Option<String>;
    fn email_verified(&self) -> Option<bool>;
    fn extra(&self) -> &ExtraClaims;

    fn string_claim(&self, name: &str) -> Option<String> {
        self.standard(name)
            .or_else(|| {
                self.extra()
                    .claims
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .filter(|v| !v.trim().is_empty())
    }
}

fn localized<T: std::ops::Deref<Target = String>>(
    claim: Option<&LocalizedClaim<T>>,
) -> Option<String> {
    let claim = claim?;
    claim
        .get(None)
        .or_else(|| claim.iter().next().map(|(_, v)| v))
        .map(|v| v.to_string())
}

macro_rules! standard_string_claims {
    ($claims:expr, $name:expr) => {
        match $name {
            "email" => $claims.email().map(|v| v.to_string()),
            "preferred_username" => $claims.preferred_username().map(|v| v.to_string()),
            "phone_number" => $claims.phone_number().map(|v| v.to_string()),
            "name" => localized($claims.name()),
            "given_name" => localized($claims.given_name()),
            "family_name" => localized($claims.family_name()),
            "middle_name" => localized($claims.middle_name()),
            "nickname" => localized($claims.nickname()),
            _ => None,
        }
    };
}

struct IdTokenSource<'a>(&'a IdClaims);

impl ClaimSource for IdTokenSource<'_> {
    fn standard(&self, name: &str) -> Option<String> {
        standard_string_claims!(self.0, name)
    }
    fn email_verified(&self) -> Option<bool> {
        self.0.email_verified()
    }
    fn extra(&self) -> &ExtraClaims {
        self.0.additional_claims()
    }
}

struct UserInfoSource<'a>(&'a UserInfo);

impl ClaimSource for UserInfoSource<'_> {
    fn standard(&self, name: &str) -> Option<String> {
        let claims: &StandardClaims<CoreGenderClaim> = self.0.standard_claims();
        standard_string_claims!(claims, name)
    }
    fn email_verified(&self) -> Option<bool> {
        self.0.email_verified()
    }
    fn extra(&self) -> &ExtraClaims {
        self.0.additional_claims()
    }
}

#[derive(Default)]
struct Found {
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
}

impl Found {
    /// Take what is still missing from `source`. The email and its verification come from the
    /// same source.
    fn fill(&mut self, cfg: &ProviderConfig, source: &dyn ClaimSource) {
        if self.email.is_none() {
            if let Some(email) = source.string_claim(&cfg.email_claim) {
                self.email_verified = if cfg.email_claim == "email" {
                    source.email_verified().unwrap_or(cfg.trust_email)
                } else {
                    cfg.trust_email
                };
                self.email = Some(email);
            }
        }
        if self.name.is_none() {
            self.name = source.string_claim(&cfg.name_claim);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com",
            "client_id": "c",
            "client_secret": "s",
            "redirect_uri": "https://uos.example.com/v1/auth/oidc/corp/callback",
        }))
        .unwrap();
        assert_eq!(cfg.scopes, ["openid", "email", "profile"]);
        assert_eq!(cfg.email_claim, "email");
        assert_eq!(cfg.name_claim, "name");
        assert!(cfg.allowed_email_domains.is_empty());
        assert!(cfg.auto_join.is_none());
        assert!(!format!("{cfg:?}").contains("\"s\""));

        let err = serde_json::from_value::<ProviderConfig>(serde_json::json!({
            "issuer": "https://idp.example.com",
            "client_id": "c",
            "client_secret": "s",
            "redirect_uri": "https://uos.example.com/cb",
            "surprise": true,
        }));
        assert!(err.is_err());

        let cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com",
            "client_id": "c",
            "client_secret": "s",
            "redirect_uri": "https://uos.example.com/cb",
            "auto_join": { "org": "acme", "roles": ["member"] },
        }))
        .unwrap();
        assert_eq!(
            cfg.auto_join,
            Some(AutoJoin {
                org: "acme".into(),
                roles: vec!["member".into()]
            })
        );
    }

    #[test]
    fn pending_login_round_trips_and_redacts() {
        let pending = PendingLogin {
            provider: "corp".into(),
            state: "st".into(),
            nonce: "the-nonce".into(),
            pkce_verifier: SecretString::from("the-verifier".to_owned()),
            created_at: 100,
        };
        let debug = format!("{pending:?}");
        assert!(!debug.contains("the-nonce") && !debug.contains("the-verifier"));
        let json = serde_json::to_string(&pending).unwrap();
        let back: PendingLogin = serde_json::from_str(&json).unwrap();
        assert_eq!(back.nonce, "the-nonce");
        assert_eq!(back.pkce_verifier.expose_secret(), "the-verifier");
        assert!(!back.is_expired(100 + 600));
        assert!(back.is_expired(100 + 601));
    }

    #[test]
    fn domains_normalize() {
        assert_eq!(normalize_domain(" @Example.COM. "), "example.com");
        let cfg = ProviderConfig {
            allowed_email_domains: vec!["".into()],
            ..ProviderConfig::new("https://i", "c", "s", "https://r")
        };
        assert!(matches!(cfg.validate("p"), Err(OidcError::Config(_))));
    }
}
