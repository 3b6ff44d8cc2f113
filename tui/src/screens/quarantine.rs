//! Held messages: one row per held recipient, newest first, sortable by column; `/` filters
//! with the API's search fields (at once on the rows loaded, on the gateway with Enter);
//! Space marks rows; Enter opens the detail (symbols, reason, header, the safe preview,
//! attachments); release, release + learn, release + allow, delete, delete + learn.

use std::collections::HashSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};

use super::{
    Screen, cell, draw_detail, draw_table, list_and_detail, navigate, placeholder, scroll_detail,
};
use crate::action::{Action, AllowSender};
use crate::api::ApiResult;
use crate::api::types::{HeldEntry, HeldMessage, HeldPage, HeldQuery, HeldTarget, Preview};
use crate::app::{Choice, ChoiceNext};
use crate::app::{Ctx, Freshness, Intent, Loadable, View};
use crate::keys::Command;
use crate::ui::table::{Column, col, fill, grow};
use crate::ui::{RowCursor, Theme, format};
use crate::worker::Fetch;

/// Entries asked for per page.
pub const PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Time,
    Recipient,
    Sender,
    Subject,
    Score,
    Reason,
}

impl SortBy {
    const ALL: [SortBy; 6] = [
        SortBy::Time,
        SortBy::Recipient,
        SortBy::Sender,
        SortBy::Subject,
        SortBy::Score,
        SortBy::Reason,
    ];

    fn name(self) -> &'static str {
        match self {
            SortBy::Time => "time",
            SortBy::Recipient => "recipient",
            SortBy::Sender => "sender",
            SortBy::Subject => "subject",
            SortBy::Score => "score",
            SortBy::Reason => "reason",
        }
    }

    fn next(self) -> SortBy {
        let i = SortBy::ALL.iter().position(|s| *s == self).unwrap_or(0);
        SortBy::ALL[(i + 1) % SortBy::ALL.len()]
    }
}

/// An entry's text, lower-cased once, for filtering and sorting.
#[derive(Debug, Clone)]
struct Hay {
    recipient: String,
    sender: String,
    subject: String,
    reason: String,
    message_id: String,
    symbols: Vec<String>,
}

impl Hay {
    fn of(e: &HeldEntry) -> Hay {
        Hay {
            recipient: e.recipient.to_lowercase(),
            sender: e.mail_from.to_lowercase(),
            subject: e.subject.to_lowercase(),
            reason: e.reason.to_lowercase(),
            message_id: e.message_id.to_lowercase(),
            symbols: e.symbols.iter().map(|s| s.name.to_lowercase()).collect(),
        }
    }
}

/// The first 8 bytes of `s` as a big-endian integer: ordered as the strings are.
fn prefix_key(s: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

/// The search a filter line asks for: `recipient:`, `sender:`, `subject:`, `symbol:`,
/// `reason:`, `id:` (Message-ID), `score>=N`, `score<=N`; other words must be in the subject.
pub fn parse_filter(text: &str) -> HeldQuery {
    let mut q = HeldQuery::default();
    let mut subject: Vec<&str> = Vec::new();
    for word in text.split_whitespace() {
        if let Some(v) = word
            .strip_prefix("score>=")
            .or_else(|| word.strip_prefix("score>"))
        {
            q.min_score = v.parse().ok();
            continue;
        }
        if let Some(v) = word
            .strip_prefix("score<=")
            .or_else(|| word.strip_prefix("score<"))
        {
            q.max_score = v.parse().ok();
            continue;
        }
        let Some((key, value)) = word.split_once(':') else {
            subject.push(word);
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let value = Some(value.to_string());
        match key.to_ascii_lowercase().as_str() {
            "recipient" | "rcpt" | "to" => q.recipient = value,
            "sender" | "from" => q.sender = value,
            "subject" => subject.push(word.split_once(':').map_or("", |(_, v)| v)),
            "symbol" => q.symbol = value,
            "reason" => q.reason = value,
            "id" | "message_id" | "msgid" => q.message_id = value,
            _ => subject.push(word),
        }
    }
    if !subject.is_empty() {
        q.subject = Some(subject.join(" "));
    }
    q
}

/// Lower-cased terms of a query, for matching the loaded rows.
struct Terms {
    recipient: Option<String>,
    sender: Option<String>,
    subject: Vec<String>,
    symbol: Option<String>,
    reason: Option<String>,
    message_id: Option<String>,
    min_score: Option<f64>,
    max_score: Option<f64>,
}

impl Terms {
    fn of(q: &HeldQuery) -> Terms {
        let low = |s: &Option<String>| s.as_ref().map(|v| v.to_lowercase());
        Terms {
            recipient: low(&q.recipient),
            sender: low(&q.sender),
            subject: q
                .subject
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_lowercase)
                .collect(),
            symbol: low(&q.symbol),
            reason: low(&q.reason),
            message_id: low(&q.message_id).map(|m| m.trim_matches(['<', '>']).to_string()),
            min_score: q.min_score,
            max_score: q.max_score,
        }
    }

    /// Whether a row matches. Looser than the gateway (parts of words match too), so a row
    /// the gateway would find is never hidden while typing.
    fn matches(&self, h: &Hay, score: f64) -> bool {
        let has = |field: &str, term: &Option<String>| {
            term.as_ref().is_none_or(|t| field.contains(t.as_str()))
        };
        has(&h.recipient, &self.recipient)
            && has(&h.sender, &self.sender)
            && has(&h.reason, &self.reason)
            && has(&h.message_id, &self.message_id)
            && self.subject.iter().all(|w| h.subject.contains(w.as_str()))
            && self
                .symbol
                .as_ref()
                .is_none_or(|s| h.symbols.iter().any(|n| n.contains(s.as_str())))
            && self.min_score.is_none_or(|m| score >= m)
            && self.max_score.is_none_or(|m| score <= m)
    }
}

/// The detail of one message.
#[derive(Debug, Default)]
pub struct Detail {
    pub message: String,
    pub data: Loadable<(HeldMessage, Preview)>,
    pub scroll: u16,
}

#[derive(Debug)]
pub struct Quarantine {
    /// Every entry loaded (the pages so far).
    pub entries: Vec<HeldEntry>,
    hay: Vec<Hay>,
    /// Indices of `entries` in the sort order.
    order: Vec<usize>,
    /// Ascending orders computed since the entries last changed, by column.
    orders: Vec<(SortBy, Vec<usize>)>,
    /// The rows shown: the filter's matches, in the sort order.
    pub visible: Vec<usize>,
    pub cursor: RowCursor,
    /// Marked rows, by entry id.
    pub selected: HashSet<i64>,
    pub sort: SortBy,
    pub descending: bool,
    /// The filter line as typed.
    pub filter: String,
    /// While the filter is typed: the filter before (Esc puts it back).
    editing: Option<String>,
    /// The gateway's search behind `entries`.
    pub query: HeldQuery,
    /// The cursor of the next page on the gateway.
    pub next: Option<String>,
    pub page: Loadable<()>,
    /// The search of the first page being loaded (a newer search is not held back by it).
    in_flight: Option<HeldQuery>,
    pub detail: Option<Detail>,
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine {
            entries: Vec::new(),
            hay: Vec::new(),
            order: Vec::new(),
            orders: Vec::new(),
            visible: Vec::new(),
            cursor: RowCursor::default(),
            selected: HashSet::new(),
            sort: SortBy::Time,
            descending: true,
            filter: String::new(),
            editing: None,
            query: HeldQuery::default(),
            next: None,
            page: Loadable::default(),
            in_flight: None,
            detail: None,
        }
    }
}

impl Quarantine {
    /// Mark a quarantine fetch as under way; `false` when the same kind already is.
    pub fn mark_loading(&mut self, fetch: &Fetch) -> bool {
        match fetch {
            Fetch::HeldDetail(m) => match &mut self.detail {
                Some(d) if d.message == *m => d.data.start(),
                _ => true,
            },
            Fetch::Held {
                query, after: None, ..
            } => {
                if self.page.loading && self.in_flight.as_ref() == Some(query) {
                    return false;
                }
                self.page.loading = true;
                self.in_flight = Some(query.clone());
                true
            }
            _ => self.page.start(),
        }
    }

    /// Load entries directly (tests, the bench).
    pub fn set_entries(&mut self, entries: Vec<HeldEntry>, now: i64) {
        self.take_page(
            self.query.clone(),
            false,
            Ok(HeldPage {
                entries,
                next: None,
            }),
            now,
        );
    }

    /// A page from the gateway.
    pub fn take_page(
        &mut self,
        query: HeldQuery,
        append: bool,
        result: ApiResult<HeldPage>,
        now: i64,
    ) {
        if self.in_flight.as_ref() == Some(&query) || append {
            self.in_flight = None;
            self.page.loading = false;
        }
        if query != self.query {
            // An answer to a search that was replaced since.
            return;
        }
        let keep = self.current().map(|e| e.entry);
        let page = match result {
            Ok(p) => p,
            Err(e) => {
                self.page.finish(Err(e), now);
                return;
            }
        };
        self.page.finish(Ok(()), now);
        if !append {
            self.entries.clear();
            self.hay.clear();
        }
        self.orders.clear();
        self.hay.extend(page.entries.iter().map(Hay::of));
        self.entries.extend(page.entries);
        self.next = page.next;
        let present: HashSet<i64> = self.entries.iter().map(|e| e.entry).collect();
        self.selected.retain(|id| present.contains(id));
        self.resort();
        if let Some(id) = keep
            && let Some(pos) = self
                .visible
                .iter()
                .position(|&i| self.entries[i].entry == id)
        {
            self.cursor.row = pos;
        }
        self.cursor.clamp(self.visible.len());
    }

    pub fn take_detail(
        &mut self,
        message: &str,
        result: ApiResult<(HeldMessage, Preview)>,
        now: i64,
    ) {
        if let Some(d) = &mut self.detail
            && d.message == message
        {
            d.data.finish(result, now);
        }
    }

    fn resort(&mut self) {
        let ascending = match self.orders.iter().find(|(by, _)| *by == self.sort) {
            Some((_, order)) => order.clone(),
            None => {
                let order = self.sorted(self.sort);
                self.orders.push((self.sort, order.clone()));
                order
            }
        };
        self.order = ascending;
        if self.descending {
            self.order.reverse();
        }
        self.refilter();
    }

    /// Indices of `entries` sorted by `by`, ascending (ties by load order, so equal rows do
    /// not move between sorts).
    fn sorted(&self, by: SortBy) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        let (e, h) = (&self.entries, &self.hay);
        let text = |i: usize| -> &str {
            match by {
                SortBy::Recipient => &h[i].recipient,
                SortBy::Sender => &h[i].sender,
                SortBy::Subject => &h[i].subject,
                _ => &h[i].reason,
            }
        };
        match by {
            SortBy::Time => order.sort_unstable_by_key(|&i| (e[i].received_at, e[i].entry)),
            SortBy::Score => {
                order.sort_unstable_by(|&a, &b| e[a].score.total_cmp(&e[b].score).then(a.cmp(&b)))
            }
            _ => {
                // Most comparisons are settled by the first 8 bytes, compared as one integer
                // from a compact array; only equal prefixes compare the strings.
                let prefix: Vec<u64> = (0..e.len()).map(|i| prefix_key(text(i))).collect();
                order.sort_unstable_by(|&a, &b| {
                    prefix[a]
                        .cmp(&prefix[b])
                        .then_with(|| text(a).cmp(text(b)))
                        .then(a.cmp(&b))
                });
            }
        }
        order
    }

    /// Apply the filter line to the loaded rows.
    fn refilter(&mut self) {
        let terms = Terms::of(&parse_filter(&self.filter));
        self.visible = self
            .order
            .iter()
            .copied()
            .filter(|&i| terms.matches(&self.hay[i], self.entries[i].score))
            .collect();
        self.cursor.clamp(self.visible.len());
    }

    /// The row under the cursor.
    pub fn current(&self) -> Option<&HeldEntry> {
        self.visible.get(self.cursor.row).map(|&i| &self.entries[i])
    }

    /// What an action applies to: the marked rows, else the row under the cursor.
    fn chosen(&self) -> Vec<&HeldEntry> {
        if self.selected.is_empty() {
            self.current().into_iter().collect()
        } else {
            self.visible
                .iter()
                .map(|&i| &self.entries[i])
                .filter(|e| self.selected.contains(&e.entry))
                .collect()
        }
    }

    fn targets(entries: &[&HeldEntry]) -> Vec<HeldTarget> {
        entries
            .iter()
            .map(|e| HeldTarget {
                message: e.message.to_string(),
                recipient: Some(e.recipient.to_string()),
            })
            .collect()
    }

    fn act(&self, cmd: Command) -> Vec<Intent> {
        let chosen = self.chosen();
        if chosen.is_empty() {
            return vec![Intent::Say("no message here".into())];
        }
        let targets = Self::targets(&chosen);
        let action = match cmd {
            Command::Release | Command::ReleaseLearn => Action::Release {
                targets,
                learn: cmd == Command::ReleaseLearn,
                allow: Vec::new(),
            },
            Command::ReleaseAllow => {
                let mut allow: Vec<AllowSender> = Vec::new();
                for e in &chosen {
                    let a = AllowSender {
                        message: e.message.to_string(),
                        sender: e.mail_from.to_string(),
                        recipient: e.recipient.to_string(),
                    };
                    let known = allow
                        .iter()
                        .any(|b| b.sender == a.sender && b.recipient == a.recipient);
                    // The null sender cannot be allowed.
                    if !a.sender.is_empty() && !known {
                        allow.push(a);
                    }
                }
                Action::Release {
                    targets,
                    learn: false,
                    allow,
                }
            }
            Command::Delete | Command::DeleteLearn => Action::DeleteHeld {
                targets,
                learn: cmd == Command::DeleteLearn,
            },
            _ => return Vec::new(),
        };
        vec![Intent::Act(action)]
    }

    fn fetch_first(&self) -> Fetch {
        Fetch::Held {
            query: self.query.clone(),
            after: None,
            limit: PAGE,
        }
    }

    /// At the end of the rows loaded with more on the gateway: the next page.
    fn more(&self) -> Vec<Intent> {
        let at_end = self.cursor.row + 1 >= self.visible.len();
        match &self.next {
            Some(after) if at_end && !self.page.loading => vec![Intent::Fetch(Fetch::Held {
                query: self.query.clone(),
                after: Some(after.clone()),
                limit: PAGE,
            })],
            _ => Vec::new(),
        }
    }

    fn detail_text(&self, theme: &Theme) -> Text<'static> {
        let mut lines: Vec<Line<'static>> = Vec::new();
        let Some(d) = &self.detail else {
            return Text::default();
        };
        let entry = self.entries.iter().find(|e| *e.message == *d.message);
        let label = |s: &str| Span::styled(format!("{s:<11}"), theme.bold());
        if let Some(e) = entry {
            lines.push(Line::from(vec![
                label("Subject"),
                Span::raw(e.subject.to_string()),
            ]));
            lines.push(Line::from(vec![
                label("From"),
                Span::raw(e.from.to_string()),
            ]));
            lines.push(Line::from(vec![
                label("Envelope"),
                Span::raw(format!(
                    "{} → {}",
                    if e.mail_from.is_empty() {
                        "<>"
                    } else {
                        &e.mail_from
                    },
                    e.recipient
                )),
            ]));
            lines.push(Line::from(vec![
                label("Received"),
                Span::raw(format!(
                    "{} UTC from {} ({}), {}{}",
                    format::datetime(e.received_at),
                    e.client_ip,
                    e.helo,
                    format::size(e.size),
                    e.tls
                        .as_ref()
                        .map_or(", no TLS".to_string(), |t| format!(", {t}"))
                )),
            ]));
            lines.push(Line::from(vec![
                label("Score"),
                Span::styled(format!("{:.2}", e.score), theme.bold()),
                Span::raw(format!("   reason: {}", e.reason)),
            ]));
            if let Some(at) = e.release_requested_at {
                lines.push(Line::from(vec![
                    label("Requested"),
                    Span::styled(
                        format!(
                            "the recipient asked for a release from a report, {} UTC",
                            format::datetime(at)
                        ),
                        theme.bold(),
                    ),
                ]));
            }
            lines.push(Line::from(vec![
                label("Expires"),
                Span::raw(format!("{} UTC", format::datetime(e.expires_at))),
            ]));
            lines.push(Line::raw(""));
            lines.push(Line::styled("Symbols", theme.header()));
            let mut symbols = e.symbols.clone();
            symbols.sort_by(|a, b| b.points.total_cmp(&a.points));
            for s in symbols {
                lines.push(Line::raw(format!(
                    "  {:<30} {:>+7.2}",
                    s.name.as_str(),
                    s.points
                )));
            }
        }
        match (&d.data.data, &d.data.error) {
            (Some((shown, preview)), _) => {
                lines.push(Line::raw(""));
                lines.push(Line::styled("Attachments", theme.header()));
                if preview.attachments.is_empty() {
                    lines.push(Line::styled("  none", theme.dim()));
                }
                for a in &preview.attachments {
                    lines.push(Line::raw(format!(
                        "  {}  {}  {}",
                        a.name,
                        a.content_type,
                        format::size(a.size)
                    )));
                }
                lines.push(Line::raw(""));
                let what = if preview.from_html {
                    "Text (from the HTML part, as plain text)"
                } else {
                    "Text"
                };
                lines.push(Line::styled(what, theme.header()));
                for l in preview.text.as_str().lines() {
                    lines.push(Line::raw(format!("  {l}")));
                }
                if preview.truncated {
                    lines.push(Line::styled(
                        "  … (only the beginning is shown)",
                        theme.dim(),
                    ));
                }
                lines.push(Line::raw(""));
                lines.push(Line::styled("Header", theme.header()));
                for h in &preview.headers {
                    lines.push(Line::from(vec![
                        Span::styled(format!("  {}: ", h.name), theme.bold()),
                        Span::raw(h.value.to_string()),
                    ]));
                }
                if !shown.audit.is_empty() {
                    lines.push(Line::raw(""));
                    lines.push(Line::styled("History", theme.header()));
                    for a in &shown.audit {
                        lines.push(Line::raw(format!(
                            "  {} {} {} by {} {}",
                            format::datetime(a.at),
                            a.action,
                            a.recipient,
                            a.user_name,
                            a.detail
                        )));
                    }
                }
            }
            (None, Some(e)) => {
                lines.push(Line::raw(""));
                lines.push(Line::styled(format!("preview: {e}"), theme.bad()));
            }
            (None, None) => {
                lines.push(Line::raw(""));
                lines.push(Line::raw("loading the preview…"));
            }
        }
        Text::from(lines)
    }
}

const COLUMNS: [Column; 7] = [
    col(" ", 1, 0),
    col("time (UTC)", 11, 1),
    grow("recipient", 18, 30, 4),
    grow("sender", 18, 30, 3),
    fill("subject", 20, 0),
    col("score", 5, 2),
    grow("reason", 12, 24, 5),
];

impl Screen for Quarantine {
    fn on_command(&mut self, cmd: Command, _ctx: &Ctx) -> Vec<Intent> {
        if let Some(d) = &mut self.detail {
            if scroll_detail(&mut d.scroll, cmd) {
                return Vec::new();
            }
            if cmd == Command::Back || cmd == Command::Open {
                self.detail = None;
                return Vec::new();
            }
        }
        if navigate(&mut self.cursor, cmd, self.visible.len()) {
            return if matches!(cmd, Command::Down | Command::PageDown | Command::Bottom) {
                self.more()
            } else {
                Vec::new()
            };
        }
        match cmd {
            Command::Open => match self.current() {
                Some(e) => {
                    let message = e.message.to_string();
                    self.detail = Some(Detail {
                        message: message.clone(),
                        ..Detail::default()
                    });
                    vec![Intent::Fetch(Fetch::HeldDetail(message))]
                }
                None => Vec::new(),
            },
            Command::Back => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.refilter();
                    if self.query != HeldQuery::default() {
                        self.query = HeldQuery::default();
                        return vec![Intent::Fetch(self.fetch_first())];
                    }
                } else if !self.selected.is_empty() {
                    self.selected.clear();
                }
                Vec::new()
            }
            Command::Filter => {
                self.editing = Some(self.filter.clone());
                Vec::new()
            }
            Command::Select => {
                if let Some(id) = self.current().map(|e| e.entry) {
                    if !self.selected.remove(&id) {
                        self.selected.insert(id);
                    }
                    self.cursor.down(self.visible.len());
                }
                Vec::new()
            }
            Command::SortNext => {
                self.sort = self.sort.next();
                // Time and score read best highest first, text A to Z.
                self.descending = matches!(self.sort, SortBy::Time | SortBy::Score);
                self.resort();
                Vec::new()
            }
            Command::SortReverse => {
                self.descending = !self.descending;
                self.resort();
                Vec::new()
            }
            Command::Release
            | Command::ReleaseLearn
            | Command::ReleaseAllow
            | Command::Delete
            | Command::DeleteLearn => self.act(cmd),
            Command::ReportFrequency => match self.current() {
                Some(e) => {
                    let recipient = e.recipient.to_string();
                    vec![Intent::Choose(Choice {
                        title: format!("Quarantine reports for {recipient}"),
                        options: vec![
                            ('o', "off"),
                            ('h', "hourly"),
                            ('d', "daily"),
                            ('w', "weekly"),
                            ('s', "the gateway's schedule"),
                        ],
                        next: ChoiceNext::DigestFrequency { recipient },
                    })]
                }
                None => vec![Intent::Say("no message here".into())],
            },
            _ => Vec::new(),
        }
    }

    fn capturing(&self) -> bool {
        self.editing.is_some()
    }

    fn on_text(&mut self, key: KeyEvent, _ctx: &Ctx) -> Vec<Intent> {
        match key.code {
            KeyCode::Esc => {
                self.filter = self.editing.take().unwrap_or_default();
                self.refilter();
            }
            KeyCode::Enter => {
                self.editing = None;
                let query = parse_filter(&self.filter);
                if query != self.query {
                    self.query = query;
                    self.cursor.top();
                    return vec![Intent::Fetch(self.fetch_first())];
                }
            }
            KeyCode::Backspace => {
                self.filter.pop();
                self.refilter();
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL)
                    && self.filter.chars().count() < 256 =>
            {
                self.filter.push(c);
                self.refilter();
            }
            _ => {}
        }
        Vec::new()
    }

    fn refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        let mut f = vec![self.fetch_first()];
        if let Some(d) = &self.detail {
            f.push(Fetch::HeldDetail(d.message.clone()));
        }
        f
    }

    fn auto_refresh(&self, ctx: &Ctx) -> Vec<Fetch> {
        // Reloading would drop the pages read beyond the first.
        if self.editing.is_some() || self.entries.len() > PAGE as usize {
            return Vec::new();
        }
        self.refresh(ctx)
    }

    fn freshness(&self) -> Freshness<'_> {
        self.page.freshness()
    }

    fn render(&mut self, frame: &mut Frame, area: Rect, view: &View) {
        let t = view.theme;
        if self.page.loaded_at.is_none() {
            placeholder(frame, area, t, self.page.loading, self.page.error.as_ref());
            return;
        }
        let show_filter = self.editing.is_some() || !self.filter.is_empty();
        let [info, filter_line, rest] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(u16::from(show_filter)),
            Constraint::Fill(1),
        ])
        .areas(area);
        let more = if self.next.is_some() {
            "+ more on the gateway"
        } else {
            "all"
        };
        let arrow = if self.descending { "↓" } else { "↑" };
        let mut spans = vec![
            Span::styled(format!("{} held", self.visible.len()), t.bold()),
            Span::raw(format!(
                " of {} loaded ({more}) · sort: {} {arrow}",
                self.entries.len(),
                self.sort.name()
            )),
        ];
        if !self.selected.is_empty() {
            spans.push(Span::styled(
                format!(" · {} selected", self.selected.len()),
                t.bold(),
            ));
        }
        frame.render_widget(Line::from(spans), info);
        if show_filter {
            let mut f = vec![
                Span::styled("/", t.bold()),
                Span::raw(crate::sanitize::line(&self.filter)),
            ];
            if self.editing.is_some() {
                f.push(Span::styled("_", t.bold()));
                f.push(Span::styled(
                    "  Enter: search the gateway, Esc: cancel",
                    t.dim(),
                ));
            }
            frame.render_widget(Line::from(f), filter_line);
        }
        let (list, detail) = list_and_detail(rest, self.detail.is_some());
        if let Some(list) = list {
            if self.visible.is_empty() {
                let msg = if self.entries.is_empty() {
                    "Nothing is held."
                } else {
                    "No held message matches the filter."
                };
                frame.render_widget(Line::raw(msg), list);
            } else {
                let (entries, visible, selected) = (&self.entries, &self.visible, &self.selected);
                draw_table(
                    frame,
                    list,
                    &COLUMNS,
                    visible.len(),
                    &mut self.cursor,
                    t,
                    |row| {
                        let e = &entries[visible[row]];
                        let marked = selected.contains(&e.entry);
                        let sender = if e.mail_from.is_empty() {
                            "<>".to_string()
                        } else {
                            e.mail_from.to_string()
                        };
                        let cells = vec![
                            cell(if marked { "*" } else { " " }),
                            cell(format::short_time(e.received_at)),
                            cell(e.recipient.to_string()),
                            cell(sender),
                            cell(e.subject.to_string()),
                            cell(format!("{:>5.1}", e.score)),
                            cell(if e.release_requested_at.is_some() {
                                format!("release requested; {}", e.reason)
                            } else {
                                e.reason.to_string()
                            }),
                        ];
                        let style = if marked { t.marked() } else { Style::default() };
                        (cells, style)
                    },
                );
            }
        }
        if let Some(area) = detail {
            let text = self.detail_text(t);
            let (title, scroll) = self.detail.as_ref().map_or((String::new(), 0), |d| {
                (format!("Message {} (Esc closes)", d.message), d.scroll)
            });
            draw_detail(frame, area, &title, text, scroll, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_keys_order_as_the_strings_do() {
        let mut words = ["b", "a", "abcdefghz", "abcdefgh", "", "ab", "é", "z"];
        let mut by_key = words;
        words.sort();
        by_key.sort_by(|a, b| prefix_key(a).cmp(&prefix_key(b)).then(a.cmp(b)));
        assert_eq!(words, by_key);
    }

    #[test]
    fn the_filter_line_becomes_the_api_search_fields() {
        let q = parse_filter(
            "invoice sender:@bad.example score>=5 symbol:BAYES_SPAM urgent to:u@x.test",
        );
        assert_eq!(q.subject.as_deref(), Some("invoice urgent"));
        assert_eq!(q.sender.as_deref(), Some("@bad.example"));
        assert_eq!(q.recipient.as_deref(), Some("u@x.test"));
        assert_eq!(q.symbol.as_deref(), Some("BAYES_SPAM"));
        assert_eq!(q.min_score, Some(5.0));
        assert_eq!(
            parse_filter("reason:score id:<a@b> score<=9").max_score,
            Some(9.0)
        );
        assert_eq!(parse_filter(""), HeldQuery::default());
    }
}
