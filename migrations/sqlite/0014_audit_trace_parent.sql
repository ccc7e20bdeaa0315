-- The W3C trace context an event was recorded in, when traces are exported: the outbox relay
-- publishes the event as a span of that trace and passes it on in the Kafka message. Outside
-- the hash (the payload column is what is signed); null for every earlier event.
alter table audit_event add column trace_parent text;
