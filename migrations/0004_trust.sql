-- Level of trust (filters::trust): what the gateway learned from its users' outbound mail
-- and from authenticated inbound mail. Weights decay with time: `weight` is the value as of
-- `updated_at` (unix seconds); readers apply the configured half-life.

-- (local sender, external recipient) pairs our users write to.
CREATE TABLE trust_pairs (
    local_addr   TEXT NOT NULL,
    remote_addr  TEXT NOT NULL,
    weight       REAL NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (local_addr, remote_addr)
);
CREATE INDEX trust_pairs_remote ON trust_pairs (remote_addr);

-- Recipient domains our users write to.
CREATE TABLE trust_domains (
    domain      TEXT PRIMARY KEY,
    weight      REAL NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Operators' pinned levels ('high' | 'medium' | 'low' | 'none'); `portcullis trust set`.
CREATE TABLE trust_pins (
    domain  TEXT PRIMARY KEY,
    level   TEXT NOT NULL,
    set_at  INTEGER NOT NULL
);

-- Networks (IPv4 /24, IPv6 /64) that delivered authenticated mail for a domain.
CREATE TABLE trust_servers (
    domain      TEXT NOT NULL,
    network     TEXT NOT NULL,
    messages    INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (domain, network)
);

-- Each sending domain's TLS history (authenticated mail only).
CREATE TABLE trust_tls (
    domain       TEXT PRIMARY KEY,
    fingerprint  TEXT,                 -- SHA-256 of the last verified client certificate
    verified     INTEGER NOT NULL,     -- sessions with a verified client certificate
    unverified   INTEGER NOT NULL,     -- sessions without
    last_seen    INTEGER NOT NULL
);
