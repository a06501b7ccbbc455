-- Notifications for users, written by the notification-service; one per event.
CREATE TABLE user_notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid        NOT NULL,
    user_id    text        NOT NULL,
    trash_id   uuid        NOT NULL,
    message    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at    timestamptz,
    CONSTRAINT user_notifications_event_id_key UNIQUE (event_id)
);

-- A user's notifications, newest first.
CREATE INDEX user_notifications_user_newest ON user_notifications (user_id, created_at DESC);
