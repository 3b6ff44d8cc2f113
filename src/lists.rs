//! The allow and block lists on disk (table of `migrations/0008_lists.sql`), and the entry
//! types the admin API speaks. The matching is `filters::lists`; this module stores the
//! entries, validates new ones, and builds the in-memory [`ListSet`] the stage reads.

use anyhow::Context;
use filters::lists::{Entry, ListKind, ListSet, Scope, Sender};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqlitePool;
use utoipa::ToSchema;

/// Longest comment an entry may carry (characters).
pub const MAX_COMMENT_CHARS: usize = 1000;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    /// Wanted mail: `LIST_ALLOW`, the spam filters skipped.
    Allow,
    /// Unwanted mail: refused in the SMTP dialog (`LIST_BLOCK`).
    Block,
}

impl ListName {
    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    fn kind(self) -> ListKind {
        match self {
            ListName::Allow => ListKind::Allow,
            ListName::Block => ListKind::Block,
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListEntry {
    pub id: i64,
    pub list: ListName,
    /// `bob@partner.example`, `@partner.example` or a network (`192.0.2.0/24`).
    pub sender: String,
    /// Whom the entry is for: absent for every recipient, else a domain or one address.
    pub recipient: Option<String>,
    pub comment: Option<String>,
    /// Unix seconds after which the entry no longer applies.
    pub expires_at: Option<i64>,
    /// The entry no longer applies (kept until removed, to show what was there).
    pub expired: bool,
    /// Unix seconds.
    pub added_at: i64,
    /// Who added it, e.g. `uid 0 (root)`.
    pub added_by: String,
}

/// A new entry (an existing one for the same list, sender and recipient is updated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewListEntry {
    pub list: ListName,
    /// `bob@partner.example`, `@partner.example` or a network (`192.0.2.0/24`).
    pub sender: String,
    /// Absent: every recipient; `example.test` (or `@example.test`): that domain's
    /// recipients; `user@example.test`: that recipient.
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// Unix seconds after which the entry no longer applies.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A new entry that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

/// A validated new entry, as it is stored.
struct Checked {
    sender: Sender,
    scope: Scope,
    comment: Option<String>,
}

impl NewListEntry {
    fn check(&self, now: i64) -> Result<Checked, Invalid> {
        let sender = Sender::parse(&self.sender).map_err(|message| Invalid {
            field: "sender",
            message,
        })?;
        let scope = Scope::parse(self.recipient.as_deref()).map_err(|message| Invalid {
            field: "recipient",
            message,
        })?;
        let comment = self
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        if let Some(c) = comment {
            if c.chars().count() > MAX_COMMENT_CHARS {
                return Err(Invalid {
                    field: "comment",
                    message: format!("at most {MAX_COMMENT_CHARS} characters"),
                });
            }
            if c.chars().any(|ch| ch.is_control()) {
                return Err(Invalid {
                    field: "comment",
                    message: "one line of text, without control characters".into(),
                });
            }
        }
        if let Some(t) = self.expires_at
            && t <= now
        {
            return Err(Invalid {
                field: "expires_at",
                message: format!("{t} is in the past (unix seconds; now is {now})"),
            });
        }
        Ok(Checked {
            sender,
            scope,
            comment: comment.map(str::to_string),
        })
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    list: String,
    sender: String,
    scope: String,
    comment: Option<String>,
    expires_at: Option<i64>,
    added_at: i64,
    added_by: String,
}

impl Row {
    fn entry(self, now: i64) -> ListEntry {
        ListEntry {
            id: self.id,
            list: if self.list == "allow" {
                ListName::Allow
            } else {
                ListName::Block
            },
            sender: self.sender,
            recipient: (!self.scope.is_empty()).then_some(self.scope),
            comment: self.comment,
            expired: self.expires_at.is_some_and(|t| t <= now),
            expires_at: self.expires_at,
            added_at: self.added_at,
            added_by: self.added_by,
        }
    }
}

const COLUMNS: &str = "id, list, sender, scope, comment, expires_at, added_at, added_by";

/// What adding did.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    New(ListEntry),
    /// The same list, sender and recipient were there: comment and expiry replaced.
    Updated(ListEntry),
}

#[derive(Clone)]
pub struct ListStore {
    pool: SqlitePool,
}

impl ListStore {
    pub fn new(pool: SqlitePool) -> ListStore {
        ListStore { pool }
    }

    /// Every entry, expired ones included, by list, sender and recipient.
    pub async fn all(&self, now: i64) -> anyhow::Result<Vec<ListEntry>> {
        let sql = format!("SELECT {COLUMNS} FROM list_entries ORDER BY list, sender, scope");
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .context("cannot read list_entries")?;
        Ok(rows.into_iter().map(|r| r.entry(now)).collect())
    }

    pub async fn get(&self, id: i64, now: i64) -> anyhow::Result<Option<ListEntry>> {
        let sql = format!("SELECT {COLUMNS} FROM list_entries WHERE id = ?");
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.entry(now)))
    }

    /// Add `new` (validated first), or update the entry with the same list, sender and
    /// recipient.
    pub async fn add(
        &self,
        new: &NewListEntry,
        added_by: &str,
        now: i64,
    ) -> anyhow::Result<Result<Added, Invalid>> {
        let checked = match new.check(now) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let (list, sender, scope) = (
            new.list.as_str(),
            checked.sender.text(),
            checked.scope.text(),
        );
        let mut tx = self.pool.begin_with(crate::store::BEGIN_WRITE).await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM list_entries WHERE list = ? AND sender = ? AND scope = ?",
        )
        .bind(list)
        .bind(&sender)
        .bind(&scope)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            Some(id) => {
                sqlx::query("UPDATE list_entries SET comment = ?, expires_at = ? WHERE id = ?")
                    .bind(&checked.comment)
                    .bind(new.expires_at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => sqlx::query(
                "INSERT INTO list_entries (list, sender, scope, comment, expires_at, added_at, \
                 added_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(list)
            .bind(&sender)
            .bind(&scope)
            .bind(&checked.comment)
            .bind(new.expires_at)
            .bind(now)
            .bind(added_by)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid(),
        };
        tx.commit().await?;
        let entry = self
            .get(id, now)
            .await?
            .context("the entry just written is not there")?;
        Ok(Ok(if existing.is_some() {
            Added::Updated(entry)
        } else {
            Added::New(entry)
        }))
    }

    /// Remove an entry; `None` when there is no such entry.
    pub async fn remove(&self, id: i64, now: i64) -> anyhow::Result<Option<ListEntry>> {
        let Some(entry) = self.get(id, now).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM list_entries WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(Some(entry))
    }

    /// The entries that apply at `now`, for the stage. A row that no longer parses (edited
    /// by hand) is left out with a warning rather than stopping the gateway.
    pub async fn load(&self, now: i64) -> anyhow::Result<ListSet> {
        let mut entries = Vec::new();
        for e in self.all(now).await? {
            if e.expired {
                continue;
            }
            let parsed = Sender::parse(&e.sender)
                .and_then(|s| Ok((s, Scope::parse(e.recipient.as_deref())?)));
            match parsed {
                Ok((sender, scope)) => entries.push(Entry {
                    id: e.id,
                    kind: e.list.kind(),
                    sender,
                    scope,
                    expires_at: e.expires_at,
                }),
                Err(why) => {
                    tracing::warn!(id = e.id, error = %why, "list entry ignored: unusable");
                }
            }
        }
        Ok(ListSet::new(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(list: ListName, sender: &str, recipient: Option<&str>) -> NewListEntry {
        NewListEntry {
            list,
            sender: sender.into(),
            recipient: recipient.map(str::to_string),
            comment: Some("partner".into()),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn add_update_remove_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Database::open(dir.path()).await.unwrap();
        let store = ListStore::new(db.pool().clone());
        let a = store
            .add(
                &new(ListName::Allow, "@Partner.Example", None),
                "uid 0 (root)",
                10,
            )
            .await
            .unwrap()
            .unwrap();
        let Added::New(a) = a else { panic!("{a:?}") };
        assert_eq!(a.sender, "@partner.example");
        assert_eq!(a.recipient, None);
        let mut again = new(ListName::Allow, "@partner.example", None);
        again.comment = Some("renewed".into());
        let Ok(Added::Updated(u)) = store.add(&again, "uid 1", 11).await.unwrap() else {
            panic!()
        };
        assert_eq!((u.id, u.comment.as_deref()), (a.id, Some("renewed")));
        let mut expiring = new(ListName::Block, "192.0.2.1", Some("@example.test"));
        expiring.expires_at = Some(20);
        let Ok(Added::New(b)) = store.add(&expiring, "uid 0", 12).await.unwrap() else {
            panic!()
        };
        assert_eq!(b.sender, "192.0.2.1/32");
        assert_eq!(b.recipient.as_deref(), Some("example.test"));
        assert_eq!(store.load(15).await.unwrap().len(), 2);
        assert_eq!(store.load(20).await.unwrap().len(), 1);
        assert!(store.all(20).await.unwrap().iter().any(|e| e.expired));
        assert_eq!(store.remove(a.id, 20).await.unwrap().unwrap().id, a.id);
        assert!(store.remove(a.id, 20).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn invalid_entries_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Database::open(dir.path()).await.unwrap();
        let store = ListStore::new(db.pool().clone());
        let field = |n: NewListEntry| {
            let store = store.clone();
            async move { store.add(&n, "x", 100).await.unwrap().unwrap_err().field }
        };
        assert_eq!(
            field(new(ListName::Block, "nonsense", None)).await,
            "sender"
        );
        assert_eq!(
            field(new(ListName::Block, "@x.example", Some("not a domain"))).await,
            "recipient"
        );
        let mut past = new(ListName::Block, "@x.example", None);
        past.expires_at = Some(50);
        assert_eq!(field(past).await, "expires_at");
        let mut long = new(ListName::Block, "@x.example", None);
        long.comment = Some("x".repeat(MAX_COMMENT_CHARS + 1));
        assert_eq!(field(long).await, "comment");
    }
}
