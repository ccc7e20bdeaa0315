//! RFC 7662 introspection of access tokens and API keys, for downstream services.

use crate::kernel::views::IntrospectionView;
use crate::{Ctx, Result, Services};
use uos_authz::{Action, Resource, ResourceKind};

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
}
