-- A member listing filtered by status, paged in membership creation order. The org's index
-- (`membership_org_idx`) would walk every member of the org to find those of a rare status
-- (the suspended ones of a large org), reading the whole org for one page; with the status
-- between the org and the id, the page is one range of this index, in the order it is served.
create index membership_org_status_idx on membership (org_id, status, membership_id);
