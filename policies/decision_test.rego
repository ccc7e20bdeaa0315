# Rego unit tests of the endpoint authorization (`data.uos.authz.decision`). Every `test_*` rule
# must be true: the service runs them whenever it loads a bundle and refuses the bundle if one
# fails. They pin the order of the rules in decision.rego, which the tables alone do not show.
package uos.authz_test

org := "0190aaaa-0000-7000-8000-000000000001"

other_org := "0190aaaa-0000-7000-8000-000000000002"

member(permissions) := {
	"kind": "user",
	"id": "0190aaaa-0000-7000-8000-0000000000aa",
	"platform_admin": false,
	"status": "active",
	"org": {"org_id": org, "membership_status": "active", "roles": ["member"], "permissions": permissions},
}

in_org(status) := {"kind": "org", "org_id": org, "org_status": status}

decide(principal, action, resource) := d if {
	d := data.uos.authz.decision with input as {"principal": principal, "action": action, "resource": resource}
}

test_public_actions_need_no_credentials if {
	decide({"kind": "anonymous", "platform_admin": false}, "auth.login", {}) == {"allow": true, "rule": "public"}
}

test_anonymous_callers_are_asked_to_authenticate if {
	decide({"kind": "anonymous", "platform_admin": false}, "org.read", in_org("active")) == {"allow": false, "rule": "authentication_required"}
}

test_a_suspended_user_may_do_nothing if {
	principal := object.union(member(["org:read"]), {"status": "suspended"})
	decide(principal, "org.read", in_org("active")) == {"allow": false, "rule": "inactive_principal"}
}

test_a_member_with_the_permission_is_allowed if {
	decide(member(["org:read"]), "org.read", in_org("active")) == {"allow": true, "rule": "permission:org:read"}
}

test_a_member_without_the_permission_is_told_which_one if {
	decide(member(["org:read"]), "org.update", in_org("active")) == {"allow": false, "rule": "missing_permission:org:update"}
}

test_membership_counts_only_in_its_own_org if {
	resource := object.union(in_org("active"), {"org_id": other_org})
	decide(member(["org:read"]), "org.read", resource) == {"allow": false, "rule": "not_member"}
}

test_a_suspended_org_is_read_only if {
	principal := member(["org:read", "users:write"])
	decide(principal, "org.read", in_org("suspended")).allow
	decide(principal, "member.remove", in_org("suspended")) == {"allow": false, "rule": "org_suspended"}
}

test_nobody_grants_a_permission_they_lack if {
	resource := object.union(in_org("active"), {"grants_permissions": ["org:delete"]})
	decide(member(["roles:write"]), "role.create", resource) == {"allow": false, "rule": "permission_escalation"}
}

test_policy_bundles_are_for_platform_admins if {
	every action in ["policy.bundle", "policy.reload"] {
		decide(member(["org:read"]), action, {"kind": "policy_bundle"}) == {"allow": false, "rule": "platform_admin_required"}
	}
}

test_platform_admins_manage_policy_bundles if {
	admin := object.union(member([]), {"platform_admin": true})
	decide(admin, "policy.reload", {"kind": "policy_bundle"}) == {"allow": true, "rule": "platform_admin"}
	decide(admin, "policy.bundle", {"kind": "policy_bundle"}) == {"allow": true, "rule": "platform_admin"}
}

test_service_accounts_stay_in_their_org if {
	account := object.union(member(["org:read"]), {"kind": "service_account"})
	decide(account, "user.list", {}) == {"allow": false, "rule": "user_required"}
}

reconciler := {"kind": "reconciler", "platform_admin": false, "status": "active"}

test_the_reconciler_makes_declared_changes_in_active_orgs if {
	decide(reconciler, "role.create", in_org("active")) == {"allow": true, "rule": "reconciler"}
	decide(reconciler, "org.create", {"kind": "org"}) == {"allow": true, "rule": "reconciler"}
	decide(reconciler, "member.set_roles", in_org("suspended")) == {"allow": false, "rule": "org_inactive"}
}

test_the_reconciler_does_nothing_else if {
	every action in ["user.delete", "api_key.create", "keys.rotate", "declarative.pause", "policy.evaluate"] {
		decide(reconciler, action, in_org("active")) == {"allow": false, "rule": "reconciler_scope"}
	}
}
