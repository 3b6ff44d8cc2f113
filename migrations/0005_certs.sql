-- S/MIME certificate and key store (src/smime/store.rs). One row per certificate, keyed by
-- the SHA-256 fingerprint of its DER. Everything else in a row is read from the DER again
-- when the store loads; the columns are for people and SQL looking at the database.
CREATE TABLE smime_certs (
    fingerprint    TEXT PRIMARY KEY,          -- SHA-256 of the DER, lowercase hex
    der            BLOB NOT NULL,
    subject        TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    serial         TEXT NOT NULL,             -- hex
    not_before     INTEGER NOT NULL,          -- unix seconds
    not_after      INTEGER NOT NULL,
    key_usage      TEXT,                      -- comma-separated names; NULL = no extension
    ext_key_usage  TEXT,                      -- comma-separated names; NULL = no extension
    is_ca          INTEGER NOT NULL,
    source         TEXT NOT NULL,             -- 'imported' | 'harvested' | 'trusted' (certs trust-ca)
    message_id     TEXT,                      -- harvested: Message-ID of the signed message
    added_at       INTEGER NOT NULL,          -- unix seconds (harvested: the harvest date)
    chain_status   TEXT NOT NULL,             -- 'trusted (...)' / 'untrusted: why', as last checked
    capabilities   TEXT,                      -- owner's SMIMECapabilities, JSON list; NULL = not seen
    trusted        INTEGER NOT NULL DEFAULT 0,-- 1: a trust anchor added with `certs trust-ca`
    private_key    BLOB                       -- PKCS#8 sealed with AES-256-GCM; NULL = none
);
-- The certificate's e-mail addresses (SAN rfc822Name + subject emailAddress, lowercase).
CREATE TABLE smime_cert_addresses (
    address      TEXT NOT NULL,
    fingerprint  TEXT NOT NULL REFERENCES smime_certs(fingerprint) ON DELETE CASCADE,
    PRIMARY KEY (address, fingerprint)
);
-- Domains of the addresses, and the domains a certificate is the gateway identity of
-- (`certs import --domain D`: domain-to-domain encryption and the signing fallback).
CREATE TABLE smime_cert_domains (
    domain       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL REFERENCES smime_certs(fingerprint) ON DELETE CASCADE,
    gateway      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, fingerprint)
);
CREATE INDEX smime_cert_addresses_fp ON smime_cert_addresses (fingerprint);
CREATE INDEX smime_cert_domains_fp ON smime_cert_domains (fingerprint);
-- Bumped on every change: running gateways reload the store when it moves.
CREATE TABLE smime_meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO smime_meta (id) VALUES (1);
