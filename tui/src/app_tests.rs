//! Key handling driven on the app state, without a terminal: which jobs a key queues, which
//! popup it opens, what read-only mode refuses.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::api::types::{HeldQuery, HeldTarget, PinLevel, WhoAmI};
use crate::fixtures::{self, NOW, draw, loaded_app};

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        let mods = if c.is_ascii_uppercase() {
            KeyModifiers::SHIFT
        } else {
            KeyModifiers::NONE
        };
        app.on_key(KeyEvent::new(KeyCode::Char(c), mods));
    }
}

fn actions(app: &App) -> Vec<&Action> {
    app.outbox
        .iter()
        .filter_map(|j| match j {
            Job::Act(a) => Some(a),
            Job::Fetch(_) => None,
        })
        .collect()
}

fn forbidden() -> ApiError {
    ApiError::Status {
        status: 403,
        code: "forbidden".into(),
        message: "uid 1001 (bob) may only read".into(),
    }
}

#[test]
fn tab_and_number_keys_switch_screens_and_load_them() {
    let mut app = loaded_app();
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.screen, ScreenId::Quarantine);
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.screen, ScreenId::Dashboard);
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.screen, ScreenId::Lists);
    typ(&mut app, "3");
    assert_eq!(app.screen, ScreenId::Certs);
    assert!(app.outbox.contains(&Job::Fetch(Fetch::Certs)));
    assert!(app.outbox.contains(&Job::Fetch(Fetch::Lists)));
    // A load already under way is not asked for twice.
    let before = app.outbox.len();
    key(&mut app, KeyCode::F(5));
    assert_eq!(
        app.outbox.len(),
        before,
        "counters and certs are still loading"
    );
}

#[test]
fn q_and_ctrl_c_quit_from_anywhere() {
    let mut app = loaded_app();
    typ(&mut app, "q");
    assert!(app.quit);
    let mut app = loaded_app();
    typ(&mut app, "2/");
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.quit, "Ctrl-C quits even while the filter is typed");
}

#[test]
fn delete_asks_first_and_no_answers_nothing() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    app.outbox.clear();
    typ(&mut app, "d");
    assert!(matches!(
        app.modal,
        Some(Modal::Confirm(Action::DeleteHeld { .. }))
    ));
    assert!(actions(&app).is_empty());
    // Keys other than y/n leave the question open.
    typ(&mut app, "x");
    assert!(app.modal.is_some());
    typ(&mut app, "n");
    assert!(app.modal.is_none());
    assert!(actions(&app).is_empty());
    typ(&mut app, "D");
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("Confirm"), "{screen}");
    assert!(screen.contains("teach Bayes they are spam"), "{screen}");
    typ(&mut app, "y");
    assert_eq!(
        actions(&app),
        vec![&Action::DeleteHeld {
            targets: vec![HeldTarget {
                message: "18A3F2C4B5D60003".into(),
                recipient: Some("ceo@example.com".into()),
            }],
            learn: true,
        }]
    );
    assert!(app.busy.is_some());
}

#[test]
fn release_of_one_message_goes_at_once_and_of_several_asks() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    typ(&mut app, "j");
    app.outbox.clear();
    typ(&mut app, "r");
    assert!(app.modal.is_none());
    match actions(&app).as_slice() {
        [
            Action::Release {
                targets,
                learn: false,
                allow,
            },
        ] => {
            assert_eq!(targets[0].message, "18A3F2C4B5D60002");
            assert!(allow.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // It finishes; then two rows are marked and released with learning.
    app.on_reply(Reply::Acted(Outcome {
        summary: "released 1 of 1".into(),
        error: None,
    }));
    assert!(draw(&mut app, 80, 24).contains("released 1 of 1"));
    app.outbox.clear();
    typ(&mut app, "g  ");
    assert_eq!(app.quarantine.selected.len(), 2);
    typ(&mut app, "l");
    assert!(
        matches!(&app.modal, Some(Modal::Confirm(Action::Release { targets, learn: true, .. })) if targets.len() == 2)
    );
    typ(&mut app, "y");
    assert_eq!(actions(&app).len(), 1);
}

#[test]
fn release_and_allow_adds_the_sender_for_the_recipient() {
    let mut app = loaded_app();
    typ(&mut app, "2a");
    match actions(&app).as_slice() {
        [Action::Release { allow, .. }] => assert_eq!(
            allow,
            &vec![crate::action::AllowSender {
                message: "18A3F2C4B5D60003".into(),
                sender: "billing@bad.example".into(),
                recipient: "ceo@example.com".into()
            }]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bulk_action_shows_its_progress() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    app.busy = Some(Busy {
        label: "releasing 500 messages".into(),
        done: 0,
        total: 500,
    });
    app.on_reply(Reply::Progress {
        done: 250,
        total: 500,
    });
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("releasing 500 messages [##########----------] 250/500"),
        "{screen}"
    );
    // Another action waits for it.
    typ(&mut app, "r");
    assert!(actions(&app).is_empty());
    assert!(draw(&mut app, 80, 24).contains("an action is running"));
}

#[test]
fn a_403_switches_to_read_only_and_greys_the_keys() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    app.outbox.clear();
    app.on_reply(Reply::Acted(Outcome {
        summary: String::new(),
        error: Some(forbidden()),
    }));
    assert!(app.read_only);
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("[read-only]"), "{screen}");
    assert!(screen.contains("read-only from now on"), "{screen}");
    app.outbox.clear();
    typ(&mut app, "rdDla");
    assert!(actions(&app).is_empty());
    assert!(
        app.modal.is_none(),
        "no confirmation for what cannot be done"
    );
    // Looking is still allowed.
    typ(&mut app, "j");
    assert_eq!(app.quarantine.cursor.row, 1);
    typ(&mut app, "?");
    let help = draw(&mut app, 160, 48);
    assert!(
        help.contains("delete without delivering (read-only)"),
        "{help}"
    );
    assert!(help.contains("move down"));
    assert!(!help.contains("move down (read-only)"));
}

#[test]
fn an_auditor_role_greys_the_keys_before_the_first_try() {
    let mut app = loaded_app();
    assert!(!app.read_only);
    app.on_reply(Reply::WhoAmI(Ok(WhoAmI {
        uid: 65534,
        user: Some("nobody".into()),
        role: "auditor".into(),
        may_change: false,
    })));
    assert!(app.read_only);
    typ(&mut app, "2");
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("[read-only]"), "{screen}");
    app.outbox.clear();
    typ(&mut app, "rd");
    assert!(actions(&app).is_empty());
    assert!(app.modal.is_none());
    // An operator's role (say, after being added to the group) makes the keys live again.
    app.on_reply(Reply::WhoAmI(Ok(WhoAmI {
        uid: 0,
        user: Some("root".into()),
        role: "operator".into(),
        may_change: true,
    })));
    assert!(!app.read_only);
    typ(&mut app, "d");
    assert!(app.modal.is_some(), "delete asks again");
}

#[test]
fn starting_asks_the_gateway_who_the_operator_is() {
    let mut app = App::new(Theme { color: false }, NOW);
    app.start();
    assert!(app.outbox.contains(&Job::Fetch(Fetch::Health)));
    assert!(app.outbox.contains(&Job::Fetch(Fetch::WhoAmI)));
}

#[test]
fn the_help_overlay_lists_every_key_of_the_screen() {
    let mut app = loaded_app();
    typ(&mut app, "2?");
    let help = draw(&mut app, 160, 48);
    for b in keys::for_screen(ScreenId::Quarantine) {
        assert!(help.contains(b.label), "{} missing:\n{help}", b.label);
    }
    assert!(help.contains("(asks first)"));
    // j scrolls, Esc closes.
    typ(&mut app, "j");
    assert!(matches!(app.modal, Some(Modal::Help { scroll: 1 })));
    key(&mut app, KeyCode::Esc);
    assert!(app.modal.is_none());
}

#[test]
fn the_filter_applies_at_once_and_searches_the_gateway_on_enter() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    app.outbox.clear();
    typ(&mut app, "/offers");
    assert_eq!(app.quarantine.visible.len(), 1);
    assert!(app.outbox.is_empty(), "typing does not call the gateway");
    // While typing, q is a letter, not quit.
    typ(&mut app, "q");
    assert!(!app.quit);
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Enter);
    let expected = HeldQuery {
        subject: Some("offers".into()),
        ..HeldQuery::default()
    };
    assert_eq!(
        app.outbox,
        vec![Job::Fetch(Fetch::Held {
            query: expected.clone(),
            after: None,
            limit: quarantine::PAGE
        })]
    );
    // The gateway's answer for that search replaces the rows.
    let mut page = fixtures::held();
    page.entries.retain(|e| e.subject.contains("offers"));
    app.on_reply(Reply::Held {
        query: expected,
        append: false,
        result: Ok(page),
    });
    assert_eq!(app.quarantine.entries.len(), 1);
    // Esc clears the filter and reloads everything.
    app.outbox.clear();
    key(&mut app, KeyCode::Esc);
    assert!(app.quarantine.filter.is_empty());
    assert!(
        matches!(&app.outbox[..], [Job::Fetch(Fetch::Held { query, .. })] if *query == HeldQuery::default())
    );
}

#[test]
fn a_filter_field_narrows_by_sender_and_score() {
    let mut app = loaded_app();
    typ(&mut app, "2/sender:promo");
    assert_eq!(app.quarantine.visible.len(), 1);
    key(&mut app, KeyCode::Esc);
    assert_eq!(
        app.quarantine.visible.len(),
        3,
        "Esc while typing puts the old filter back"
    );
    typ(&mut app, "/score>=9");
    assert_eq!(app.quarantine.visible.len(), 2);
}

#[test]
fn sorting_by_column_and_reversing() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    let subjects = |app: &App| -> Vec<String> {
        app.quarantine
            .visible
            .iter()
            .map(|&i| app.quarantine.entries[i].subject.to_string())
            .collect()
    };
    // Newest first.
    assert!(subjects(&app)[0].contains("URGENT"));
    typ(&mut app, "ss");
    assert_eq!(app.quarantine.sort, quarantine::SortBy::Sender);
    typ(&mut app, "ss");
    assert_eq!(app.quarantine.sort, quarantine::SortBy::Score);
    assert!(
        subjects(&app)[0].starts_with("Undelivered"),
        "highest score first"
    );
    typ(&mut app, "S");
    assert_eq!(subjects(&app)[0], "Weekly offers for you");
}

#[test]
fn enter_opens_the_detail_and_loads_the_preview() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    app.outbox.clear();
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        app.outbox,
        vec![Job::Fetch(Fetch::HeldDetail("18A3F2C4B5D60003".into()))]
    );
    assert!(draw(&mut app, 80, 24).contains("loading the preview…"));
    app.on_reply(Reply::HeldDetail {
        message: "18A3F2C4B5D60003".into(),
        result: Ok(fixtures::held_detail()),
    });
    let screen = draw(&mut app, 160, 48);
    assert!(screen.contains("invoice.pdf.exe"), "{screen}");
    assert!(screen.contains("BAYES_SPAM"));
    assert!(screen.contains("+5.10"));
    assert!(screen.contains("Please pay the attached invoice."));
    assert!(screen.contains("Regards\\u{1b}]0;pwned\\u{7}"), "{screen}");
    key(&mut app, KeyCode::Esc);
    assert!(app.quarantine.detail.is_none());
}

#[test]
fn a_certificate_import_asks_for_a_path_and_a_password_never_shown() {
    let mut app = loaded_app();
    typ(&mut app, "3i");
    typ(&mut app, "/tmp/bob.p12");
    key(&mut app, KeyCode::Enter);
    assert!(matches!(&app.modal, Some(Modal::Prompt(p)) if p.secret));
    typ(&mut app, "Sesame42");
    let screen = draw(&mut app, 80, 24);
    assert!(!screen.contains("Sesame42"), "{screen}");
    assert!(screen.contains("8 characters typed"), "{screen}");
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&app),
        vec![&Action::CertImport {
            path: "/tmp/bob.p12".into(),
            password: Some(Secret("Sesame42".into())),
        }]
    );
}

#[test]
fn a_certificate_is_deleted_only_after_yes() {
    let mut app = loaded_app();
    typ(&mut app, "3");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.certs.depth, certs::Depth::Domain);
    app.outbox.clear();
    typ(&mut app, "d");
    assert!(actions(&app).is_empty());
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("key goes too"), "{screen}");
    typ(&mut app, "y");
    assert!(
        matches!(actions(&app).as_slice(), [Action::CertDelete { fingerprint, .. }] if fingerprint == "aa11")
    );
}

#[test]
fn pin_and_unpin_a_domain() {
    let mut app = loaded_app();
    typ(&mut app, "4p");
    assert!(matches!(app.modal, Some(Modal::Choice(_))));
    typ(&mut app, "h");
    assert_eq!(
        actions(&app),
        vec![&Action::TrustPin {
            domain: "partner.example".into(),
            level: Some(PinLevel::High)
        }]
    );
    app.on_reply(Reply::Acted(Outcome {
        summary: "partner.example pinned to high".into(),
        error: None,
    }));
    app.outbox.clear();
    typ(&mut app, "u");
    assert!(actions(&app).is_empty(), "partner.example is not pinned");
    typ(&mut app, "ju");
    assert_eq!(
        actions(&app),
        vec![&Action::TrustPin {
            domain: "supplier.example".into(),
            level: None
        }]
    );
}

#[test]
fn queue_retry_at_once_delete_after_yes() {
    let mut app = loaded_app();
    typ(&mut app, "5r");
    assert_eq!(
        actions(&app),
        vec![&Action::QueueRetry {
            id: "18A3F2C4B5D60010".into()
        }]
    );
    app.on_reply(Reply::Acted(Outcome {
        summary: "done".into(),
        error: None,
    }));
    app.outbox.clear();
    typ(&mut app, "jd");
    assert!(actions(&app).is_empty());
    typ(&mut app, "y");
    assert_eq!(
        actions(&app),
        vec![&Action::QueueDelete {
            id: "18A3F2C4B5D60011".into()
        }]
    );
}

#[test]
fn a_list_entry_is_added_through_its_prompts_and_removed_after_yes() {
    let mut app = loaded_app();
    typ(&mut app, "6ab");
    typ(&mut app, "@spam.example");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    typ(&mut app, "seen in a campaign");
    key(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&app),
        vec![&Action::ListAdd(crate::api::types::NewListEntry {
            list: ListName::Block,
            sender: "@spam.example".into(),
            recipient: None,
            comment: Some("seen in a campaign".into()),
        })]
    );
    app.on_reply(Reply::Acted(Outcome {
        summary: "added".into(),
        error: None,
    }));
    app.outbox.clear();
    typ(&mut app, "d");
    assert!(matches!(
        &app.modal,
        Some(Modal::Confirm(Action::ListRemove { id: 4, .. }))
    ));
    key(&mut app, KeyCode::Esc);
    assert!(actions(&app).is_empty());
}

#[test]
fn an_unreachable_gateway_is_a_clear_screen_and_is_retried() {
    let mut app = App::new(Theme { color: false }, NOW);
    app.start();
    app.outbox.clear();
    let missing = ApiError::NotRunning("/var/lib/portcullis/admin.sock".into());
    app.on_reply(Reply::Counters(Err(missing)));
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("The gateway cannot be reached"), "{screen}");
    assert!(screen.contains("the gateway is not running"));
    assert!(screen.contains("portcullis run"));
    app.on_tick(NOW + RETRY_SECS);
    assert_eq!(app.outbox, vec![Job::Fetch(Fetch::Health)]);
    // It is back: the screen loads again.
    app.outbox.clear();
    app.on_reply(Reply::Health(Ok(fixtures::health())));
    assert!(app.unreachable.is_none());
    assert!(app.outbox.contains(&Job::Fetch(Fetch::Counters)));
    let denied = ApiError::PermissionDenied("/var/lib/portcullis/admin.sock".into());
    app.on_reply(Reply::Queue(Err(denied)));
    assert!(draw(&mut app, 80, 24).contains("socket_group"));
}

#[test]
fn an_api_error_is_shown_on_the_screen_that_asked() {
    let mut app = loaded_app();
    typ(&mut app, "3");
    app.certs = certs::Certs::default();
    app.certs.list.loading = true;
    app.on_reply(Reply::Certs(Err(ApiError::Status {
        status: 503,
        code: "unavailable".into(),
        message: "the S/MIME master key file is missing".into(),
    })));
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("503 unavailable: the S/MIME master key file is missing"),
        "{screen}"
    );
    assert!(app.unreachable.is_none());
}

#[test]
fn stale_data_shows_its_age_and_loading_shows() {
    let mut app = loaded_app();
    typ(&mut app, "6");
    app.lists.list.loading = false;
    app.on_tick(NOW + 5);
    assert!(draw(&mut app, 80, 24).contains("updated 5s ago"));
    app.on_reply(Reply::Lists(Err(ApiError::Timeout)));
    app.unreachable = None;
    app.now = NOW + 125;
    assert!(draw(&mut app, 80, 24).contains("stale, updated 2m ago"));
    app.lists.list.loading = true;
    assert!(draw(&mut app, 80, 24).contains("loading…"));
}

#[test]
fn ticks_sample_the_counters_and_reload_the_screen() {
    let mut app = loaded_app();
    typ(&mut app, "5");
    app.queue.list.loading = false;
    app.dashboard.counters.loading = false;
    app.outbox.clear();
    app.on_tick(NOW + SAMPLE_SECS);
    assert_eq!(app.outbox, vec![Job::Fetch(Fetch::Counters)]);
    app.outbox.clear();
    app.on_tick(NOW + REFRESH_SECS);
    assert!(app.outbox.contains(&Job::Fetch(Fetch::Queue)));
}

#[test]
fn esc_followed_at_once_by_a_key_is_both_keys() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    key(&mut app, KeyCode::Enter);
    assert!(app.quarantine.detail.is_some());
    // What a terminal sends for Esc then 3 typed quickly: ESC 3, read as Alt-3.
    app.on_key(KeyEvent::new(KeyCode::Char('3'), KeyModifiers::ALT));
    assert!(app.quarantine.detail.is_none());
    assert_eq!(app.screen, ScreenId::Certs);
}

#[test]
fn a_recipients_report_frequency_is_chosen_on_its_row() {
    let mut app = loaded_app();
    typ(&mut app, "2");
    app.outbox.clear();
    typ(&mut app, "f");
    assert!(matches!(app.modal, Some(Modal::Choice(_))));
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("Quarantine reports for ceo@example.com"),
        "{screen}"
    );
    typ(&mut app, "w");
    assert_eq!(
        actions(&app),
        vec![&Action::DigestFrequency {
            recipient: "ceo@example.com".into(),
            frequency: Some("weekly".into())
        }]
    );
    app.on_reply(Reply::Acted(Outcome {
        summary: "ceo@example.com: quarantine reports weekly".into(),
        error: None,
    }));
    app.outbox.clear();
    typ(&mut app, "fs");
    assert_eq!(
        actions(&app),
        vec![&Action::DigestFrequency {
            recipient: "ceo@example.com".into(),
            frequency: None
        }]
    );
}
