-- The audit log: one row per event the audit-logger received, payload kept as sent.
-- Unique on the event id, so a redelivery (or a re-publish of the same event) adds nothing.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    user_id     text        NOT NULL,
    subject     text        NOT NULL,
    stream      text        NOT NULL,
    stream_seq  bigint      NOT NULL,
    payload     jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT audit_log_event_id_key UNIQUE (event_id)
);

CREATE INDEX audit_log_user_received ON audit_log (user_id, received_at DESC);
