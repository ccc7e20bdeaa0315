-- The service plans each statement once (plan_cache_mode = force_generic_plan), so a member
-- listing filtered by status is planned without knowing which status it asks for; the planner
-- then divides the org's rows by the distinct statuses it counted. While every membership has
-- the same status, it counts one, the filter looks free, and a listing of the rare status (the
-- suspended members of a large org) walked the org's index (`membership_org_idx`) through all
-- of its members instead of taking its range of `membership_org_status_idx`. A membership has
-- one of two statuses, so that is what the planner is told, whatever the rows hold today.
alter table membership alter column status set (n_distinct = 2);
analyze membership (status);
