-- Operators' allow and block lists (lists::ListStore, filters::lists). One row per entry:
-- which list, the sender it names (an address, "@domain" or a network in CIDR form), and
-- whom it is for (`scope`: "" for every recipient, a domain, or one address).
CREATE TABLE list_entries (
    id          INTEGER PRIMARY KEY,
    list        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    scope       TEXT NOT NULL DEFAULT '',
    comment     TEXT,
    -- Unix seconds after which the entry no longer applies; NULL: never.
    expires_at  INTEGER,
    added_at    INTEGER NOT NULL,
    -- Who added it: "uid 0 (root)".
    added_by    TEXT NOT NULL,
    UNIQUE (list, sender, scope)
);
