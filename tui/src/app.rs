//! The console's state and what keys, API replies and ticks do to it. Nothing here waits:
//! key handling and replies only change state and queue [`Job`]s in [`App::outbox`], which
//! the event loop hands to the worker.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::action::{Action, Secret};
use crate::api::types::{Health, ListName, NewListEntry, PinLevel};
use crate::api::{ApiError, ApiResult};
use crate::keys::{self, Command, Effect, ScreenId};
use crate::screens::{Screen, certs, dashboard, lists, quarantine, queue, trust};
use crate::ui::theme::Level;
use crate::ui::{Theme, format, popup};
use crate::worker::{Fetch, Job, Outcome, Reply};

/// Counters are sampled this often (the dashboard's rates come from the differences).
pub const SAMPLE_SECS: i64 = 10;
/// The screen shown is reloaded this often.
pub const REFRESH_SECS: i64 = 15;
/// While the gateway cannot be reached it is asked this often.
pub const RETRY_SECS: i64 = 3;

/// Data loaded from the API, with when and whether it is being loaded again.
#[derive(Debug, Clone)]
pub struct Loadable<T> {
    pub data: Option<T>,
    pub loaded_at: Option<i64>,
    pub loading: bool,
    pub error: Option<ApiError>,
}

impl<T> Default for Loadable<T> {
    fn default() -> Self {
        Loadable {
            data: None,
            loaded_at: None,
            loading: false,
            error: None,
        }
    }
}

impl<T> Loadable<T> {
    /// Mark a load as started; `false` when one is already under way.
    pub fn start(&mut self) -> bool {
        !std::mem::replace(&mut self.loading, true)
    }

    /// Take an answer; an error keeps the data there was (shown as stale).
    pub fn finish(&mut self, result: ApiResult<T>, now: i64) {
        self.loading = false;
        match result {
            Ok(data) => {
                self.data = Some(data);
                self.loaded_at = Some(now);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn freshness(&self) -> Freshness<'_> {
        Freshness {
            loading: self.loading,
            loaded_at: self.loaded_at,
            error: self.error.as_ref(),
        }
    }
}

/// How current a screen's data is, for the status line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Freshness<'a> {
    pub loading: bool,
    pub loaded_at: Option<i64>,
    pub error: Option<&'a ApiError>,
}

/// What a screen hands back to the app after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Fetch(Fetch),
    Act(Action),
    Ask(Prompt),
    Choose(Choice),
    Say(String),
}

/// A line of text to type.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub title: String,
    pub label: String,
    pub input: String,
    /// Never shown (a password): the popup shows how many characters, nothing else.
    pub secret: bool,
    pub next: PromptNext,
}

/// What a prompt's answer is for.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptNext {
    ImportPath,
    ImportPassword {
        path: PathBuf,
    },
    TrustCaPath,
    ListSender {
        list: ListName,
    },
    ListRecipient {
        list: ListName,
        sender: String,
    },
    ListComment {
        list: ListName,
        sender: String,
        recipient: Option<String>,
    },
}

impl Prompt {
    pub fn new(title: &str, label: &str, next: PromptNext) -> Prompt {
        Prompt {
            title: title.into(),
            label: label.into(),
            input: String::new(),
            secret: false,
            next,
        }
    }
}

/// One of a few answers, one key each.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub title: String,
    pub options: Vec<(char, &'static str)>,
    pub next: ChoiceNext,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceNext {
    Pin { domain: String },
    ListKind,
    DigestFrequency { recipient: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Modal {
    Help { scroll: u16 },
    Confirm(Action),
    Prompt(Prompt),
    Choice(Choice),
}

/// The running action, for the progress shown in the status line.
#[derive(Debug, Clone, PartialEq)]
pub struct Busy {
    pub label: String,
    pub done: usize,
    pub total: usize,
}

/// The last thing the console has to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub text: String,
    pub level: Level,
}

/// Context a screen gets with a key.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now: i64,
    pub read_only: bool,
}

/// Context a screen gets to draw.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub theme: &'a Theme,
    pub now: i64,
    pub read_only: bool,
}

pub struct App {
    pub screen: ScreenId,
    pub dashboard: dashboard::Dashboard,
    pub quarantine: quarantine::Quarantine,
    pub certs: certs::Certs,
    pub trust: trust::Trust,
    pub queue: queue::Queue,
    pub lists: lists::Lists,
    pub modal: Option<Modal>,
    /// The caller's role may only read: every key that changes something is refused.
    pub read_only: bool,
    pub status: Option<Status>,
    pub busy: Option<Busy>,
    /// The gateway cannot be reached: every screen shows this instead.
    pub unreachable: Option<ApiError>,
    pub health: Option<Health>,
    /// Unix seconds, from the last tick.
    pub now: i64,
    last_sample: i64,
    last_refresh: i64,
    last_retry: i64,
    /// Jobs for the worker, taken by the event loop.
    pub outbox: Vec<Job>,
    pub quit: bool,
    pub theme: Theme,
}

impl App {
    pub fn new(theme: Theme, now: i64) -> App {
        App {
            screen: ScreenId::Dashboard,
            dashboard: dashboard::Dashboard::default(),
            quarantine: quarantine::Quarantine::default(),
            certs: certs::Certs::default(),
            trust: trust::Trust::default(),
            queue: queue::Queue::default(),
            lists: lists::Lists::default(),
            modal: None,
            read_only: false,
            status: None,
            busy: None,
            unreachable: None,
            health: None,
            now,
            last_sample: now,
            last_refresh: now,
            last_retry: now,
            outbox: Vec::new(),
            quit: false,
            theme,
        }
    }

    /// The first loads: who the gateway is, the counters, the screen shown.
    pub fn start(&mut self) {
        self.fetch(Fetch::Health);
        self.fetch(Fetch::WhoAmI);
        self.fetch(Fetch::Counters);
        self.refresh_screen();
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now: self.now,
            read_only: self.read_only,
        }
    }

    pub fn screen_mut(&mut self, id: ScreenId) -> &mut dyn Screen {
        match id {
            ScreenId::Dashboard => &mut self.dashboard,
            ScreenId::Quarantine => &mut self.quarantine,
            ScreenId::Certs => &mut self.certs,
            ScreenId::Trust => &mut self.trust,
            ScreenId::Queue => &mut self.queue,
            ScreenId::Lists => &mut self.lists,
        }
    }

    fn screen_ref(&self, id: ScreenId) -> &dyn Screen {
        match id {
            ScreenId::Dashboard => &self.dashboard,
            ScreenId::Quarantine => &self.quarantine,
            ScreenId::Certs => &self.certs,
            ScreenId::Trust => &self.trust,
            ScreenId::Queue => &self.queue,
            ScreenId::Lists => &self.lists,
        }
    }

    fn fetch(&mut self, fetch: Fetch) {
        if self.mark_loading(&fetch) {
            self.outbox.push(Job::Fetch(fetch));
        }
    }

    /// Mark the screen that owns `fetch` as loading; `false` when it already is.
    fn mark_loading(&mut self, fetch: &Fetch) -> bool {
        match fetch {
            Fetch::Health | Fetch::WhoAmI => true,
            Fetch::Counters => self.dashboard.counters.start(),
            Fetch::Held { .. } | Fetch::HeldDetail(_) => self.quarantine.mark_loading(fetch),
            Fetch::Queue => self.queue.list.start(),
            Fetch::Certs => self.certs.list.start(),
            Fetch::Trust => self.trust.list.start(),
            Fetch::Lists => self.lists.list.start(),
        }
    }

    fn refresh_screen(&mut self) {
        let ctx = self.ctx();
        for f in self.screen_mut(self.screen).refresh(&ctx) {
            self.fetch(f);
        }
        self.last_refresh = self.now;
    }

    fn show(&mut self, id: ScreenId) {
        if self.screen != id {
            self.screen = id;
            self.refresh_screen();
        }
    }

    fn say(&mut self, text: impl Into<String>, level: Level) {
        self.status = Some(Status {
            text: text.into(),
            level,
        });
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        // Terminals send Alt-x as ESC x, and an Esc quickly followed by a key reads the same:
        // no key of the console uses Alt, so it is that Esc, then the key.
        if key.modifiers.contains(KeyModifiers::ALT) {
            self.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            let mut plain = key;
            plain.modifiers.remove(KeyModifiers::ALT);
            self.on_key(plain);
            return;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        if let Some(modal) = self.modal.take() {
            self.on_modal_key(modal, key);
            return;
        }
        if self.screen_ref(self.screen).capturing() {
            let ctx = self.ctx();
            let intents = self.screen_mut(self.screen).on_text(key, &ctx);
            self.apply(intents);
            return;
        }
        let Some(binding) = keys::lookup(self.screen, &key) else {
            return;
        };
        if binding.effect != Effect::Harmless && self.read_only {
            self.say(
                format!(
                    "read-only: your role may only read ({} is not available)",
                    binding.label
                ),
                Level::Warn,
            );
            return;
        }
        match binding.command {
            Command::Quit => self.quit = true,
            Command::NextScreen => self.show(self.screen.next()),
            Command::PrevScreen => self.show(self.screen.prev()),
            Command::Show(id) => self.show(id),
            Command::Help => self.modal = Some(Modal::Help { scroll: 0 }),
            Command::Refresh => {
                self.fetch(Fetch::Counters);
                self.refresh_screen();
            }
            cmd => {
                let ctx = self.ctx();
                let intents = self.screen_mut(self.screen).on_command(cmd, &ctx);
                self.apply(intents);
            }
        }
    }

    fn apply(&mut self, intents: Vec<Intent>) {
        for intent in intents {
            match intent {
                Intent::Fetch(f) => self.fetch(f),
                Intent::Act(a) => self.request(a),
                Intent::Ask(p) => self.modal = Some(Modal::Prompt(p)),
                Intent::Choose(c) => self.modal = Some(Modal::Choice(c)),
                Intent::Say(s) => self.say(s, Level::Plain),
            }
        }
    }

    /// An action the operator asked for: confirmed first if it needs it.
    fn request(&mut self, action: Action) {
        if self.read_only {
            self.say("read-only: your role may only read", Level::Warn);
        } else if self.busy.is_some() {
            self.say("an action is running: wait for it to finish", Level::Warn);
        } else if action.needs_confirmation() {
            self.modal = Some(Modal::Confirm(action));
        } else {
            self.run(action);
        }
    }

    fn run(&mut self, action: Action) {
        self.busy = Some(Busy {
            label: action.progress_label(),
            done: 0,
            total: action.steps(),
        });
        self.status = None;
        self.outbox.push(Job::Act(action));
    }

    fn on_modal_key(&mut self, modal: Modal, key: KeyEvent) {
        match modal {
            Modal::Help { scroll } => match key.code {
                KeyCode::Char('j') | KeyCode::Down => {
                    self.modal = Some(Modal::Help {
                        scroll: scroll.saturating_add(1),
                    })
                }
                KeyCode::Char('k') | KeyCode::Up => {
                    self.modal = Some(Modal::Help {
                        scroll: scroll.saturating_sub(1),
                    })
                }
                KeyCode::PageDown => {
                    self.modal = Some(Modal::Help {
                        scroll: scroll.saturating_add(10),
                    })
                }
                KeyCode::PageUp => {
                    self.modal = Some(Modal::Help {
                        scroll: scroll.saturating_sub(10),
                    })
                }
                _ => {}
            },
            Modal::Confirm(action) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => self.run(action),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                    self.say("cancelled", Level::Plain)
                }
                // Anything else: the question stays until it is answered.
                _ => self.modal = Some(Modal::Confirm(action)),
            },
            Modal::Choice(choice) => {
                let picked = match key.code {
                    KeyCode::Char(c) => choice.options.iter().find(|(k, _)| *k == c).copied(),
                    _ => None,
                };
                match (picked, key.code) {
                    (Some((k, _)), _) => self.chosen(choice.next, k),
                    (None, KeyCode::Esc) => self.say("cancelled", Level::Plain),
                    _ => self.modal = Some(Modal::Choice(choice)),
                }
            }
            Modal::Prompt(mut prompt) => match key.code {
                KeyCode::Esc => self.say("cancelled", Level::Plain),
                KeyCode::Enter => self.answered(prompt.next, prompt.input),
                KeyCode::Backspace => {
                    prompt.input.pop();
                    self.modal = Some(Modal::Prompt(prompt));
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                    // Bounded: a path, an address, a password.
                    if prompt.input.chars().count() < 1024 {
                        prompt.input.push(c);
                    }
                    self.modal = Some(Modal::Prompt(prompt));
                }
                _ => self.modal = Some(Modal::Prompt(prompt)),
            },
        }
    }

    fn chosen(&mut self, next: ChoiceNext, key: char) {
        match next {
            ChoiceNext::Pin { domain } => {
                let level = match key {
                    'h' => PinLevel::High,
                    'm' => PinLevel::Medium,
                    'l' => PinLevel::Low,
                    _ => PinLevel::None,
                };
                self.request(Action::TrustPin {
                    domain,
                    level: Some(level),
                });
            }
            ChoiceNext::DigestFrequency { recipient } => {
                let frequency = match key {
                    'o' => Some("off"),
                    'h' => Some("hourly"),
                    'd' => Some("daily"),
                    'w' => Some("weekly"),
                    _ => None,
                };
                self.request(Action::DigestFrequency {
                    recipient,
                    frequency: frequency.map(str::to_string),
                });
            }
            ChoiceNext::ListKind => {
                let list = if key == 'b' {
                    ListName::Block
                } else {
                    ListName::Allow
                };
                self.modal = Some(Modal::Prompt(Prompt::new(
                    "Add a list entry",
                    "Sender: bob@partner.example, @partner.example or 192.0.2.0/24",
                    PromptNext::ListSender { list },
                )));
            }
        }
    }

    /// A prompt's answer: the next prompt, or the action.
    fn answered(&mut self, next: PromptNext, input: String) {
        let text = input.trim().to_string();
        let optional = |s: String| (!s.is_empty()).then_some(s);
        match next {
            PromptNext::ImportPath | PromptNext::TrustCaPath if text.is_empty() => {
                self.say("cancelled: no file given", Level::Plain)
            }
            PromptNext::ImportPath => {
                let mut p = Prompt::new(
                    "Import a certificate",
                    "PKCS#12 or key password (Enter: none); it is not shown",
                    PromptNext::ImportPassword {
                        path: PathBuf::from(text),
                    },
                );
                p.secret = true;
                self.modal = Some(Modal::Prompt(p));
            }
            PromptNext::ImportPassword { path } => self.request(Action::CertImport {
                path,
                // The password as typed: spaces may be part of it.
                password: (!input.is_empty()).then_some(Secret(input)),
            }),
            PromptNext::TrustCaPath => self.request(Action::CertTrustCa {
                path: PathBuf::from(text),
            }),
            PromptNext::ListSender { .. } if text.is_empty() => {
                self.say("cancelled: no sender given", Level::Plain)
            }
            PromptNext::ListSender { list } => {
                self.modal = Some(Modal::Prompt(Prompt::new(
                    "Add a list entry",
                    "Recipient: user@example.com or example.com (Enter: every recipient)",
                    PromptNext::ListRecipient { list, sender: text },
                )))
            }
            PromptNext::ListRecipient { list, sender } => {
                self.modal = Some(Modal::Prompt(Prompt::new(
                    "Add a list entry",
                    "Comment (Enter: none)",
                    PromptNext::ListComment {
                        list,
                        sender,
                        recipient: optional(text),
                    },
                )))
            }
            PromptNext::ListComment {
                list,
                sender,
                recipient,
            } => self.request(Action::ListAdd(NewListEntry {
                list,
                sender,
                recipient,
                comment: optional(text),
            })),
        }
    }

    /// An answer from the worker.
    pub fn on_reply(&mut self, reply: Reply) {
        let now = self.now;
        match reply {
            Reply::Health(r) => {
                self.reachable(&r);
                if let Ok(h) = r {
                    self.dashboard.health = Some(h.clone());
                    self.health = Some(h);
                }
            }
            // The role decides before the first key: an auditor's keys show greyed at once.
            // A gateway without the endpoint leaves it to the first refusal.
            Reply::WhoAmI(r) => {
                self.reachable(&r);
                if let Ok(w) = r {
                    self.read_only = !w.may_change;
                }
            }
            Reply::Counters(r) => {
                self.reachable(&r);
                self.dashboard.take_counters(r, now);
            }
            Reply::Held {
                query,
                append,
                result,
            } => {
                self.reachable(&result);
                self.quarantine.take_page(query, append, result, now);
            }
            Reply::HeldDetail { message, result } => {
                self.reachable(&result);
                self.quarantine.take_detail(&message, result, now);
            }
            Reply::Queue(r) => {
                self.reachable(&r);
                self.queue.take(r, now);
            }
            Reply::Certs(r) => {
                self.reachable(&r);
                self.certs.take(r, now);
            }
            Reply::Trust(r) => {
                self.reachable(&r);
                self.trust.take(r, now);
            }
            Reply::Lists(r) => {
                self.reachable(&r);
                self.lists.take(r, now);
            }
            Reply::Progress { done, total } => {
                if let Some(b) = &mut self.busy {
                    b.done = done;
                    b.total = total;
                }
            }
            Reply::Acted(outcome) => self.acted(outcome),
        }
    }

    fn reachable<T>(&mut self, r: &ApiResult<T>) {
        match r {
            Ok(_) => {
                if self.unreachable.take().is_some() {
                    // Back: load what the outage left stale (the role may have changed).
                    self.fetch(Fetch::Health);
                    self.fetch(Fetch::WhoAmI);
                    self.refresh_screen();
                }
            }
            Err(e) if e.is_unreachable() => self.unreachable = Some(e.clone()),
            Err(_) => {}
        }
    }

    fn acted(&mut self, outcome: Outcome) {
        self.busy = None;
        match &outcome.error {
            Some(e) if e.is_forbidden() => {
                self.read_only = true;
                self.say(
                    format!("read-only from now on: {e}. {}", e.advice()),
                    Level::Bad,
                );
            }
            Some(e) if outcome.summary.is_empty() => self.say(format!("failed: {e}"), Level::Bad),
            Some(e) => self.say(format!("{}: {e}", outcome.summary), Level::Bad),
            None => self.say(outcome.summary, Level::Ok),
        }
        if let Some(e) = &outcome.error
            && e.is_unreachable()
        {
            self.unreachable = Some(e.clone());
        }
        self.fetch(Fetch::Counters);
        self.refresh_screen();
    }

    /// A tick of the clock (about once a second).
    pub fn on_tick(&mut self, now: i64) {
        self.now = now;
        if self.unreachable.is_some() {
            if now - self.last_retry >= RETRY_SECS {
                self.last_retry = now;
                self.fetch(Fetch::Health);
            }
            return;
        }
        if now - self.last_sample >= SAMPLE_SECS {
            self.last_sample = now;
            self.fetch(Fetch::Counters);
        }
        let idle = self.modal.is_none() && self.busy.is_none();
        if idle && now - self.last_refresh >= REFRESH_SECS {
            let ctx = self.ctx();
            for f in self.screen_mut(self.screen).auto_refresh(&ctx) {
                self.fetch(f);
            }
            self.last_refresh = now;
        }
    }

    /// Draw everything.
    pub fn render(&mut self, frame: &mut Frame) {
        let [tabs, body, hints, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.render_tabs(frame, tabs);
        let theme = self.theme;
        let view = View {
            theme: &theme,
            now: self.now,
            read_only: self.read_only,
        };
        match &self.unreachable {
            Some(e) => render_unreachable(frame, body, e, &theme),
            None => {
                let screen = self.screen;
                self.screen_mut(screen).render(frame, body, &view);
            }
        }
        self.render_hints(frame, hints);
        self.render_status(frame, status);
        if let Some(modal) = &self.modal {
            render_modal(frame, modal, self.screen, self.read_only, &theme);
        }
    }

    fn render_tabs(&self, frame: &mut Frame, area: Rect) {
        let t = &self.theme;
        let mut spans = Vec::new();
        for id in ScreenId::ALL {
            let label = format!(" {} {} ", id.index() + 1, id.title());
            let style = if id == self.screen {
                t.cursor()
            } else {
                t.plain()
            };
            spans.push(Span::styled(label, style));
        }
        let mut right = String::new();
        if self.read_only {
            right.push_str("[read-only] ");
        }
        if let Some(h) = &self.health {
            right.push_str(&format!("{} ", h.hostname));
        }
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let room = usize::from(area.width).saturating_sub(used);
        if room > right.chars().count() {
            spans.push(Span::raw(" ".repeat(room - right.chars().count())));
            spans.push(Span::styled(right, t.bold()));
        }
        frame.render_widget(Line::from(spans), area);
    }

    fn render_hints(&self, frame: &mut Frame, area: Rect) {
        let t = &self.theme;
        // Help first (it lists the rest), then what acts, then the screen's other keys,
        // then the global ones; what does not fit is left out.
        let here = keys::Scope::Screen(self.screen);
        let rank = |b: &keys::Binding| match (b.command, b.scope == here, b.effect) {
            (Command::Help, _, _) => 0,
            (_, true, Effect::Harmless) => 2,
            (_, true, _) => 1,
            _ => 3,
        };
        let mut bindings: Vec<&keys::Binding> = keys::BINDINGS
            .iter()
            .filter(|b| b.hint.is_some() && (b.scope == here || b.scope == keys::Scope::Global))
            .collect();
        bindings.sort_by_key(|b| rank(b));
        let mut spans = Vec::new();
        let mut used = 0;
        for b in bindings {
            let key = b.label.split(' ').next().unwrap_or(b.label);
            let text = format!(" {}  ", b.hint.unwrap_or(""));
            let width = key.chars().count() + text.chars().count();
            if used + width > usize::from(area.width) + 2 {
                continue;
            }
            used += width;
            let greyed = self.read_only && b.effect != Effect::Harmless;
            let (ks, ds) = if greyed {
                (t.dim(), t.dim())
            } else {
                (t.bold(), t.plain())
            };
            spans.push(Span::styled(key, ks));
            spans.push(Span::styled(text, ds));
        }
        frame.render_widget(Line::from(spans), area);
    }

    fn render_status(&self, frame: &mut Frame, area: Rect) {
        let t = &self.theme;
        let fresh = self.screen_ref(self.screen).freshness();
        let mut right = if fresh.loading {
            ("loading…".to_string(), Level::Plain)
        } else if let Some(at) = fresh.loaded_at {
            let age = self.now - at;
            let level = if fresh.error.is_some() || age > 3 * REFRESH_SECS {
                Level::Warn
            } else {
                Level::Plain
            };
            let stale = if fresh.error.is_some() { "stale, " } else { "" };
            (format!("{stale}updated {} ago", format::age(age)), level)
        } else {
            (String::new(), Level::Plain)
        };
        if self.read_only {
            right.0 = format!("[read-only] {}", right.0);
        }
        let left = if let Some(b) = &self.busy {
            let bar = if b.total > 1 {
                let width = 20;
                let filled = b.done * width / b.total.max(1);
                format!(
                    " [{}{}] {}/{}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    b.done,
                    b.total
                )
            } else {
                " …".to_string()
            };
            match &self.status {
                // Said while it runs (a refused key): the bar and what was said.
                Some(s) => Line::from(vec![
                    Span::styled(bar.trim_start().to_string(), t.bold()),
                    Span::styled(format!(" · {}", s.text), t.level(s.level)),
                ]),
                None => Line::styled(format!("{}{bar}", b.label), t.bold()),
            }
        } else if let Some(s) = &self.status {
            Line::styled(s.text.clone(), t.level(s.level))
        } else {
            Line::raw("")
        };
        // One blank column keeps a long status apart from the age.
        let right_width = right.0.chars().count() as u16 + 1;
        let [l, r] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(right_width)]).areas(area);
        frame.render_widget(left, l);
        frame.render_widget(Line::styled(right.0, t.level(right.1)), r);
    }
}

fn render_unreachable(frame: &mut Frame, area: Rect, e: &ApiError, t: &Theme) {
    let lines = vec![
        Line::styled(e.to_string(), t.bad()),
        Line::raw(""),
        Line::raw(e.advice()),
        Line::raw(""),
        Line::styled(
            format!("Trying again every {RETRY_SECS} s. q quits."),
            t.dim(),
        ),
    ];
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(" The gateway cannot be reached ", t.bold()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn render_modal(frame: &mut Frame, modal: &Modal, screen: ScreenId, read_only: bool, t: &Theme) {
    let area = frame.area();
    match modal {
        Modal::Help { scroll } => {
            let mut lines = Vec::new();
            for b in keys::for_screen(screen) {
                let greyed = read_only && b.effect != Effect::Harmless;
                let note = match (b.effect, greyed) {
                    (_, true) => " (read-only)",
                    (Effect::Destructive, false) => " (asks first)",
                    _ => "",
                };
                let (ks, ds) = if greyed {
                    (t.dim(), t.dim())
                } else {
                    (t.bold(), t.plain())
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("{:<12}", b.label), ks),
                    Span::styled(format!("{}{note}", b.description), ds),
                ]));
            }
            let height = area.height.saturating_sub(2);
            let rect = popup::centred(area, area.width.saturating_sub(4).min(100), height);
            let max_scroll = (lines.len() as u16).saturating_sub(rect.height.saturating_sub(2));
            let title = format!("Keys: {} (j/k scroll, Esc closes)", screen.title());
            frame.render_widget(ratatui::widgets::Clear, rect);
            let block = Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(format!(" {title} "), t.bold()));
            frame.render_widget(
                Paragraph::new(lines)
                    .block(block)
                    .wrap(Wrap { trim: false })
                    .scroll(((*scroll).min(max_scroll), 0)),
                rect,
            );
        }
        Modal::Confirm(action) => {
            let lines = vec![
                Line::raw(action.question()),
                Line::raw(""),
                Line::from(vec![
                    Span::styled("y", t.bold()),
                    Span::raw(" yes    "),
                    Span::styled("n", t.bold()),
                    Span::raw(" / Esc no"),
                ]),
            ];
            let rect = popup::centred(area, 60, 8);
            popup::boxed(frame, rect, "Confirm", lines, t);
        }
        Modal::Prompt(p) => {
            let shown = if p.secret {
                format!("{} characters typed", p.input.chars().count())
            } else {
                p.input.clone()
            };
            let lines = vec![
                Line::raw(p.label.clone()),
                Line::raw(""),
                Line::from(vec![
                    Span::styled("> ", t.bold()),
                    Span::raw(crate::sanitize::line(&shown)),
                    Span::styled("_", t.bold()),
                ]),
                Line::raw(""),
                Line::styled("Enter accepts, Esc cancels", t.dim()),
            ];
            let rect = popup::centred(area, 70, 9);
            popup::boxed(frame, rect, &p.title, lines, t);
        }
        Modal::Choice(c) => {
            let mut lines: Vec<Line> = c
                .options
                .iter()
                .map(|(k, what)| {
                    Line::from(vec![
                        Span::styled(format!("{k} "), t.bold()),
                        Span::raw(*what),
                    ])
                })
                .collect();
            lines.push(Line::styled("Esc cancels", t.dim()));
            let rect = popup::centred(area, 50, c.options.len() as u16 + 3);
            popup::boxed(frame, rect, &c.title, lines, t);
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
