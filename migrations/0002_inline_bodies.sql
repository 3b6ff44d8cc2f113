-- Bodies of small messages live here, committed in the same transaction as their queue
-- row: one WAL fsync for a whole group instead of a file create + fsync + unlink each.
-- Larger messages (see queue::INLINE_LIMIT) stay files in spool/.
CREATE TABLE bodies (
    id    TEXT PRIMARY KEY,
    data  BLOB NOT NULL
);
