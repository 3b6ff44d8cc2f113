//! The console's side of filtering the quarantine: with 100,000 held entries loaded, the
//! time from a key press (a character typed into the `/` filter, or a sort key) to the
//! redrawn list at 160×48 — the filter applied to every loaded row, then the frame drawn.
//! The gateway filters and pages too; this is what the operator waits for on each key.
//!
//! `cargo bench -p tui --bench filter_redraw` prints one JSON object.

use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tui::api::types::{HeldEntry, SymbolPoints};
use tui::app::App;
use tui::keys::ScreenId;
use tui::sanitize::Safe;
use tui::ui::Theme;

const ENTRIES: usize = 100_000;
const NOW: i64 = 1_796_284_800;
/// Typed, then erased, this many times.
const ROUNDS: usize = 5;
const QUERIES: [&str; 4] = [
    "invoice overdue",
    "sender:@promo score>=6",
    "symbol:BAYES reason:score",
    "recipient:sales parcel",
];

/// A deterministic spread of senders, recipients, subjects, scores and symbols.
fn entries() -> Vec<HeldEntry> {
    let words = [
        "invoice", "overdue", "parcel", "delivery", "offer", "account", "password", "urgent",
        "meeting", "weekly", "prize", "bank", "update", "your", "order", "shipment",
    ];
    let domains = [
        "promo.example",
        "bad.example",
        "ext.example",
        "shop.example",
        "mail.example",
    ];
    let locals = [
        "sales", "ceo", "it", "hr", "support", "info", "ops", "billing",
    ];
    let symbols = [
        "BAYES_SPAM",
        "SPF_FAIL",
        "DKIM_PASS",
        "HDR_NO_DATE",
        "CLAM_VIRUS",
        "TLS_NONE",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    (0..ENTRIES)
        .map(|i| {
            let subject: Vec<&str> = (0..5).map(|_| words[next() % words.len()]).collect();
            let score = 5.0 + (next() % 100) as f64 / 10.0;
            HeldEntry {
                entry: i as i64,
                message: Safe::new(&format!("{:016X}", 0x18A3_0000_0000_0000u64 + i as u64)),
                recipient: Safe::new(&format!("{}@example.com", locals[next() % locals.len()])),
                mail_from: Safe::new(&format!(
                    "u{}@{}",
                    next() % 1000,
                    domains[next() % domains.len()]
                )),
                subject: Safe::new(&subject.join(" ")),
                score,
                reason: Safe::new(if next() % 10 == 0 {
                    "forced by CLAM_VIRUS"
                } else {
                    "score 5.00"
                }),
                symbols: (0..3)
                    .map(|_| SymbolPoints {
                        name: Safe::new(symbols[next() % symbols.len()]),
                        points: 1.5,
                    })
                    .collect(),
                received_at: NOW - i as i64 * 7,
                expires_at: NOW + 30 * 86_400,
                ..HeldEntry::default()
            }
        })
        .collect()
}

fn key(c: KeyCode) -> KeyEvent {
    let mods = match c {
        KeyCode::Char(ch) if ch.is_ascii_uppercase() => KeyModifiers::SHIFT,
        _ => KeyModifiers::NONE,
    };
    KeyEvent::new(c, mods)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let mut app = App::new(Theme { color: true }, NOW);
    app.screen = ScreenId::Quarantine;
    let data = entries();
    let load = Instant::now();
    app.quarantine.set_entries(data, NOW);
    let load_ms = load.elapsed().as_secs_f64() * 1000.0;
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");
    terminal.draw(|f| app.render(f)).expect("draw");

    // One key press to one redrawn frame.
    let mut press = |app: &mut App, code: KeyCode| -> f64 {
        let t = Instant::now();
        app.on_key(key(code));
        terminal.draw(|f| app.render(f)).expect("draw");
        t.elapsed().as_secs_f64() * 1000.0
    };

    let mut typing = Vec::new();
    let mut matched = Vec::new();
    for _ in 0..ROUNDS {
        for q in QUERIES {
            press(&mut app, KeyCode::Char('/'));
            for c in q.chars() {
                typing.push(press(&mut app, KeyCode::Char(c)));
            }
            matched.push(app.quarantine.visible.len());
            for _ in q.chars() {
                typing.push(press(&mut app, KeyCode::Backspace));
            }
            // Leave the filter line without searching the gateway.
            press(&mut app, KeyCode::Esc);
        }
    }
    // Each column's first sort computes its order; later ones reuse it.
    let mut first_sort = Vec::new();
    for _ in 0..6 {
        first_sort.push(press(&mut app, KeyCode::Char('s')));
    }
    let mut sorting = Vec::new();
    for _ in 0..ROUNDS * 6 {
        sorting.push(press(&mut app, KeyCode::Char('s')));
    }
    typing.sort_by(f64::total_cmp);
    first_sort.sort_by(f64::total_cmp);
    sorting.sort_by(f64::total_cmp);
    let r = |v: f64| (v * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "bench": "tui_filter_redraw",
            "entries_loaded": ENTRIES,
            "terminal": "160x48",
            "load_entries_ms": r(load_ms),
            "filter_key_to_frame_ms": {
                "keys": typing.len(),
                "median": r(percentile(&typing, 0.5)),
                "p95": r(percentile(&typing, 0.95)),
                "max": r(*typing.last().unwrap()),
            },
            "rows_matched_per_query": matched[..QUERIES.len()].to_vec(),
            "first_sort_by_column_key_to_frame_ms": {
                "keys": first_sort.len(),
                "median": r(percentile(&first_sort, 0.5)),
                "max": r(*first_sort.last().unwrap()),
            },
            "sort_again_key_to_frame_ms": {
                "keys": sorting.len(),
                "median": r(percentile(&sorting, 0.5)),
                "p95": r(percentile(&sorting, 0.95)),
                "max": r(*sorting.last().unwrap()),
            },
            "target_ms": 100,
        })
    );
}
