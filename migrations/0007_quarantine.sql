-- The quarantine (the `quarantine` crate): a held message is stored once, with one entry
-- per held recipient. The queue keeps only what it delivers.

-- One row per held message. Display fields are decoded, escaped and bounded when stored.
CREATE TABLE quarantine_messages (
    id           TEXT PRIMARY KEY,            -- the id the copy got when it was held
    direction    TEXT NOT NULL,               -- 'inbound' | 'outbound'
    mail_from    TEXT NOT NULL,               -- envelope sender; '' = null sender
    hdr_from     TEXT NOT NULL DEFAULT '',
    hdr_to       TEXT NOT NULL DEFAULT '',
    subject      TEXT NOT NULL DEFAULT '',
    hdr_date     TEXT NOT NULL DEFAULT '',
    message_id   TEXT NOT NULL DEFAULT '',    -- header Message-ID, without <>
    size         INTEGER NOT NULL,            -- bytes of the stored message
    client_ip    TEXT NOT NULL DEFAULT '',
    helo         TEXT NOT NULL DEFAULT '',
    tls          TEXT NOT NULL DEFAULT '',    -- 'TLSv1.3 TLS_AES_256_GCM_SHA384'; '' = none
    score        REAL NOT NULL,
    symbols      TEXT NOT NULL DEFAULT '[]',  -- JSON [{"name", "points"}]
    reason       TEXT NOT NULL,               -- 'score 9.00', 'forced by CLAM_VIRUS'
    received_at  INTEGER NOT NULL,            -- unix seconds
    expires_at   INTEGER NOT NULL,            -- unix seconds
    -- 0: moved here from the queue by this migration; the gateway fills the display fields
    -- and symbols from the body and takes over its spool file at the next start.
    adopted      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX quarantine_messages_expiry ON quarantine_messages (expires_at);

-- Bodies up to the queue's inline limit; larger ones are files in quarantine/<id>.eml.
-- A body is removed when no entry of its message is held any more.
CREATE TABLE quarantine_bodies (
    id    TEXT PRIMARY KEY,
    data  BLOB NOT NULL
);

-- One row per held recipient: what an operator lists, releases and deletes. The columns
-- a listing filters on are copied from the message, so that a search reads one table and
-- each filter has an index that also gives the order (newest first).
CREATE TABLE quarantine_entries (
    id             INTEGER PRIMARY KEY,
    message        TEXT NOT NULL REFERENCES quarantine_messages(id),
    recipient      TEXT NOT NULL,             -- lowercase
    rcpt_domain    TEXT NOT NULL,
    state          TEXT NOT NULL,             -- 'held' | 'released' | 'deleted' | 'expired'
    changed_at     INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    direction      TEXT NOT NULL,
    sender         TEXT NOT NULL,             -- envelope sender, lowercase
    sender_domain  TEXT NOT NULL,
    subject        TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    rule           TEXT NOT NULL,             -- what held it: a symbol name, or 'score'
    score          REAL NOT NULL
);
CREATE INDEX quarantine_entries_time ON quarantine_entries (state, received_at, id);
CREATE INDEX quarantine_entries_message ON quarantine_entries (message);
CREATE INDEX quarantine_entries_recipient ON quarantine_entries (recipient, received_at, id);
CREATE INDEX quarantine_entries_rcpt_domain ON quarantine_entries (rcpt_domain, received_at, id);
CREATE INDEX quarantine_entries_sender ON quarantine_entries (sender, received_at, id);
CREATE INDEX quarantine_entries_sender_domain ON quarantine_entries (sender_domain, received_at, id);
CREATE INDEX quarantine_entries_message_id ON quarantine_entries (message_id);
CREATE INDEX quarantine_entries_rule ON quarantine_entries (rule, received_at, id);
CREATE INDEX quarantine_entries_score ON quarantine_entries (score);

-- The symbols of a held message, to find messages by symbol.
CREATE TABLE quarantine_symbols (
    name     TEXT NOT NULL,
    message  TEXT NOT NULL,
    points   REAL NOT NULL,
    PRIMARY KEY (name, message)
);
CREATE INDEX quarantine_symbols_message ON quarantine_symbols (message);

-- Every change of an entry's state: who (uid and name as the caller says), when, what,
-- from which state. Kept when the entry itself is purged at its message's expiry.
CREATE TABLE quarantine_audit (
    id          INTEGER PRIMARY KEY,
    entry       INTEGER NOT NULL,
    message     TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    action      TEXT NOT NULL,                -- 'release' | 'delete' | 'expire'
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    uid         INTEGER NOT NULL,
    user_name   TEXT NOT NULL,
    at          INTEGER NOT NULL,             -- unix seconds
    detail      TEXT NOT NULL DEFAULT ''      -- e.g. the queue id of a released copy
);
CREATE INDEX quarantine_audit_message ON quarantine_audit (message);
CREATE INDEX quarantine_audit_action ON quarantine_audit (action);

-- Held queue rows move here. Their display fields are filled in by the gateway from the
-- body, and their symbols (the queue's `NAME(points), ...` summary until then) parsed
-- (adopted = 0); inline bodies move with them, spool files at that start.
INSERT INTO quarantine_messages
    (id, direction, mail_from, size, client_ip, helo, score, symbols, reason, received_at,
     expires_at, adopted)
SELECT id, direction, mail_from, size, client_ip, helo, score, symbols,
       printf('score %.2f', score), received_at, received_at + 30 * 86400, 0
FROM queue WHERE state = 'held';

INSERT INTO quarantine_entries
    (message, recipient, rcpt_domain, state, changed_at, received_at, direction, sender,
     sender_domain, subject, message_id, rule, score)
SELECT q.id, lower(json_extract(r.value, '$.address')),
       lower(substr(json_extract(r.value, '$.address'),
                    instr(json_extract(r.value, '$.address'), '@') + 1)),
       'held', q.received_at, q.received_at, q.direction, lower(q.mail_from),
       CASE WHEN instr(q.mail_from, '@') > 0
            THEN lower(substr(q.mail_from, instr(q.mail_from, '@') + 1)) ELSE '' END,
       '', '', 'score', q.score
FROM queue q, json_each(q.recipients) r
WHERE q.state = 'held';

INSERT INTO quarantine_bodies (id, data)
SELECT b.id, b.data FROM bodies b JOIN queue q ON q.id = b.id WHERE q.state = 'held';
DELETE FROM bodies WHERE id IN (SELECT id FROM queue WHERE state = 'held');
DELETE FROM queue WHERE state = 'held';
