-- Certificate revocation lists for the S/MIME store (src/smime/crl.rs): imported with
-- `certs import-crl` or fetched from a certificate's CRL distribution point. Only CRLs whose
-- signature verified with their issuer's certificate are stored; one per issuer (the newest).
CREATE TABLE smime_crls (
    fingerprint         TEXT PRIMARY KEY,     -- SHA-256 of the DER, lowercase hex
    issuer_fingerprint  TEXT NOT NULL,        -- the certificate whose key verified the CRL
    issuer              TEXT NOT NULL,        -- its subject, for people
    der                 BLOB NOT NULL,
    this_update         INTEGER NOT NULL,     -- unix seconds
    next_update         INTEGER,              -- unix seconds; NULL = not given
    revoked_count       INTEGER NOT NULL,
    source              TEXT NOT NULL,        -- 'imported' | 'fetched'
    url                 TEXT,                 -- fetched: the distribution point
    added_at            INTEGER NOT NULL
);
CREATE INDEX smime_crls_issuer ON smime_crls (issuer_fingerprint);
