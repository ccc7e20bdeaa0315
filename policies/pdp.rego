# Decisions for downstream services (`POST /v1/policy/evaluate`): may this principal do this
# action on this resource now? `decision` is the single entry point: {"allow", "reasons",
# "obligations"}. It allows exactly when `deny` is empty, so every reason to refuse is reported,
# not only the first. Budgets are checked by the service after this policy (they change with
# every spend, and a policy decision is cached by its input). See docs/policy.md.
#
# Operators add rules by shipping more files of package `uos.pdp` in their policy directory:
# each `deny contains reason(...) if {...}` adds a way to refuse.
package uos.pdp

default obligations := {}

decision := {
	"allow": count(deny) == 0,
	"reasons": [r | some r in deny],
	"obligations": obligations,
}

reason(code, policy, message) := {"code": code, "policy": policy, "message": message}

deny contains reason("org_inactive", "uos.pdp.org_active", "the resource's org is not active") if {
	# Also catches a missing status: an org we cannot place allows nothing.
	not input.resource.org_status == "active"
}

deny contains reason("not_member", "uos.pdp.membership", "the principal is not a member of the resource's org") if {
	not input.principal.member == true
}

deny contains reason("membership_suspended", "uos.pdp.membership", "the principal's membership in the org is suspended") if {
	input.principal.member == true
	not input.principal.membership_status == "active"
}

# A resource may name the roles it needs (`attributes.required_roles`, a list of role names,
# built-in or custom): the principal must hold each one, directly or by inheritance.
deny contains reason("missing_role", "uos.pdp.required_roles", concat("", ["the principal lacks the role ", role])) if {
	# Iterating a string, or naming a role by a number, is an evaluation error in regorus: it
	# would deny with `policy_error` instead of `invalid_attribute` (pdp_test.rego checks).
	is_array(required_roles)
	some role in required_roles
	is_string(role)
	not role in input.principal.roles
}

required_roles := object.get(input.resource, ["attributes", "required_roles"], [])

# Anything but a list of strings there is a mistake of the caller; refuse rather than ignore it.
deny contains reason("invalid_attribute", "uos.pdp.required_roles", "resource.attributes.required_roles must be a list of role names") if {
	not is_array(required_roles)
}

deny contains reason("invalid_attribute", "uos.pdp.required_roles", "resource.attributes.required_roles must be a list of role names") if {
	is_array(required_roles)
	some role in required_roles
	not is_string(role)
}
