# The authorization decision of user-org-service. `decision` is the single entry point: an
# object {"allow": bool, "rule": string}, where `rule` names the rule that decided (clients see
# it on a 403). Rules are an ordered `else` chain: the first that matches decides, so more
# fundamental reasons (no credentials, inactive account) win over more specific ones.
package uos.authz

default decision := {"allow": false, "rule": "default_deny"}

decision := {"allow": true, "rule": "public"} if {
	# Public for everyone, not only anonymous callers: a caller with a token could simply drop it.
	input.action in public_actions
} else := {"allow": false, "rule": "org_inactive"} if {
	# The reconciler changes active orgs only; suspending or deleting one is for people.
	input.principal.kind == "reconciler"
	input.resource.org_status in {"suspended", "deleted"}
} else := {"allow": true, "rule": "reconciler"} if {
	input.principal.kind == "reconciler"
	input.action in reconciler_actions
} else := {"allow": false, "rule": "reconciler_scope"} if {
	input.principal.kind == "reconciler"
} else := {"allow": false, "rule": "authentication_required"} if {
	# Written as `not ... in` so that a missing field denies instead of falling through.
	not input.principal.kind in authenticated_kinds
} else := {"allow": false, "rule": "password_reset_required"} if {
	input.principal.status == "password_reset_required"
	not input.action in password_reset_actions
} else := {"allow": false, "rule": "inactive_principal"} if {
	# Also catches a missing status: an account we cannot place is not trusted.
	not input.principal.status in usable_statuses
} else := {"allow": false, "rule": "user_required"} if {
	# A service account acts inside its org only; self and platform actions are for people.
	input.principal.kind == "service_account"
	not action_permission[input.action]
	not input.action in machine_self_actions
} else := {"allow": true, "rule": "platform_admin"} if {
	input.principal.platform_admin == true
} else := {"allow": true, "rule": "authenticated"} if {
	input.action in self_actions
} else := {"allow": true, "rule": "self"} if {
	input.action == "user.read"
	input.resource.is_self == true
} else := {"allow": false, "rule": "platform_admin_required"} if {
	input.action in platform_actions
} else := {"allow": false, "rule": "platform_admin_required"} if {
	# The platform-wide audit log; an org's own log names its org.
	input.action == "audit.read"
	not has_resource_org
} else := org_decision if {
	action_permission[input.action]
}

has_resource_org if is_string(input.resource.org_id)

# The caller's org context counts only for the org the resource lives in; a context for some
# other org is the same as none.
is_member if {
	has_resource_org
	input.principal.org.org_id == input.resource.org_id
}

required_permission := action_permission[input.action]

# Org-scoped decision, again first match wins. "not_member" is turned into a 404 by the caller so
# that outsiders cannot learn whether an org exists.
org_decision := {"allow": false, "rule": "not_member"} if {
	not is_member
} else := {"allow": false, "rule": "membership_suspended"} if {
	not input.principal.org.membership_status == "active"
} else := {"allow": false, "rule": "org_status_unknown"} if {
	not input.resource.org_status in org_statuses
} else := {"allow": false, "rule": "org_deleted"} if {
	input.resource.org_status == "deleted"
	not input.action in deleted_org_actions
	not input.action in lifecycle_actions
} else := {"allow": false, "rule": "org_suspended"} if {
	input.resource.org_status == "suspended"
	not input.action in suspended_org_actions
	not input.action in lifecycle_actions
} else := {"allow": false, "rule": concat("", ["missing_permission:", required_permission])} if {
	# A missing or malformed permissions list denies here too.
	not required_permission in input.principal.org.permissions
} else := {"allow": false, "rule": "owner_required"} if {
	# Only owners make or unmake owners; the service separately keeps at least one per org.
	input.resource.grants_owner == true
	not "owner" in input.principal.org.roles
} else := {"allow": false, "rule": "permission_escalation"} if {
	# Nobody hands a role, member, invite, service account or key a permission they do not
	# hold themselves.
	some p in input.resource.grants_permissions
	not p in input.principal.org.permissions
} else := {"allow": true, "rule": concat("", ["permission:", required_permission])} if {
	required_permission
}
