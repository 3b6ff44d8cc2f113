//! Every screen drawn from fixed API data at 80×24 and 160×48 (ratatui's `TestBackend`):
//! snapshots of what the operator sees, plus what must be there and what must not.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::app::App;
use crate::fixtures::{NOW, draw, loaded_app};
use crate::keys::ScreenId;
use crate::ui::Theme;
use crate::worker::Reply;

fn on(screen: ScreenId) -> App {
    let mut app = loaded_app();
    app.screen = screen;
    app
}

fn press(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// Both sizes, snapshotted; returns (80×24, 160×48).
fn both(name: &str, app: &mut App) -> (String, String) {
    let small = draw(app, 80, 24);
    let large = draw(app, 160, 48);
    insta::assert_snapshot!(format!("{name}_80x24"), small);
    insta::assert_snapshot!(format!("{name}_160x48"), large);
    for (text, width) in [(&small, 80), (&large, 160)] {
        for line in text.lines() {
            assert!(line.chars().count() <= width, "wider than {width}: {line}");
        }
    }
    (small, large)
}

#[test]
fn dashboard() {
    let mut app = on(ScreenId::Dashboard);
    // A minute of traffic: 60 accepted between two samples.
    app.on_tick(NOW + 60);
    app.on_reply(Reply::Counters(Ok(crate::fixtures::counters(1060))));
    app.on_tick(NOW + 120);
    let (small, large) = both("dashboard", &mut app);
    for s in [&small, &large] {
        assert!(s.contains("accept       60/min"), "{s}");
        assert!(s.contains("3 waiting, oldest 6m"));
        assert!(s.contains("Held now   7"));
        assert!(s.contains("up, ClamAV 1.4.6"));
        assert!(s.contains("Gateway    mx.example.com (Portcullis 0.1.0)"));
        assert!(s.contains("DNS        up, 3.4 ms (probed 12s ago)"), "{s}");
        assert!(
            s.contains("TLS        83 % of 1200 connections used STARTTLS"),
            "{s}"
        );
    }
    // The symbols, most frequent first; at 80×24 as many as fit below the facts.
    assert!(large.contains("Top symbols today (UTC)"), "{large}");
    let order: Vec<usize> = ["BAYES_SPAM", "AUTH_SPF_FAIL", "HDR_MISSING_DATE"]
        .iter()
        .map(|name| large.find(name).expect(name))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{large}");
}

#[test]
fn dashboard_says_when_dns_is_down() {
    let mut app = on(ScreenId::Dashboard);
    let mut c = crate::fixtures::counters(1000);
    c.dns = Some(crate::api::types::DnsStatus {
        up: false,
        latency_ms: None,
        error: Some("request timed out".into()),
        age_secs: 3,
    });
    app.on_reply(Reply::Counters(Ok(c)));
    let (small, _) = both("dashboard_dns_down", &mut app);
    assert!(
        small.contains("DNS        DOWN: authentication and MX lookups tempfail"),
        "{small}"
    );
}

#[test]
fn quarantine_list() {
    let mut app = on(ScreenId::Quarantine);
    let (small, large) = both("quarantine", &mut app);
    // The escape sequence and the bidi override arrive inert and visible.
    for s in [&small, &large] {
        assert!(s.contains("\\u{1b}[31mURGENT"), "{s}");
        assert!(!s.contains('\u{1b}'));
        assert!(!s.contains('\u{202e}'));
        assert!(s.contains("3 held of 3 loaded (all) · sort: time ↓"));
    }
    // At 80 columns the reason column is dropped, not wrapped; at 160 it is there.
    assert!(!small.contains("reason"));
    assert!(large.contains("forced by CLAM_VIRUS"));
    assert!(small.contains("billing@bad.example"));
    assert!(small.contains("<>"), "the null sender is shown as <>");
}

#[test]
fn quarantine_detail() {
    let mut app = on(ScreenId::Quarantine);
    press(&mut app, KeyCode::Enter);
    app.on_reply(Reply::HeldDetail {
        message: "18A3F2C4B5D60003".into(),
        result: Ok(crate::fixtures::held_detail()),
    });
    let (small, large) = both("quarantine_detail", &mut app);
    assert!(small.contains("Message 18A3F2C4B5D60003"));
    assert!(small.contains("reason: score 9.00"));
    // Side by side at 160 columns: the list stays.
    assert!(large.contains("news@promo.example"));
    assert!(large.contains("application/octet-stream"));
    assert!(large.contains("Text (from the HTML part, as plain text)"));
}

#[test]
fn certificates() {
    let mut app = on(ScreenId::Certs);
    let (small, _) = both("certs", &mut app);
    assert!(small.contains("example.com"));
    assert!(small.contains("(5d)"));
    assert!(small.contains("(CA certificates)"));
    press(&mut app, KeyCode::Enter);
    let (domain, _) = both("certs_domain", &mut app);
    assert!(domain.contains("CN=bob@example.com"));
    assert!(domain.contains("CN=alice@example.com"));
    press(&mut app, KeyCode::Enter);
    let (cert, _) = both("certs_cert", &mut app);
    assert!(cert.contains("aa11"));
    assert!(cert.contains("trusted: CN=Example CA"));
    // A harvested certificate names the message it came with.
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Enter);
    let alice = crate::fixtures::draw(&mut app, 160, 48);
    assert!(alice.contains("CN=alice@example.com"), "{alice}");
    assert!(
        alice.contains("harvested, from message <m1@example.com>"),
        "{alice}"
    );
}

#[test]
fn expiry_warnings_are_coloured_at_30_and_7_days() {
    use crate::screens::certs::expiry_level;
    use crate::ui::theme::Level;
    let day = 86_400;
    assert_eq!(expiry_level(NOW + 5 * day, NOW), Level::Bad);
    assert_eq!(expiry_level(NOW - day, NOW), Level::Bad);
    assert_eq!(expiry_level(NOW + 20 * day, NOW), Level::Warn);
    assert_eq!(expiry_level(NOW + 200 * day, NOW), Level::Ok);
    // The 5-day certificate's row is drawn red.
    let mut app = on(ScreenId::Certs);
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let row = (0..24)
        .find(|&y| {
            crate::fixtures::screen_text(&buffer)
                .lines()
                .nth(y)
                .unwrap()
                .contains("example.com ")
        })
        .unwrap() as u16;
    let text = crate::fixtures::screen_text(&buffer);
    let line = text.lines().nth(usize::from(row)).unwrap();
    let x = line
        .find("(5d)")
        .map(|b| line[..b].chars().count())
        .unwrap() as u16;
    assert_eq!(buffer[(x, row)].fg, ratatui::style::Color::Red);
}

#[test]
fn trust() {
    let mut app = on(ScreenId::Trust);
    let (small, large) = both("trust", &mut app);
    assert!(small.contains("high (pinned)"));
    assert!(small.contains("learned"));
    assert!(large.contains("TLS ok/not"));
}

#[test]
fn queue() {
    let mut app = on(ScreenId::Queue);
    let (small, large) = both("queue", &mut app);
    assert!(small.contains("18A3F2C4B5D60010"));
    assert!(large.contains("451 4.4.1 connect to 127.0.0.1:10025"));
    assert!(large.contains("x@far.example +1"));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Enter);
    let (detail, _) = both("queue_detail", &mut app);
    assert!(detail.contains("550 no such user"));
}

#[test]
fn lists() {
    let mut app = on(ScreenId::Lists);
    let (small, large) = both("lists", &mut app);
    assert!(small.contains("@partner.example"));
    assert!(small.contains("198.51.100.0/24"));
    assert!(large.contains("uid 1001 (bob)"));
    assert!(large.contains("everyone"));
}

#[test]
fn no_color_draws_no_colour() {
    let mut app = loaded_app();
    app.theme = Theme { color: false };
    for screen in ScreenId::ALL {
        app.screen = screen;
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48)).unwrap();
        terminal.draw(|f| app.render(f)).unwrap();
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.fg, ratatui::style::Color::Reset, "{screen:?}");
            assert_eq!(cell.bg, ratatui::style::Color::Reset, "{screen:?}");
        }
    }
}

#[test]
fn the_colour_theme_never_sets_a_background() {
    let mut app = loaded_app();
    for screen in ScreenId::ALL {
        app.screen = screen;
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48)).unwrap();
        terminal.draw(|f| app.render(f)).unwrap();
        for cell in terminal.backend().buffer().content() {
            assert_eq!(cell.bg, ratatui::style::Color::Reset, "{screen:?}");
        }
    }
}

#[test]
fn a_terminal_smaller_than_80x24_draws_without_panicking() {
    let mut app = loaded_app();
    for screen in ScreenId::ALL {
        app.screen = screen;
        for (w, h) in [(1, 1), (10, 3), (40, 10), (79, 23)] {
            draw(&mut app, w, h);
        }
    }
    // Popups and details too.
    app.screen = ScreenId::Quarantine;
    press(&mut app, KeyCode::Enter);
    draw(&mut app, 5, 2);
    press(&mut app, KeyCode::Esc);
    for key in ['?', 'd'] {
        press(&mut app, KeyCode::Char(key));
        for (w, h) in [(1, 1), (12, 4), (40, 10)] {
            draw(&mut app, w, h);
        }
        press(&mut app, KeyCode::Esc);
    }
    app.busy = Some(crate::app::Busy {
        label: "releasing 500 messages".into(),
        done: 3,
        total: 500,
    });
    draw(&mut app, 8, 4);
}
