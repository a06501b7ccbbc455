-- Analytics counters. The analytics-service records each event id it counted in the same
-- transaction as the counters, so a redelivered event is recognised and counted once.
CREATE TABLE analytics_processed_events (
    event_id     uuid PRIMARY KEY,
    event_type   text        NOT NULL,
    user_id      text        NOT NULL,
    stream_seq   bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Per event type: how many events, and (for FileDeletedEvent) how many bytes went to the trash.
CREATE TABLE analytics_event_counts (
    event_type text   PRIMARY KEY,
    events     bigint NOT NULL DEFAULT 0,
    bytes      bigint NOT NULL DEFAULT 0
);

-- Per user and event type: the same two numbers.
CREATE TABLE analytics_user_counts (
    user_id    text   NOT NULL,
    event_type text   NOT NULL,
    events     bigint NOT NULL DEFAULT 0,
    bytes      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, event_type)
);
