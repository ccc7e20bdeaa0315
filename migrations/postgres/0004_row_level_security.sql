-- Row-level security on every org-scoped table: a second line of defence behind the policy
-- engine, so that a unit of work confined to one org cannot read or change another org's rows
-- whatever a use case gets wrong.
--
-- The scope is the setting `uos.org` of the session or transaction:
--   unset or empty  no org-scoped row at all (a connection that says nothing sees nothing);
--   '*'             every org (the service sets this as its connections' default: reads and
--                   platform-wide changes span orgs);
--   an org id       that org's rows only (a unit of work that holds a capability for one org
--                   sets this for the rest of its transaction: `set_config(.., true)`).
-- Forced, so the tables' owner is bound too; only superusers and BYPASSRLS roles are not.
-- Uniqueness and foreign keys are checked across orgs as before (constraints bypass policies).

-- Whether the scope is every org.
create function uos_all_orgs() returns boolean
    language sql stable parallel safe
    as $$ select coalesce(current_setting('uos.org', true), '') = '*' $$;

-- The one org of the scope, or null (every org, or none).
create function uos_scope_org() returns uuid
    language sql stable parallel safe
    as $$
        select case when s ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    then s::uuid end
        from (select coalesce(current_setting('uos.org', true), '') as s) as scope
    $$;

alter table org enable row level security;
alter table org force row level security;
create policy org_scope on org
    using (uos_all_orgs() or org_id = uos_scope_org());

alter table membership enable row level security;
alter table membership force row level security;
create policy membership_scope on membership
    using (uos_all_orgs() or org_id = uos_scope_org());

alter table invite enable row level security;
alter table invite force row level security;
create policy invite_scope on invite
    using (uos_all_orgs() or org_id = uos_scope_org());

alter table custom_role enable row level security;
alter table custom_role force row level security;
create policy custom_role_scope on custom_role
    using (uos_all_orgs() or org_id = uos_scope_org());

alter table service_account enable row level security;
alter table service_account force row level security;
create policy service_account_scope on service_account
    using (uos_all_orgs() or org_id = uos_scope_org());

alter table api_key enable row level security;
alter table api_key force row level security;
create policy api_key_scope on api_key
    using (uos_all_orgs() or org_id = uos_scope_org());

-- Events of no org (logins, platform changes) belong to every scope that names one: a unit of
-- work confined to an org may record that it created a user, say. An org's events stay its own.
alter table audit_event enable row level security;
alter table audit_event force row level security;
create policy audit_event_scope on audit_event
    using (
        uos_all_orgs()
        or org_id = uos_scope_org()
        or (org_id is null and uos_scope_org() is not null)
    );
