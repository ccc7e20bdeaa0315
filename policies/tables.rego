# Data tables for the authorization policy: which actions exist, how they are grouped and which
# org permission each org-scoped action needs. Adding an action is mostly a matter of adding it
# to one table here (see docs/authorization.md); decision.rego holds only the order of rules.
package uos.authz

# The org-level permission catalogue. Must match `uos_authz::PERMISSIONS` (a unit test checks).
permissions := [
	"org:read", "org:update", "org:delete", "org:suspend",
	"users:read", "users:write",
	"invites:read", "invites:write",
	"roles:read", "roles:write",
	"audit:read",
	"billing:read", "billing:write",
	"service_accounts:read", "service_accounts:write",
	"policy:evaluate", "usage:write",
	"billing:approve",
]

# Endpoints that need no credentials at all (the credential is the password, the refresh
# token, the mfa_token, the reset token, the upstream login or the invite token).
public_actions := {
	"auth.login", "auth.refresh", "auth.mfa", "auth.password_forgot", "auth.password_reset",
	"auth.oidc", "invite.accept",
	# OAuth2 clients authenticate in the request itself (client secret), as RFC 6749 and 7009 say.
	"oauth2.token", "oauth2.revoke",
	# The decision point's public keys, for whoever verifies a decision (like a JWKS).
	"policy.keys",
	# The JSON Schema of declarative org files, for editors and CI checks of a config repo.
	"declarative.schema",
	# A Git host's push event: the request proves itself with its HMAC signature.
	"declarative.webhook",
}

# What a user whose password must be reset may still do: see themselves, set a password, leave.
password_reset_actions := {"me.read", "me.password", "auth.logout"}

# User statuses that may act at all (password_reset_required is further limited above).
usable_statuses := {"active", "password_reset_required"}

# Actions any active user may perform on their own behalf, outside any org.
self_actions := {
	"me.read", "me.update", "me.password", "auth.logout",
	"org.create", "org.list", "audit.keys",
	"session.list", "session.revoke", "me.mfa", "auth.introspect", "auth.whoami",
	# Anyone may ask for break-glass access; two platform admins decide.
	"break_glass.request",
}

# The only actions outside an org a service account may perform: everything else it does is
# org-scoped and checked against its roles and key scopes.
machine_self_actions := {"auth.introspect", "auth.whoami"}

# Principal kinds that authenticated.
authenticated_kinds := {"user", "service_account"}

# Actions on users across the platform; only platform admins may perform them (user.read of
# oneself is the exception, handled before this table is consulted).
platform_actions := {
	"user.list", "user.read", "user.update", "user.set_status", "user.delete", "user.restore",
	"user.revoke_sessions", "user.unlock", "password_reset.list", "password_reset.approve",
	"keys.rotate",
	# Legal holds stop the retention purge; placing and lifting them is for platform admins,
	# org owners included only if they are one.
	"user.legal_hold", "org.legal_hold",
	# The webhook delivery log names every org's notifications.
	"webhook.list",
	# The policy bundle itself: what decides everything is changed and inspected by them only.
	"policy.bundle", "policy.reload",
	# Break-glass grants roles in any org: deciding on them is the platform's.
	"break_glass.list", "break_glass.approve", "break_glass.revoke",
	# The reconciler's state across every managed org, and stopping or starting it; a plan
	# reads every org the files name, so it is theirs too.
	"declarative.status", "declarative.pause", "declarative.sync", "declarative.plan",
	# The reconciler's own records (outcomes, drift, rejected commits): its job, nobody else's.
	"declarative.record",
}

# What the reconciler may do: the changes an org file declares (and the reads that plan them).
# Nothing about users, sessions, keys or the platform.
reconciler_actions := {
	"org.create", "org.read", "org.update",
	"member.list", "member.read", "member.set_roles", "member.remove",
	"invite.list", "invite.create", "invite.revoke",
	"role.list", "role.read", "role.create", "role.update", "role.delete",
	"service_account.list", "service_account.read", "service_account.create",
	"service_account.update", "service_account.delete",
	"budget.read", "budget.write",
	"declarative.record",
}

# Org-scoped action -> the org permission it requires. An action listed here is evaluated
# against the caller's standing in the resource's org.
action_permission := {
	"org.read": "org:read",
	"org.update": "org:update",
	"org.delete": "org:delete",
	"org.restore": "org:delete",
	"org.suspend": "org:suspend",
	"org.resume": "org:suspend",
	"member.list": "users:read",
	"member.read": "users:read",
	"member.remove": "users:write",
	"member.set_roles": "users:write",
	"member.suspend": "users:write",
	"member.reactivate": "users:write",
	"invite.create": "invites:write",
	"invite.revoke": "invites:write",
	"invite.list": "invites:read",
	"role.list": "roles:read",
	"role.read": "roles:read",
	"role.create": "roles:write",
	"role.update": "roles:write",
	"role.delete": "roles:write",
	"audit.read": "audit:read",
	"service_account.list": "service_accounts:read",
	"service_account.read": "service_accounts:read",
	"service_account.create": "service_accounts:write",
	"service_account.update": "service_accounts:write",
	"service_account.delete": "service_accounts:write",
	"api_key.list": "service_accounts:read",
	"api_key.read": "service_accounts:read",
	"api_key.create": "service_accounts:write",
	"api_key.revoke": "service_accounts:write",
	"api_key.rotate": "service_accounts:write",
	"api_key.release": "service_accounts:write",
	"client_secret.issue": "service_accounts:write",
	"policy.evaluate": "policy:evaluate",
	"budget.read": "billing:read",
	"budget.write": "billing:write",
	"usage.record": "usage:write",
	"budget_override.request": "billing:write",
	"budget_override.list": "billing:read",
	"budget_override.approve": "billing:approve",
	"budget_override.revoke": "billing:approve",
}

# Org statuses the policy knows; anything else is denied rather than guessed at.
org_statuses := {"active", "suspended", "deleted"}

# The org's own lifecycle moves pass the status gates below: whether a move is valid from the
# current status is the state machine's answer (409 invalid_transition), not the policy's.
lifecycle_actions := {"org.suspend", "org.resume", "org.delete", "org.restore"}

# In a deleted org: members may still see it, and it may be restored. Nothing else.
deleted_org_actions := {"org.read"}

# In a suspended org: reads keep working so people can see what happened.
suspended_org_actions := {
	"org.read",
	"member.list", "member.read",
	"invite.list",
	"role.list", "role.read",
	"audit.read",
	"service_account.list", "service_account.read", "api_key.list", "api_key.read",
	"budget.read", "budget_override.list",
	# Taking a credential away is always allowed: a suspended org must be able to stop a leak.
	"api_key.revoke",
	# Asking the decision point about the org: the answer is a signed `allow: false`
	# (`org_inactive`), which a gateway can act on, rather than a refusal of the caller.
	"policy.evaluate",
}
