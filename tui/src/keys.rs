//! Every key of the console in one table: which screen it belongs to, what it does, whether
//! it changes something on the gateway (greyed in read-only mode) or destroys something
//! (always asks first). Dispatch and the help overlay are both read from [`BINDINGS`].

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The screens, in tab order; the number keys are their positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScreenId {
    Dashboard,
    Quarantine,
    Certs,
    Trust,
    Queue,
    Lists,
}

impl ScreenId {
    pub const ALL: [ScreenId; 6] = [
        ScreenId::Dashboard,
        ScreenId::Quarantine,
        ScreenId::Certs,
        ScreenId::Trust,
        ScreenId::Queue,
        ScreenId::Lists,
    ];

    pub fn title(self) -> &'static str {
        match self {
            ScreenId::Dashboard => "Dashboard",
            ScreenId::Quarantine => "Quarantine",
            ScreenId::Certs => "Certificates",
            ScreenId::Trust => "Trust",
            ScreenId::Queue => "Queue",
            ScreenId::Lists => "Lists",
        }
    }

    pub fn index(self) -> usize {
        ScreenId::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    pub fn next(self) -> ScreenId {
        ScreenId::ALL[(self.index() + 1) % ScreenId::ALL.len()]
    }

    pub fn prev(self) -> ScreenId {
        ScreenId::ALL[(self.index() + ScreenId::ALL.len() - 1) % ScreenId::ALL.len()]
    }
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Screen(ScreenId),
}

/// What pressing the key does to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Looks, moves, loads: always available.
    Harmless,
    /// Changes the gateway: not available in read-only mode.
    Changes,
    /// Removes something: not available in read-only mode, and asks first.
    Destructive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quit,
    NextScreen,
    PrevScreen,
    Show(ScreenId),
    Help,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Back,
    Refresh,
    Filter,
    Select,
    SortNext,
    SortReverse,
    Release,
    ReleaseLearn,
    ReleaseAllow,
    Delete,
    DeleteLearn,
    Retry,
    Import,
    TrustCa,
    Pin,
    Unpin,
    Add,
    ReportFrequency,
}

/// A key with its modifiers (Shift is part of an upper-case character, so it is ignored for
/// characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

const fn key(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

const fn ch(c: char) -> Key {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

impl Key {
    pub fn matches(&self, ev: &KeyEvent) -> bool {
        let relevant = KeyModifiers::CONTROL | KeyModifiers::ALT;
        let code = match (ev.code, self.code) {
            // Terminals differ on whether Shift-Tab carries SHIFT.
            (KeyCode::BackTab, KeyCode::BackTab) => return true,
            (a, b) => a == b,
        };
        code && (ev.modifiers & relevant) == (self.mods & relevant)
    }
}

pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [Key],
    /// How the help overlay and the hint line name the keys.
    pub label: &'static str,
    pub command: Command,
    pub effect: Effect,
    pub description: &'static str,
    /// Shown in the hint line at the bottom of its screen.
    pub hint: Option<&'static str>,
}

const fn b(
    scope: Scope,
    keys: &'static [Key],
    label: &'static str,
    command: Command,
    effect: Effect,
    description: &'static str,
    hint: Option<&'static str>,
) -> Binding {
    Binding {
        scope,
        keys,
        label,
        command,
        effect,
        description,
        hint,
    }
}

use Command as C;
use Effect::{Changes, Destructive, Harmless};
use Scope::{Global, Screen};
use ScreenId as S;

/// Every key. Screen bindings are looked up before the global ones.
pub const BINDINGS: &[Binding] = &[
    // Everywhere.
    b(
        Global,
        &[ch('?')],
        "?",
        C::Help,
        Harmless,
        "help: the keys of this screen",
        Some("help"),
    ),
    b(
        Global,
        &[ch('q'), ctrl('c')],
        "q / Ctrl-C",
        C::Quit,
        Harmless,
        "quit",
        Some("quit"),
    ),
    b(
        Global,
        &[key(KeyCode::Tab)],
        "Tab",
        C::NextScreen,
        Harmless,
        "next screen",
        None,
    ),
    b(
        Global,
        &[key(KeyCode::BackTab)],
        "Shift-Tab",
        C::PrevScreen,
        Harmless,
        "previous screen",
        None,
    ),
    b(
        Global,
        &[ch('1')],
        "1",
        C::Show(S::Dashboard),
        Harmless,
        "Dashboard",
        None,
    ),
    b(
        Global,
        &[ch('2')],
        "2",
        C::Show(S::Quarantine),
        Harmless,
        "Quarantine",
        None,
    ),
    b(
        Global,
        &[ch('3')],
        "3",
        C::Show(S::Certs),
        Harmless,
        "Certificates",
        None,
    ),
    b(
        Global,
        &[ch('4')],
        "4",
        C::Show(S::Trust),
        Harmless,
        "Trust",
        None,
    ),
    b(
        Global,
        &[ch('5')],
        "5",
        C::Show(S::Queue),
        Harmless,
        "Queue",
        None,
    ),
    b(
        Global,
        &[ch('6')],
        "6",
        C::Show(S::Lists),
        Harmless,
        "Lists",
        None,
    ),
    b(
        Global,
        &[ch('k'), key(KeyCode::Up)],
        "k / ↑",
        C::Up,
        Harmless,
        "move up",
        None,
    ),
    b(
        Global,
        &[ch('j'), key(KeyCode::Down)],
        "j / ↓",
        C::Down,
        Harmless,
        "move down",
        None,
    ),
    b(
        Global,
        &[key(KeyCode::PageUp)],
        "PgUp",
        C::PageUp,
        Harmless,
        "page up",
        None,
    ),
    b(
        Global,
        &[key(KeyCode::PageDown)],
        "PgDn",
        C::PageDown,
        Harmless,
        "page down",
        None,
    ),
    b(
        Global,
        &[ch('g'), key(KeyCode::Home)],
        "g / Home",
        C::Top,
        Harmless,
        "first row",
        None,
    ),
    b(
        Global,
        &[ch('G'), key(KeyCode::End)],
        "G / End",
        C::Bottom,
        Harmless,
        "last row",
        None,
    ),
    b(
        Global,
        &[key(KeyCode::Enter)],
        "Enter",
        C::Open,
        Harmless,
        "open the row's details",
        None,
    ),
    b(
        Global,
        &[key(KeyCode::Esc)],
        "Esc",
        C::Back,
        Harmless,
        "back: close details, clear the filter",
        None,
    ),
    b(
        Global,
        &[key(KeyCode::F(5)), ctrl('r')],
        "F5 / Ctrl-R",
        C::Refresh,
        Harmless,
        "reload from the gateway",
        None,
    ),
    // Quarantine.
    b(
        Screen(S::Quarantine),
        &[ch('/')],
        "/",
        C::Filter,
        Harmless,
        "filter: words of the subject, or recipient: sender: subject: symbol: reason: id: score>=N score<=N; Enter searches the gateway",
        Some("filter"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch(' ')],
        "Space",
        C::Select,
        Harmless,
        "select or unselect the row (actions apply to the selection, else to the row)",
        Some("select"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('s')],
        "s",
        C::SortNext,
        Harmless,
        "sort by the next column",
        Some("sort"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('S')],
        "S",
        C::SortReverse,
        Harmless,
        "reverse the sort order",
        None,
    ),
    b(
        Screen(S::Quarantine),
        &[ch('r')],
        "r",
        C::Release,
        Changes,
        "release: deliver to the recipient (asks when several are selected)",
        Some("release"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('l')],
        "l",
        C::ReleaseLearn,
        Changes,
        "release and teach Bayes it is ham",
        Some("+ham"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('a')],
        "a",
        C::ReleaseAllow,
        Changes,
        "release and always allow the sender for this recipient (allow list)",
        Some("+allow"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('d')],
        "d",
        C::Delete,
        Destructive,
        "delete without delivering",
        Some("delete"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('D')],
        "D",
        C::DeleteLearn,
        Destructive,
        "delete and teach Bayes it is spam",
        Some("+spam"),
    ),
    b(
        Screen(S::Quarantine),
        &[ch('f')],
        "f",
        C::ReportFrequency,
        Changes,
        "how often the recipient of the row gets quarantine reports (off, hourly, daily, weekly, the schedule)",
        None,
    ),
    // Certificates.
    b(
        Screen(S::Certs),
        &[ch('i')],
        "i",
        C::Import,
        Changes,
        "import a file: PEM, DER, PKCS#7 or PKCS#12 (asks for the path, then a password that is never shown)",
        Some("import"),
    ),
    b(
        Screen(S::Certs),
        &[ch('c')],
        "c",
        C::TrustCa,
        Changes,
        "trust a file's CA certificates as anchors (asks for the path)",
        Some("trust CA"),
    ),
    b(
        Screen(S::Certs),
        &[ch('d')],
        "d",
        C::Delete,
        Destructive,
        "delete the certificate and its private key",
        Some("delete"),
    ),
    // Trust.
    b(
        Screen(S::Trust),
        &[ch('p')],
        "p",
        C::Pin,
        Changes,
        "pin the domain's level: high, medium, low or none",
        Some("pin"),
    ),
    b(
        Screen(S::Trust),
        &[ch('u')],
        "u",
        C::Unpin,
        Changes,
        "unpin: back to learned trust",
        Some("unpin"),
    ),
    // Queue.
    b(
        Screen(S::Queue),
        &[ch('r')],
        "r",
        C::Retry,
        Changes,
        "retry: make the message due now",
        Some("retry"),
    ),
    b(
        Screen(S::Queue),
        &[ch('d')],
        "d",
        C::Delete,
        Destructive,
        "delete the message without delivering it",
        Some("delete"),
    ),
    // Lists.
    b(
        Screen(S::Lists),
        &[ch('a')],
        "a",
        C::Add,
        Changes,
        "add an allow or block entry (asks for list, sender, recipient, comment)",
        Some("add"),
    ),
    b(
        Screen(S::Lists),
        &[ch('d')],
        "d",
        C::Delete,
        Destructive,
        "remove the entry",
        Some("remove"),
    ),
];

/// The binding `ev` means on `screen`: the screen's own first, then the global ones.
pub fn lookup(screen: ScreenId, ev: &KeyEvent) -> Option<&'static Binding> {
    let hit = |scope: Scope| {
        BINDINGS
            .iter()
            .find(|b| b.scope == scope && b.keys.iter().any(|k| k.matches(ev)))
    };
    hit(Scope::Screen(screen)).or_else(|| hit(Scope::Global))
}

/// The bindings of a screen's help: its own, then the global ones.
pub fn for_screen(screen: ScreenId) -> impl Iterator<Item = &'static Binding> {
    BINDINGS
        .iter()
        .filter(move |b| b.scope == Scope::Screen(screen))
        .chain(BINDINGS.iter().filter(|b| b.scope == Scope::Global))
}

/// The keys of one scope as a Markdown table (the user documentation shows these).
pub fn markdown(scope: Scope) -> String {
    let mut out = String::from("| key | what it does |\n|---|---|\n");
    for b in BINDINGS.iter().filter(|b| b.scope == scope) {
        let label = b.label.replace(" / ", "`, `");
        let note = match b.effect {
            Effect::Harmless => "",
            Effect::Changes => " *(not in read-only mode)*",
            Effect::Destructive => " *(asks first; not in read-only mode)*",
        };
        out.push_str(&format!("| `{label}` | {}{note} |\n", b.description));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_documentation_lists_every_key() {
        let doc = include_str!("../../docs/console.md");
        let mut scopes = vec![Scope::Global];
        scopes.extend(ScreenId::ALL.map(Scope::Screen));
        for scope in scopes {
            let table = markdown(scope);
            if BINDINGS.iter().any(|b| b.scope == scope) {
                assert!(
                    doc.contains(&table),
                    "docs/console.md lacks the keys of {scope:?}; they are:\n{table}"
                );
            }
        }
    }

    fn press(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn screen_keys_come_before_global_ones() {
        let d = press(KeyCode::Char('d'), KeyModifiers::NONE);
        assert_eq!(lookup(S::Quarantine, &d).unwrap().command, C::Delete);
        assert!(lookup(S::Dashboard, &d).is_none());
        let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(lookup(S::Lists, &q).unwrap().command, C::Quit);
        let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(S::Certs, &ctrl_c).unwrap().command, C::Quit);
        let c = press(KeyCode::Char('c'), KeyModifiers::NONE);
        assert_eq!(lookup(S::Certs, &c).unwrap().command, C::TrustCa);
        let upper_d = press(KeyCode::Char('D'), KeyModifiers::SHIFT);
        assert_eq!(
            lookup(S::Quarantine, &upper_d).unwrap().command,
            C::DeleteLearn
        );
        let backtab = press(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(lookup(S::Trust, &backtab).unwrap().command, C::PrevScreen);
    }

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i + 1..] {
                if a.scope != b.scope {
                    continue;
                }
                for k in a.keys {
                    assert!(!b.keys.contains(k), "{k:?} bound twice in {:?}", a.scope);
                }
            }
        }
    }

    #[test]
    fn every_delete_is_destructive_and_every_destructive_key_is_a_delete() {
        for b in BINDINGS {
            let deletes = matches!(b.command, C::Delete | C::DeleteLearn);
            assert_eq!(deletes, b.effect == Destructive, "{}", b.label);
        }
    }
}
