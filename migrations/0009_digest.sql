-- Quarantine reports mailed to recipients (`[digest]`).

-- A recipient's own report frequency, set through the API or the console; without a row,
-- `[digest] schedule` applies.
CREATE TABLE digest_recipients (
    recipient   TEXT PRIMARY KEY,             -- lowercase
    frequency   TEXT NOT NULL,                -- 'off' | 'hourly' | 'daily' | 'weekly'
    changed_at  INTEGER NOT NULL
);

-- What a recipient's last report covered: entries after `last_entry` are new.
CREATE TABLE digest_sent (
    recipient   TEXT PRIMARY KEY,
    last_entry  INTEGER NOT NULL,
    sent_at     INTEGER NOT NULL
);

-- Action links used once: the SHA-256 of the token, kept until the entry would expire.
CREATE TABLE digest_spent (
    token_hash  BLOB PRIMARY KEY,
    spent_at    INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

-- A recipient asked an operator to release an entry it may not release itself (a virus).
ALTER TABLE quarantine_entries ADD COLUMN release_requested_at INTEGER;
CREATE INDEX quarantine_entries_requested ON quarantine_entries (release_requested_at)
    WHERE release_requested_at IS NOT NULL;
