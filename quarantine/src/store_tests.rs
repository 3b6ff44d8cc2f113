//! The store on a scratch database with the gateway's migrations.

use super::*;
use sqlx::sqlite::SqliteConnectOptions;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

async fn scratch() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("q.db"))
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let spool = dir.path().join("quarantine");
    std::fs::create_dir(&spool).unwrap();
    (dir, Store::new(pool, spool))
}

fn held(id: &str, recipients: &[&str], received_at: i64) -> NewHeld {
    NewHeld {
        id: id.to_string(),
        direction: Direction::Inbound,
        mail_from: "Spammer@Bad.example".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        client_ip: "192.0.2.1".into(),
        helo: "bad.example".into(),
        tls: Some("TLSv1.3 TLS_AES_256_GCM_SHA384".into()),
        score: 9.5,
        symbols: vec![
            SymbolPoints {
                name: "HDR_MISSING_DATE".into(),
                points: 1.0,
            },
            SymbolPoints {
                name: "BAYES_SPAM".into(),
                points: 8.5,
            },
        ],
        reason: "score 9.50".into(),
        received_at,
        expires_at: received_at + 30 * 86400,
        size: 100,
        display: DisplayFields {
            from: "Spammer <spammer@bad.example>".into(),
            to: recipients.join(", "),
            subject: format!("Cheap Pills {id}"),
            date: "2026-11-28T10:00:00Z".into(),
            message_id: format!("{id}@bad.example"),
        },
    }
}

async fn put(store: &Store, h: &NewHeld) {
    let mut conn = store.pool().acquire().await.unwrap();
    let body = format!("Subject: {}\r\n\r\nbody of {}\r\n", h.display.subject, h.id);
    insert(&mut conn, h, Some(body.as_bytes())).await.unwrap();
}

fn admin() -> Actor {
    Actor {
        uid: 1000,
        name: "alice".into(),
    }
}

async fn ids(store: &Store, filter: Filter) -> Vec<String> {
    let page = store
        .list(
            &filter,
            PageRequest {
                limit: 1000,
                ..PageRequest::default()
            },
        )
        .await
        .unwrap();
    page.entries
        .into_iter()
        .map(|e| format!("{}/{}", e.message, e.recipient))
        .collect()
}

#[tokio::test]
async fn states_audit_and_bodies() {
    let (_dir, store) = scratch().await;
    put(
        &store,
        &held("A1", &["One@example.test", "two@example.test"], 1000),
    )
    .await;
    let entries = store.entries_of("A1").await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].recipient, "one@example.test");
    assert_eq!(entries[0].state, State::Held);
    assert_eq!(entries[0].symbols.len(), 2);
    assert_eq!(
        entries[0].tls.as_deref(),
        Some("TLSv1.3 TLS_AES_256_GCM_SHA384")
    );

    let mut conn = store.pool().acquire().await.unwrap();
    let changed = transition(
        &mut conn,
        &[entries[0].entry],
        State::Released,
        &admin(),
        2000,
        "Q1",
    )
    .await
    .unwrap();
    assert_eq!(changed, vec![entries[0].entry]);
    // Not held any more: a second action changes nothing and writes no audit row.
    let again = transition(
        &mut conn,
        &[entries[0].entry],
        State::Deleted,
        &admin(),
        2001,
        "",
    )
    .await
    .unwrap();
    assert!(again.is_empty());
    drop(conn);
    assert!(
        !store.drop_body_if_done("A1").await.unwrap(),
        "one entry is still held"
    );
    assert!(store.body("A1").await.unwrap().is_some());

    let mut conn = store.pool().acquire().await.unwrap();
    transition(
        &mut conn,
        &[entries[1].entry],
        State::Deleted,
        &admin(),
        2002,
        "",
    )
    .await
    .unwrap();
    drop(conn);
    assert!(store.drop_body_if_done("A1").await.unwrap());
    assert!(store.body("A1").await.unwrap().is_none());

    let audit = store.audit(Some("A1")).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (
            audit[0].action.as_str(),
            audit[0].from_state,
            audit[0].to_state
        ),
        ("release", State::Held, State::Released)
    );
    assert_eq!((audit[0].uid, audit[0].user_name.as_str()), (1000, "alice"));
    assert_eq!((audit[0].at, audit[0].detail.as_str()), (2000, "Q1"));
    assert_eq!(audit[1].action, "delete");
    assert_eq!(audit[1].recipient, "two@example.test");

    let all = store.entries_of("A1").await.unwrap();
    assert_eq!(all[0].state, State::Released);
    assert_eq!(all[1].state, State::Deleted);
    assert!(
        ids(&store, Filter::default()).await.is_empty(),
        "nothing held"
    );
    let released = Filter {
        state: Some(State::Released),
        ..Filter::default()
    };
    assert_eq!(ids(&store, released).await, vec!["A1/one@example.test"]);
    let t = store.totals().await.unwrap();
    assert_eq!(
        (t.held_entries, t.released, t.deleted, t.expired),
        (0, 1, 1, 0)
    );
}

#[tokio::test]
async fn large_bodies_are_files() {
    let (_dir, store) = scratch().await;
    let h = held("B1", &["a@example.test"], 1000);
    std::fs::write(store.body_path("B1"), b"large body").unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    insert(&mut conn, &h, None).await.unwrap();
    drop(conn);
    assert_eq!(store.body("B1").await.unwrap().unwrap(), b"large body");
    let entry = store.entries_of("B1").await.unwrap()[0].entry;
    let mut conn = store.pool().acquire().await.unwrap();
    transition(&mut conn, &[entry], State::Deleted, &admin(), 1001, "")
        .await
        .unwrap();
    drop(conn);
    store.drop_body_if_done("B1").await.unwrap();
    assert!(!store.body_path("B1").exists());
}

#[tokio::test]
async fn retention_expires_and_purges() {
    let (_dir, store) = scratch().await;
    let day = 86400;
    put(
        &store,
        &held("C1", &["a@example.test", "b@example.test"], 1000),
    )
    .await;
    put(&store, &held("C2", &["a@example.test"], 1000 + 20 * day)).await;
    let system = Actor {
        uid: 0,
        name: "retention".into(),
    };
    // Before anything is due: nothing.
    assert_eq!(
        store
            .expire(1000 + 29 * day, u64::MAX, &system)
            .await
            .unwrap(),
        0
    );
    // C1's expiry has come.
    assert_eq!(
        store
            .expire(1000 + 30 * day, u64::MAX, &system)
            .await
            .unwrap(),
        2
    );
    assert!(store.entries_of("C1").await.unwrap().is_empty(), "purged");
    assert!(store.body("C1").await.unwrap().is_none());
    let audit = store.audit(Some("C1")).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|a| a.action == "expire"
        && a.to_state == State::Expired
        && a.user_name == "retention"));
    assert_eq!(
        ids(&store, Filter::default()).await,
        vec!["C2/a@example.test"]
    );
    let t = store.totals().await.unwrap();
    assert_eq!(
        (t.held_entries, t.held_messages, t.held_bytes, t.expired),
        (1, 1, 100, 2)
    );
}

#[tokio::test]
async fn the_size_cap_expires_the_oldest_first() {
    let (_dir, store) = scratch().await;
    for (i, t) in [(1, 3000), (2, 1000), (3, 2000), (4, 4000)] {
        put(&store, &held(&format!("D{i}"), &["a@example.test"], t)).await;
    }
    let system = Actor {
        uid: 0,
        name: "retention".into(),
    };
    // 400 bytes held, cap 250: the two oldest (D2 at 1000, D3 at 2000) go.
    assert_eq!(store.expire(5000, 250, &system).await.unwrap(), 2);
    let mut left = ids(&store, Filter::default()).await;
    left.sort();
    assert_eq!(left, vec!["D1/a@example.test", "D4/a@example.test"]);
    assert_eq!(store.totals().await.unwrap().held_bytes, 200);
    // Under the cap: nothing more.
    assert_eq!(store.expire(5000, 250, &system).await.unwrap(), 0);
}

#[tokio::test]
async fn keyset_paging_across_equal_timestamps() {
    let (_dir, store) = scratch().await;
    // 23 entries at the same second between others.
    put(&store, &held("E00", &["a@example.test"], 500)).await;
    for i in 1..=23 {
        put(
            &store,
            &held(&format!("E{i:02}"), &["a@example.test"], 1000),
        )
        .await;
    }
    put(&store, &held("E99", &["a@example.test"], 2000)).await;
    for oldest_first in [false, true] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = store
                .list(
                    &Filter::default(),
                    PageRequest {
                        limit: 7,
                        after,
                        oldest_first,
                    },
                )
                .await
                .unwrap();
            pages += 1;
            assert!(page.entries.len() <= 7);
            seen.extend(page.entries.iter().map(|e| (e.received_at, e.entry)));
            match page.next {
                Some(c) => after = Some(Cursor::decode(&c).unwrap()),
                None => break,
            }
        }
        assert_eq!(pages, 4, "25 entries in pages of 7");
        assert_eq!(seen.len(), 25);
        let mut sorted = seen.clone();
        sorted.sort();
        if !oldest_first {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "in order, none twice, none skipped");
    }
}

#[tokio::test]
async fn every_filter() {
    let (_dir, store) = scratch().await;
    let mut a = held("F1", &["ann@example.test", "bob@example.test"], 1000);
    a.display.subject = "Invoice overdue PAYMENT".into();
    put(&store, &a).await;
    let mut b = held("F2", &["ann@example.test"], 2000);
    b.mail_from = "news@letters.example".into();
    b.score = 4.0;
    b.reason = "forced by CLAM_VIRUS".into();
    b.symbols = vec![SymbolPoints {
        name: "CLAM_VIRUS".into(),
        points: 0.0,
    }];
    b.display.subject = "Weekly newsletter".into();
    put(&store, &b).await;
    let mut c = held("F3", &["carl@other.test"], 3000);
    c.direction = Direction::Outbound;
    c.mail_from = "ann@example.test".into();
    c.score = 15.0;
    c.display.subject = "Grüße payment".into();
    put(&store, &c).await;

    let f = |build: fn(&mut Filter)| {
        let mut filter = Filter::default();
        build(&mut filter);
        filter
    };
    let check = async |filter: Filter, want: &[&str]| {
        let got = ids(&store, filter.clone()).await;
        assert_eq!(got, want, "{filter:?}");
    };
    check(
        Filter::default(),
        &[
            "F3/carl@other.test",
            "F2/ann@example.test",
            "F1/bob@example.test",
            "F1/ann@example.test",
        ],
    )
    .await;
    check(
        f(|f| f.recipient = Some("ANN@example.test".into())),
        &["F2/ann@example.test", "F1/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.recipient = Some("@other.test".into())),
        &["F3/carl@other.test"],
    )
    .await;
    check(
        f(|f| f.sender = Some("news@letters.example".into())),
        &["F2/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.sender = Some("@BAD.example".into())),
        &["F1/bob@example.test", "F1/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.subject = Some("payment".into())),
        &[
            "F3/carl@other.test",
            "F1/bob@example.test",
            "F1/ann@example.test",
        ],
    )
    .await;
    check(
        f(|f| f.subject = Some("overdue Payment".into())),
        &["F1/bob@example.test", "F1/ann@example.test"],
    )
    .await;
    check(f(|f| f.subject = Some("GRÜSSE".into())), &[]).await;
    check(
        f(|f| f.subject = Some("grüße".into())),
        &["F3/carl@other.test"],
    )
    .await;
    check(
        f(|f| f.message_id = Some("<F2@bad.example>".into())),
        &["F2/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.symbol = Some("BAYES_SPAM".into())),
        &[
            "F3/carl@other.test",
            "F1/bob@example.test",
            "F1/ann@example.test",
        ],
    )
    .await;
    check(
        f(|f| f.symbol = Some("CLAM_VIRUS".into())),
        &["F2/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.reason = Some("CLAM_VIRUS".into())),
        &["F2/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.reason = Some("score".into())),
        &[
            "F3/carl@other.test",
            "F1/bob@example.test",
            "F1/ann@example.test",
        ],
    )
    .await;
    check(
        f(|f| f.min_score = Some(9.5)),
        &[
            "F3/carl@other.test",
            "F1/bob@example.test",
            "F1/ann@example.test",
        ],
    )
    .await;
    check(
        f(|f| {
            f.min_score = Some(5.0);
            f.max_score = Some(10.0)
        }),
        &["F1/bob@example.test", "F1/ann@example.test"],
    )
    .await;
    check(
        f(|f| f.since = Some(2000)),
        &["F3/carl@other.test", "F2/ann@example.test"],
    )
    .await;
    check(
        f(|f| {
            f.since = Some(1000);
            f.until = Some(3000)
        }),
        &[
            "F2/ann@example.test",
            "F1/bob@example.test",
            "F1/ann@example.test",
        ],
    )
    .await;
    check(
        f(|f| f.direction = Some(Direction::Outbound)),
        &["F3/carl@other.test"],
    )
    .await;
    check(
        f(|f| f.message = Some("F1".into())),
        &["F1/bob@example.test", "F1/ann@example.test"],
    )
    .await;
    // Filters combine.
    check(
        f(|f| {
            f.recipient = Some("ann@example.test".into());
            f.symbol = Some("BAYES_SPAM".into())
        }),
        &["F1/ann@example.test"],
    )
    .await;
    // The selection for bulk actions is the same search without pages.
    let selected = store
        .select(&f(|f| f.sender = Some("@bad.example".into())))
        .await
        .unwrap();
    assert_eq!(selected.len(), 2);
}

#[test]
fn queue_summaries_parse() {
    assert_eq!(
        parse_summary("HDR_MISSING_DATE(1.00), BAYES_SPAM(-0.50)"),
        vec![
            SymbolPoints {
                name: "HDR_MISSING_DATE".into(),
                points: 1.0
            },
            SymbolPoints {
                name: "BAYES_SPAM".into(),
                points: -0.5
            },
        ]
    );
    assert!(parse_summary("").is_empty());
}
