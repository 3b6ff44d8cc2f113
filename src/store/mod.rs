//! The gateway's one database: opened, migrated and made private here, then handed to its
//! owners. Each owner keeps its own SQL in its own room — the queue (`queue::store`), the
//! quarantine (the `quarantine` crate), the Bayes model (`bayes::store`), the level of trust
//! (`trust`), the certificate store (`certs::store`) — behind functions, in portable SQL (`?` placeholders, no SQLite-only
//! syntax), so that another database could later sit behind the same functions for several
//! gateways sharing one state.
//!
//! SQLite in WAL mode, `synchronous=FULL`: a commit is on disk when it returns. The queue's
//! committer gets a connection of its own ([`Database::writer`]), so one writer groups the
//! sessions' commits while readers use the shared pool.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How every write transaction begins: with the write lock taken at once. A transaction
/// that reads first and writes later fails ("database is locked", SQLITE_BUSY_SNAPSHOT)
/// when another connection wrote in between; one that begins immediately waits its turn
/// (busy timeout) instead.
pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Every table's schema, in order (`migrations/`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The database file inside the data directory.
const FILE: &str = "queue.db";

/// The open database of a data directory.
#[derive(Clone)]
pub struct Database {
    pool: SqlitePool,
    options: SqliteConnectOptions,
    path: PathBuf,
}

impl Database {
    /// [`Database::open`] with the data directory named in the error, as the gateway and
    /// the offline commands report it.
    pub async fn open_data_dir(data_dir: &Path) -> anyhow::Result<Database> {
        use anyhow::Context;
        Database::open(data_dir)
            .await
            .with_context(|| format!("cannot open the data directory {}", data_dir.display()))
    }

    /// Open `data_dir/queue.db`, creating the directory and the file (both private) and
    /// applying every migration.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Database> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(FILE);
        // SQLite gives the -wal and -shm files the database file's mode: make it private
        // before the first connection creates them.
        create_private_file(&path)?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = pool_options(4)
            .connect_with(options.clone())
            .await
            .map_err(|e| unusable(&path, "cannot open", &e))?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => unusable(&path, "cannot migrate", &e),
            e => anyhow::anyhow!("cannot migrate the database {}: {e}", path.display()),
        })?;
        // A gateway that cannot write cannot take mail: find out now, not at the first 250.
        let mut probe = pool
            .acquire()
            .await
            .map_err(|e| unusable(&path, "cannot open", &e))?;
        sqlx::Connection::begin_with(&mut *probe, BEGIN_WRITE)
            .await
            .map_err(|e| unusable(&path, "cannot write to", &e))?
            .rollback()
            .await?;
        drop(probe);
        // Held messages the migration moved from the queue into the quarantine: their
        // display fields come from the body, their spool files move to quarantine/.
        let quarantine_dir = crate::queue::quarantine_dir(data_dir);
        create_private_dir(&quarantine_dir)?;
        let adopted = quarantine::Store::new(pool.clone(), quarantine_dir)
            .adopt_migrated(
                &data_dir.join("spool"),
                crate::config::defaults::QUARANTINE_FIELD_MAX_CHARS,
            )
            .await
            .context("cannot move the held messages of the queue into the quarantine")?;
        if adopted > 0 {
            tracing::info!(
                adopted,
                "held messages moved from the queue into the quarantine"
            );
        }
        // An older data directory may have 0644 files. Opened by root (the CLI working
        // offline), the files SQLite just made would be root's and the gateway, running as
        // the data directory's owner, could not open them: they go to that owner.
        let owner = nix::unistd::geteuid()
            .is_root()
            .then(|| std::fs::metadata(data_dir).ok())
            .flatten()
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .filter(|uid| *uid != 0);
        for file in [FILE, "queue.db-wal", "queue.db-shm"] {
            let path = data_dir.join(file);
            restrict_permissions(&path);
            if let Some(uid) = owner
                && path.exists()
            {
                let _ = std::os::unix::fs::lchown(&path, Some(uid), None);
            }
        }
        Ok(Database {
            pool,
            options,
            path,
        })
    }

    /// The shared pool, for an owner's handle (`QueueStore::new`, `BayesStore::new`, ...).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A connection of its own for the queue's one writer.
    pub async fn writer(&self) -> anyhow::Result<SqlitePool> {
        pool_options(1)
            .connect_with(self.options.clone())
            .await
            .with_context(|| format!("cannot open a writer on {}", self.path.display()))
    }
}

/// Why the database cannot be used, with what to do about it.
fn unusable(path: &Path, doing: &str, e: &sqlx::Error) -> anyhow::Error {
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        // Extended result codes carry the primary code in the low byte.
        .map(|c| c & 0xff);
    let advice = match code {
        // SQLITE_CORRUPT, SQLITE_NOTADB
        Some(11) | Some(26) => {
            "the file is damaged or is not a database: stop here and restore it from a \
             backup; moving it aside starts an empty queue and quarantine (the spool files \
             stay, unreferenced). The gateway does not change the file."
        }
        // SQLITE_BUSY, SQLITE_LOCKED
        Some(5) | Some(6) => {
            "the database is locked by another process (a second gateway on the same \
             data_dir, a backup or sqlite3 shell holding a transaction): stop it, then start \
             again"
        }
        // SQLITE_FULL
        Some(13) => "the disk is full: free space in the data directory, then start again",
        // SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM
        Some(8) | Some(14) | Some(3) => {
            "check that the data directory and the file belong to the gateway's user and \
             are writable"
        }
        _ => "",
    };
    if advice.is_empty() {
        anyhow::anyhow!("{doing} the database {}: {e}", path.display())
    } else {
        anyhow::anyhow!("{doing} the database {}: {e}; {advice}", path.display())
    }
}

/// A pool of `connections` that never hands out a connection the driver still counts in a
/// transaction. SQLite ends a transaction by itself when a write or COMMIT fails with "disk
/// full" or an I/O error; the driver's ROLLBACK then fails, its count stays at one, and every
/// later BEGIN on that connection would be refused — the gateway would stay unable to store
/// mail after the disk has space again. Such a connection is closed and replaced instead.
fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .before_acquire(|conn, _| {
            Box::pin(async move {
                use sqlx::Connection;
                // The round trip runs after any rollback still queued on the connection.
                conn.ping().await?;
                if conn.is_in_transaction() {
                    tracing::warn!(
                        "a database connection left in a failed transaction is replaced"
                    );
                    return Ok(false);
                }
                Ok(true)
            })
        })
}

/// Create a directory readable only by the service user (mail bodies and keys are private);
/// an existing one gets mode 0700, keeping only a group's traverse bit (the admin socket's
/// group passes through the data directory to reach it, and can list or read nothing).
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create directory {}", path.display()))?;
    } else {
        let current = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        let mode = 0o700 | (current & 0o010);
        if current & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
        }
    }
    Ok(())
}

/// Create `path` empty with mode 0600 unless it exists.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Mode 0600 on an existing file; a missing file is fine.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_migrates_and_keeps_every_file_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let db = Database::open(&data).await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM queue")
            .execute(db.pool())
            .await
            .unwrap();
        // Opening twice (the CLI beside a running gateway) is fine.
        Database::open(&data).await.unwrap();
        for entry in std::fs::read_dir(&data).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
        }
        assert!(data.join("queue.db-wal").exists());
    }

    /// A data directory from before the quarantine (schema up to 0006) with held queue rows:
    /// opening it moves them — rows, inline bodies and spool files — into the quarantine,
    /// and leaves the queued message alone.
    #[tokio::test]
    async fn held_queue_rows_move_into_the_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        create_private_dir(&data).unwrap();
        std::fs::create_dir(data.join("spool")).unwrap();
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(data.join(FILE))
            .create_if_missing(true);
        let old = SqlitePool::connect_with(options).await.unwrap();
        MIGRATOR.run_to(6, &old).await.unwrap();
        let body = b"From: Spam <spam@bad.example>\r\nSubject: =?UTF-8?Q?cheap_pills?=\r\n\
Message-ID: <m1@bad.example>\r\n\r\nbuy\r\n";
        for (id, state, rcpts) in [
            (
                "AA01",
                "held",
                r#"[{"address":"ann@example.test","status":"pending"},{"address":"bob@example.test","status":"pending"}]"#,
            ),
            (
                "AA02",
                "held",
                r#"[{"address":"carl@example.test","status":"pending"}]"#,
            ),
            (
                "AA03",
                "queued",
                r#"[{"address":"dora@example.test","status":"pending"}]"#,
            ),
        ] {
            sqlx::query(
                "INSERT INTO queue (id, direction, state, mail_from, recipients, received_at, \
                 size, next_attempt, client_ip, helo, score, symbols) \
                 VALUES (?, 'inbound', ?, 'spam@bad.example', ?, 1000, ?, 0, '192.0.2.9', \
                 'bad.example', 9.5, 'BAYES_SPAM(8.50), HDR_MISSING_DATE(1.00)')",
            )
            .bind(id)
            .bind(state)
            .bind(rcpts)
            .bind(if id == "AA02" {
                300_000
            } else {
                body.len() as i64
            })
            .execute(&old)
            .await
            .unwrap();
        }
        for id in ["AA01", "AA03"] {
            sqlx::query("INSERT INTO bodies (id, data) VALUES (?, ?)")
                .bind(id)
                .bind(&body[..])
                .execute(&old)
                .await
                .unwrap();
        }
        std::fs::write(data.join("spool/AA02.eml"), body).unwrap();
        old.close().await;

        let db = Database::open(&data).await.unwrap();
        let queue: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM queue")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(queue, vec![("AA03".to_string(), "queued".to_string())]);
        let store = quarantine::Store::new(db.pool().clone(), data.join("quarantine"));
        let page = store
            .list(
                &quarantine::Filter::default(),
                quarantine::PageRequest::default(),
            )
            .await
            .unwrap();
        let mut entries: Vec<(String, String)> = page
            .entries
            .iter()
            .map(|e| (e.message.clone(), e.recipient.clone()))
            .collect();
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("AA01".into(), "ann@example.test".into()),
                ("AA01".into(), "bob@example.test".into()),
                ("AA02".into(), "carl@example.test".into()),
            ]
        );
        let e = &page.entries[0];
        assert_eq!(e.subject, "cheap pills");
        assert_eq!(e.message_id, "m1@bad.example");
        assert_eq!(e.symbols.len(), 2);
        assert_eq!(e.reason, "score 9.50");
        assert_eq!(e.expires_at, 1000 + 30 * 86400);
        // Bodies: inline moved with the row, the spool file into quarantine/.
        assert_eq!(store.body("AA01").await.unwrap().unwrap(), body);
        assert_eq!(store.body("AA02").await.unwrap().unwrap(), body);
        assert!(!data.join("spool/AA02.eml").exists());
        let filter = quarantine::Filter {
            symbol: Some("BAYES_SPAM".into()),
            subject: Some("pills".into()),
            ..quarantine::Filter::default()
        };
        let found = store
            .list(&filter, quarantine::PageRequest::default())
            .await
            .unwrap();
        assert_eq!(found.entries.len(), 3);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bodies")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(left, 1, "only the queued message's body stays in the queue");
        // Opening again changes nothing.
        drop(db);
        let db = Database::open(&data).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantine_entries")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}
