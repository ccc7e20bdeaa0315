//! Token services for downstream services: RFC 7662 introspection of access tokens and API
//! keys, and
//! rotation of the token-signing key (the JWKS keeps the previous key until its tokens die).

use crate::uow::UnitOfWork;
use crate::views::{IntrospectionView, KeyRotationView};
use crate::{Ctx, Done, Result, ServiceError, Services};
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_keys::KeyPurpose;

impl Services {
    /// Whether `token` is an active access token of ours, and whose. The caller must be
    /// authenticated; anything wrong with the token (forged, expired, revoked session,
    /// suspended user) is just `active: false`, as RFC 7662 asks.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn introspect(&self, ctx: &Ctx, token: &str) -> Result<IntrospectionView> {
        let _cap = self.inner.authorize(
            ctx,
            Action::AuthIntrospect,
            Resource {
                kind: ResourceKind::Token,
                ..Default::default()
            },
        )?;
        if let Some(view) = self.introspect_machine(token).await? {
            return Ok(view);
        }
        let now = uos_domain::now();
        let Some(claims) = self.verified_claims(token, now) else {
            return Ok(IntrospectionView::default());
        };
        let Some((session, user)) = self.live_session(&claims, now).await? else {
            return Ok(IntrospectionView::default());
        };
        Ok(IntrospectionView {
            active: true,
            token_type: Some("access_token".into()),
            sub: Some(user.id.to_string()),
            username: Some(user.email.to_string()),
            iss: Some(claims.iss),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            jti: Some(claims.jti.to_string()),
            sid: Some(session.id.0),
            ..IntrospectionView::default()
        })
    }

    /// Make a new access-token signing key current. Tokens signed by the previous key keep
    /// verifying (it stays in the JWKS) until they expire; the one before that is dropped.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn rotate_token_key(&self, ctx: &Ctx) -> Result<Done<KeyRotationView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(
            ctx,
            Action::KeysRotate,
            Resource {
                kind: ResourceKind::Key,
                ..Default::default()
            },
        )?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let key_id = inner
            .keys
            .rotate(KeyPurpose::AccessToken)
            .map_err(|e| ServiceError::Internal(format!("key rotation: {e}")))?;
        let published: Vec<String> = inner
            .keys
            .public_keys(KeyPurpose::AccessToken)
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        // Verified tokens are cached per replica; those of a retired key must fail now.
        uow.invalidate(uos_shared::Invalidation::Everything);
        uow.record(
            AuditAction::KeysRotated,
            None,
            key_id.clone(),
            serde_json::Value::Null,
            serde_json::json!({"purpose": KeyPurpose::AccessToken.as_str(), "published": published}),
        )
        .await?;
        let done = Done::ok(
            KeyRotationView {
                purpose: KeyPurpose::AccessToken.as_str().into(),
                key_id,
                published,
            },
            None,
        );
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
