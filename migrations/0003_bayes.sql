-- The Bayesian model (filters::bayes): per-token ham/spam message counts, learned
-- incrementally. `token` is the tokenizer's 64-bit feature hash stored as a signed integer.
CREATE TABLE bayes_tokens (
    token  INTEGER PRIMARY KEY,
    ham    INTEGER NOT NULL DEFAULT 0,   -- ham messages that contained the token
    spam   INTEGER NOT NULL DEFAULT 0    -- spam messages that contained the token
);
-- One row: messages learned per class, and a version bumped on every change (running
-- gateways reload the model when it moves).
CREATE TABLE bayes_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    ham_msgs   INTEGER NOT NULL DEFAULT 0,
    spam_msgs  INTEGER NOT NULL DEFAULT 0,
    version    INTEGER NOT NULL DEFAULT 0
);
INSERT INTO bayes_meta (id) VALUES (1);
-- Messages learned (digest of their token set) and as what: learning the same message
-- twice is a no-op, learning it as the other class moves it (quarantine release after a
-- spam autolearn, for instance).
CREATE TABLE bayes_learned (
    digest      TEXT PRIMARY KEY,
    class       TEXT NOT NULL,               -- 'ham' | 'spam'
    learned_at  INTEGER NOT NULL             -- unix seconds
);
