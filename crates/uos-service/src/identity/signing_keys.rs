//! Rotation of the access-token signing key: the JWKS keeps the previous key until its tokens
//! die, and every replica drops the tokens it verified with a retired key.

use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::KeyRotationView;
use crate::{Ctx, Done, Result, ServiceError, Services};
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_keys::KeyPurpose;

impl Services {
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
            .await
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
