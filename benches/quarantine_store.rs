//! The quarantine's search latency at size: fills a fresh data directory's database (the
//! gateway's own `Database::open`, WAL, `synchronous=FULL`) with N held messages through
//! `quarantine::store::insert` — realistic spread: senders of many domains, a few thousand
//! local recipients, subjects from a vocabulary, 1–5 symbols, reasons by score or forced,
//! 30 days of arrival times with many equal seconds, 1–3 recipients, 1–12 KB bodies — then
//! times one page (50 entries) of a search per filter, each with varying values, and prints
//! p50/p95 and the store's size on disk.
//!
//!   cargo bench --bench quarantine_store -- [--messages N] [--runs N] [--dir DIR] [--json]
//!
//! Driven by bench/run-quarantine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use filters::Direction;
use quarantine::{DisplayFields, Filter, NewHeld, PageRequest, Store, SymbolPoints};

/// The gateway binary's allocator (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORDS: &[&str] = &[
    "offer",
    "invoice",
    "payment",
    "urgent",
    "account",
    "verify",
    "winner",
    "prize",
    "cheap",
    "pills",
    "meeting",
    "report",
    "delivery",
    "package",
    "tracking",
    "password",
    "reset",
    "bank",
    "transfer",
    "bitcoin",
    "investment",
    "loan",
    "credit",
    "discount",
    "sale",
    "limited",
    "exclusive",
    "free",
    "gift",
    "card",
    "security",
    "alert",
    "update",
    "order",
    "confirmation",
    "shipping",
    "refund",
    "tax",
    "notice",
    "reminder",
    "webinar",
    "newsletter",
    "survey",
    "reward",
    "bonus",
    "casino",
    "dating",
    "pharmacy",
    "replica",
    "watches",
    "seo",
    "marketing",
    "leads",
    "crypto",
    "wallet",
    "login",
    "suspended",
    "action",
    "required",
    "document",
    "shared",
    "scan",
    "fax",
    "voicemail",
    "quarterly",
    "résumé",
    "contract",
    "proposal",
    "quote",
    "partnership",
];

const SYMBOLS: &[(&str, f64)] = &[
    ("BAYES_SPAM", 5.0),
    ("HDR_MISSING_DATE", 1.0),
    ("HDR_MISSING_MESSAGE_ID", 1.0),
    ("HDR_DUPLICATE", 2.0),
    ("SPF_FAIL", 3.0),
    ("SPF_SOFTFAIL", 1.0),
    ("DKIM_FAIL", 2.0),
    ("DMARC_POLICY_QUARANTINE", 4.0),
    ("TLS_NONE", 0.5),
    ("TRUST_NONE", 0.5),
    ("HDR_8BIT_NO_SMTPUTF8", 2.0),
    ("ARC_FAIL", 1.0),
];
const FORCED: &[&str] = &["CLAM_VIRUS", "DMARC_POLICY_REJECT", "SMIME_UNDECRYPTABLE"];

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn sender(n: u64) -> String {
    format!("user{}@sender{}.example", n % 5000, n % 800)
}
fn recipient(n: u64) -> String {
    format!("staff{}@corp{}.test", n % 2000, n % 5)
}

struct Args {
    messages: u64,
    runs: usize,
    dir: Option<PathBuf>,
    json: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        messages: 100_000,
        runs: 200,
        dir: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--messages" => a.messages = it.next().context("--messages N")?.parse()?,
            "--runs" => a.runs = it.next().context("--runs N")?.parse()?,
            "--dir" => a.dir = Some(it.next().context("--dir DIR")?.into()),
            "--json" => a.json = true,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

const NOW: i64 = 1_795_800_000;
const SPAN: i64 = 30 * 86400;

fn held(i: u64, rng: &mut Rng) -> (NewHeld, Vec<u8>) {
    // Bursts: about four messages per distinct second.
    let received_at = NOW - SPAN + (i as i64 * SPAN / 400_000) * 4 + rng.below(4) as i64;
    let from = sender(rng.next());
    let recipients: Vec<String> = (0..1 + rng.below(100).saturating_sub(79) / 10)
        .map(|_| recipient(rng.next()))
        .collect();
    let subject: Vec<&str> = (0..3 + rng.below(6)).map(|_| *rng.pick(WORDS)).collect();
    let subject = format!("{} {i}", subject.join(" "));
    let mut symbols: Vec<SymbolPoints> = Vec::new();
    for _ in 0..1 + rng.below(5) {
        let (name, points) = *rng.pick(SYMBOLS);
        if !symbols.iter().any(|s| s.name == name) {
            symbols.push(SymbolPoints {
                name: name.into(),
                points,
            });
        }
    }
    let forced = rng.below(100) < 15;
    let reason = if forced {
        let f = rng.pick(FORCED);
        symbols.push(SymbolPoints {
            name: f.to_string(),
            points: 0.0,
        });
        format!("forced by {f}")
    } else {
        String::new()
    };
    let score = if forced {
        rng.below(1500) as f64 / 100.0
    } else {
        8.0 + rng.below(2200) as f64 / 100.0
    };
    let reason = if forced {
        reason
    } else {
        format!("score {score:.2}")
    };
    let message_id = format!("{i:x}@sender{}.example", i % 800);
    let body_len = 1024 + rng.below(11 * 1024) as usize;
    let head = format!(
        "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\r\n",
        recipients[0]
    );
    let mut body = head.into_bytes();
    while body.len() < body_len {
        body.extend_from_slice(rng.pick(WORDS).as_bytes());
        body.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
    }
    let h = NewHeld {
        id: format!(
            "{:013X}{:04X}",
            received_at as u64 * 1_000_000 + i,
            i & 0xffff
        ),
        direction: if rng.below(100) < 5 {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        mail_from: from.clone(),
        recipients: recipients.clone(),
        client_ip: format!("198.51.100.{}", rng.below(254) + 1),
        helo: format!("mx{}.sender.example", rng.below(50)),
        tls: (rng.below(100) < 70).then(|| "TLSv1.3 TLS_AES_256_GCM_SHA384".to_string()),
        score,
        symbols,
        reason,
        received_at,
        expires_at: received_at + SPAN,
        size: body.len() as u64,
        display: DisplayFields {
            from: format!("<{from}>"),
            to: recipients.join(", "),
            subject,
            date: String::new(),
            message_id,
        },
    };
    (h, body)
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    let i = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[i]
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_size(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

type FilterOf = Box<dyn Fn(&mut Rng) -> (Filter, Option<usize>)>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let tmp = tempfile::tempdir()?;
    let data = args.dir.clone().unwrap_or_else(|| tmp.path().join("data"));
    let db = portcullis::store::Database::open(&data).await?;
    let store = Store::new(db.pool().clone(), data.join("quarantine"));

    // Fill: 1000 messages per transaction (the committer's groups are up to 512 copies).
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut entries = 0u64;
    let mut i = 0;
    while i < args.messages {
        let mut tx = db.pool().begin().await?;
        for _ in 0..1000.min(args.messages - i) {
            let (h, body) = held(i, &mut rng);
            entries += h.recipients.len() as u64;
            quarantine::store::insert(&mut tx, &h, Some(&body)).await?;
            i += 1;
        }
        tx.commit().await?;
    }
    let fill_secs = started.elapsed().as_secs_f64();
    // What the gateway's retention task does periodically.
    sqlx::query("ANALYZE").execute(db.pool()).await?;
    store.optimize().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db.pool())
        .await?;

    const DAY: i64 = 86_400;
    let filters: Vec<(&str, FilterOf)> = vec![
        (
            "newest (no filter)",
            Box::new(|_| (Filter::default(), None)),
        ),
        (
            "page 20 (no filter, keyset)",
            Box::new(|_| (Filter::default(), Some(20))),
        ),
        (
            "recipient address",
            Box::new(|r| {
                (
                    Filter {
                        recipient: Some(recipient(r.next())),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "recipient @domain",
            Box::new(|r| {
                (
                    Filter {
                        recipient: Some(format!("@corp{}.test", r.below(5))),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "sender address",
            Box::new(|r| {
                (
                    Filter {
                        sender: Some(sender(r.next())),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "sender @domain",
            Box::new(|r| {
                (
                    Filter {
                        sender: Some(format!("@sender{}.example", r.below(800))),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "subject one word",
            Box::new(|r| {
                (
                    Filter {
                        subject: Some(r.pick(WORDS).to_string()),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "subject two words + number (rare)",
            Box::new(|r| {
                (
                    Filter {
                        subject: Some(format!("{} {}", r.pick(WORDS), r.below(100_000))),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "message-id",
            Box::new(|r| {
                let i = r.below(100_000);
                (
                    Filter {
                        message_id: Some(format!("<{i:x}@sender{}.example>", i % 800)),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "symbol (common)",
            Box::new(|r| {
                (
                    Filter {
                        symbol: Some(r.pick(SYMBOLS).0.to_string()),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "symbol (forced, rarer)",
            Box::new(|r| {
                (
                    Filter {
                        symbol: Some(r.pick(FORCED).to_string()),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "reason rule",
            Box::new(|r| {
                (
                    Filter {
                        reason: Some(r.pick(FORCED).to_string()),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "reason rule since 09:00 of a day",
            Box::new(|r| {
                let since = NOW - SPAN + r.below(29) as i64 * DAY + 9 * 3600;
                (
                    Filter {
                        reason: Some(r.pick(FORCED).to_string()),
                        since: Some(since),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "score range (narrow, 1 point)",
            Box::new(|r| {
                let lo = 8.0 + r.below(20) as f64;
                (
                    Filter {
                        min_score: Some(lo),
                        max_score: Some(lo + 1.0),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "date range (one day)",
            Box::new(|r| {
                let since = NOW - SPAN + r.below(30) as i64 * DAY;
                (
                    Filter {
                        since: Some(since),
                        until: Some(since + DAY),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "direction outbound",
            Box::new(|_| {
                (
                    Filter {
                        direction: Some(Direction::Outbound),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
        (
            "recipient @domain + symbol + score ≥ 15",
            Box::new(|r| {
                (
                    Filter {
                        recipient: Some(format!("@corp{}.test", r.below(5))),
                        symbol: Some(r.pick(SYMBOLS).0.to_string()),
                        min_score: Some(15.0),
                        ..Filter::default()
                    },
                    None,
                )
            }),
        ),
    ];

    let mut results = Vec::new();
    for (name, make) in &filters {
        let mut times = Vec::with_capacity(args.runs);
        let mut rows = 0usize;
        for _ in 0..args.runs {
            let (filter, page_no) = make(&mut rng);
            let mut request = PageRequest::default();
            // A deep page: walk the cursors untimed, time the last one.
            for _ in 1..page_no.unwrap_or(1) {
                let page = store.list(&filter, request).await?;
                request.after = page.next.as_deref().and_then(quarantine::Cursor::decode);
            }
            let t = Instant::now();
            let page = store.list(&filter, request).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            rows += page.entries.len();
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        results.push(serde_json::json!({
            "filter": name,
            "p50_ms": percentile(&times, 0.50),
            "p95_ms": percentile(&times, 0.95),
            "max_ms": percentile(&times, 1.0),
            "avg_rows": rows as f64 / args.runs as f64,
        }));
    }
    let db_bytes = ["queue.db", "queue.db-wal", "queue.db-shm"]
        .iter()
        .map(|f| {
            std::fs::metadata(data.join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum::<u64>();
    let report = serde_json::json!({
        "messages": args.messages,
        "entries": entries,
        "fill_seconds": fill_secs,
        "runs_per_filter": args.runs,
        "page_size": PageRequest::default().limit,
        "database_bytes": db_bytes,
        "data_dir_bytes": dir_size(&data),
        "filters": results,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} messages, {} entries; filled in {:.1} s; database {:.1} MiB (data dir {:.1} MiB)",
            args.messages,
            entries,
            fill_secs,
            db_bytes as f64 / 1048576.0,
            dir_size(&data) as f64 / 1048576.0
        );
        println!(
            "one page of {} entries, {} runs per filter:",
            PageRequest::default().limit,
            args.runs
        );
        println!(
            "{:<42} {:>8} {:>8} {:>8} {:>9}",
            "filter", "p50 ms", "p95 ms", "max ms", "avg rows"
        );
        for r in &results {
            println!(
                "{:<42} {:>8.2} {:>8.2} {:>8.2} {:>9.1}",
                r["filter"].as_str().unwrap(),
                r["p50_ms"].as_f64().unwrap(),
                r["p95_ms"].as_f64().unwrap(),
                r["max_ms"].as_f64().unwrap(),
                r["avg_rows"].as_f64().unwrap()
            );
        }
    }
    Ok(())
}
