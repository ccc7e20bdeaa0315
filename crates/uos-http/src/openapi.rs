//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types they use.

use crate::problem::Problem;
use crate::reply::ListBody;
use crate::routes::{
    audit, auth, federation, health, invites, machine, me, members, mfa, oauth, orgs, resets,
    roles, tokens, users,
};
use uos_service::views;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "user-org-service", description = "Identity and organization service: HTTP contract v1."),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi, health::jwks,
        auth::login, auth::logout, auth::refresh, auth::mfa, auth::forgot_password, auth::reset_password,
        federation::start, federation::callback, tokens::introspect, tokens::rotate,
        mfa::enrol, mfa::confirm, mfa::disable, resets::list_pending, resets::approve, users::unlock,
        me::get_me, me::patch_me, me::get_preferences, me::put_preferences, me::change_password, me::list_sessions, me::revoke_session, me::revoke_other_sessions,
        orgs::create, orgs::list_orgs, orgs::get, orgs::update, orgs::delete, orgs::suspend, orgs::resume, orgs::restore,
        members::list_members, members::get_member, members::remove_member, members::set_roles, members::suspend, members::reactivate,
        invites::create, invites::list_invites, invites::revoke, invites::accept,
        roles::create, roles::list_roles, roles::get, roles::update, roles::delete,
        users::list_users, users::get, users::update, users::set_status, users::delete, users::restore, users::revoke_sessions,
        audit::events, audit::keys,
        auth::whoami, oauth::token, oauth::revoke,
        machine::create_account, machine::list_accounts, machine::get_account, machine::update_account, machine::delete_account,
        machine::issue_client_secret, machine::create_key, machine::list_keys, machine::list_overdue, machine::get_key, machine::revoke_key, machine::rotate_key,
    ),
    components(schemas(
        Problem, views::OrgView, views::UserView, views::MemberView, views::InviteView, views::RoleView,
        views::AcceptedInviteView, views::TokenView, views::MeView, views::MyOrgView,
        views::SessionView, views::DeviceView, ListBody<views::SessionView>,
        ListBody<views::OrgView>, ListBody<views::UserView>, ListBody<views::MemberView>,
        ListBody<views::InviteView>, ListBody<views::RoleView>,
        views::TotpEnrolmentView, views::RecoveryCodesView, views::PasswordResetView,
        ListBody<views::PasswordResetView>, views::IntrospectionView, views::KeyRotationView,
        views::ServiceAccountView, views::RotationPolicyView, ListBody<views::ServiceAccountView>,
        views::ApiKeyView, ListBody<views::ApiKeyView>, views::NewApiKeyView, views::ClientSecretView,
        views::WhoamiView, views::OAuthTokenView, oauth::OAuthErrorBody,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
