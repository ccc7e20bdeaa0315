# Rego unit tests of the decision point (`data.uos.pdp.decision`, pdp.rego). Every `test_*` rule
# must be true: the service runs them whenever it loads a bundle and refuses the bundle if one
# fails. Operators who add `deny` rules add tests like these next to them.
package uos.pdp_test

org := "0190aaaa-0000-7000-8000-000000000001"

active_member := {
	"type": "user",
	"id": "0190aaaa-0000-7000-8000-0000000000aa",
	"status": "active",
	"member": true,
	"membership_status": "active",
	"roles": ["member", "analyst"],
	"permissions": ["org:read"],
	"scopes": [],
}

resource(attributes) := {
	"type": "model",
	"id": "gpt-large",
	"org_id": org,
	"org_status": "active",
	"attributes": attributes,
}

decide(principal, res) := d if {
	d := data.uos.pdp.decision with input as {"principal": principal, "action": "model.invoke", "resource": res, "context": {}}
}

codes(decision) := {r.code | some r in decision.reasons}

test_an_active_member_is_allowed if {
	d := decide(active_member, resource({}))
	d.allow
	d.reasons == []
}

test_an_outsider_is_not_a_member if {
	outsider := object.union(active_member, {"member": false, "membership_status": null})
	d := decide(outsider, resource({}))
	not d.allow
	codes(d) == {"not_member"}
}

test_an_inactive_org_allows_nothing if {
	res := object.union(resource({}), {"org_status": "suspended"})
	d := decide(active_member, res)
	not d.allow
	codes(d) == {"org_inactive"}
}

test_a_suspended_membership_is_refused if {
	suspended := object.union(active_member, {"membership_status": "suspended"})
	d := decide(suspended, resource({}))
	not d.allow
	codes(d) == {"membership_suspended"}
}

test_required_roles_must_all_be_held if {
	decide(active_member, resource({"required_roles": ["analyst"]})).allow
	d := decide(active_member, resource({"required_roles": ["analyst", "admin"]}))
	not d.allow
	codes(d) == {"missing_role"}
	d.reasons[0].message == "the principal lacks the role admin"
}

test_required_roles_must_be_a_list_of_names if {
	d := decide(active_member, resource({"required_roles": "analyst"}))
	not d.allow
	codes(d) == {"invalid_attribute"}
	not decide(active_member, resource({"required_roles": [7]})).allow
}

test_every_reason_is_reported if {
	outsider := object.union(active_member, {"member": false})
	res := object.union(resource({}), {"org_status": "deleted"})
	codes(decide(outsider, res)) == {"not_member", "org_inactive"}
}
