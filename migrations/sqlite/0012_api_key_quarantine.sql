-- API-key quarantine: a key whose request rate jumped past a multiple of its own baseline is
-- refused until an admin releases it. Both null: not quarantined. The reason is for people
-- (the observed rate against the baseline), never the key's secret. No index: the key is
-- always found by its id or prefix, and nothing lists quarantined keys across the table.
alter table api_key add column quarantined_at text;
alter table api_key add column quarantine_reason text;
