-- The delivery queue. The message body lives in spool/<id>.eml, written and fsync'd
-- before this row is committed; the row is the promise to deliver it.
CREATE TABLE queue (
    id            TEXT PRIMARY KEY,
    direction     TEXT NOT NULL,              -- 'inbound' | 'outbound'
    state         TEXT NOT NULL,              -- 'queued' | 'held'
    mail_from     TEXT NOT NULL,              -- '' = null sender (DSN)
    recipients    TEXT NOT NULL,              -- JSON [{address, status, error}]
    received_at   INTEGER NOT NULL,           -- unix seconds
    size          INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,           -- unix seconds
    last_error    TEXT,
    client_ip     TEXT NOT NULL DEFAULT '',
    helo          TEXT NOT NULL DEFAULT '',
    score         REAL NOT NULL DEFAULT 0,
    symbols       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX queue_due ON queue (state, next_attempt);
