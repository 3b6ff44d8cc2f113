//! The delivery queue: each message with its recipients, attempts, next attempt and last
//! error; retry now, delete with confirmation.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};

use super::{
    Screen, cell, draw_detail, draw_table, list_and_detail, navigate, placeholder, scroll_detail,
};
use crate::action::Action;
use crate::api::ApiResult;
use crate::api::types::QueueMessage;
use crate::app::{Ctx, Freshness, Intent, Loadable, View};
use crate::keys::Command;
use crate::ui::table::{Column, col, fill, grow};
use crate::ui::{RowCursor, Theme, format};
use crate::worker::Fetch;

#[derive(Debug, Default)]
pub struct Queue {
    pub list: Loadable<Vec<QueueMessage>>,
    pub cursor: RowCursor,
    /// The detail pane is open, scrolled this far.
    pub detail: Option<u16>,
}

const COLUMNS: [Column; 8] = [
    col("id", 17, 0),
    col("dir", 3, 4),
    grow("sender", 16, 30, 2),
    grow("recipients", 16, 30, 1),
    col("tries", 5, 3),
    col("next", 8, 3),
    col("age", 5, 5),
    fill("last error", 20, 1),
];

impl Queue {
    pub fn take(&mut self, r: ApiResult<Vec<QueueMessage>>, now: i64) {
        self.list.finish(r, now);
        let n = self.rows().len();
        self.cursor.clamp(n);
    }

    fn rows(&self) -> &[QueueMessage] {
        self.list.data.as_deref().unwrap_or(&[])
    }

    fn current(&self) -> Option<&QueueMessage> {
        self.rows().get(self.cursor.row)
    }

    fn detail_text(m: &QueueMessage, now: i64, t: &Theme) -> Text<'static> {
        let label = |s: &str| Span::styled(format!("{s:<11}"), t.bold());
        let mut lines = vec![
            Line::from(vec![label("Id"), Span::raw(m.id.to_string())]),
            Line::from(vec![
                label("Direction"),
                Span::raw(format!("{} ({})", m.direction, m.state)),
            ]),
            Line::from(vec![
                label("Sender"),
                Span::raw(if m.mail_from.is_empty() {
                    "<>".to_string()
                } else {
                    m.mail_from.to_string()
                }),
            ]),
            Line::from(vec![
                label("Received"),
                Span::raw(format!(
                    "{} UTC from {}, {}",
                    format::datetime(m.received_at),
                    m.client_ip,
                    format::size(m.size)
                )),
            ]),
            Line::from(vec![
                label("Attempts"),
                Span::raw(format!(
                    "{}, next {}",
                    m.attempts,
                    format::relative(m.next_attempt, now)
                )),
            ]),
            Line::from(vec![
                label("Score"),
                Span::raw(format!("{:.2} {}", m.score, m.symbols)),
            ]),
            Line::raw(""),
            Line::styled("Recipients", t.header()),
        ];
        for r in &m.recipients {
            let mut spans = vec![
                Span::raw(format!("  {} ", r.address)),
                Span::styled(r.status.clone(), t.bold()),
            ];
            if let Some(e) = &r.error {
                spans.push(Span::styled(format!(" {e}"), t.warn()));
            }
            lines.push(Line::from(spans));
        }
        if let Some(e) = &m.last_error {
            lines.push(Line::raw(""));
            lines.push(Line::styled("Last error", t.header()));
            lines.push(Line::styled(format!("  {e}"), t.warn()));
        }
        Text::from(lines)
    }
}

impl Screen for Queue {
    fn on_command(&mut self, cmd: Command, _ctx: &Ctx) -> Vec<Intent> {
        if let Some(scroll) = &mut self.detail
            && scroll_detail(scroll, cmd)
        {
            return Vec::new();
        }
        let n = self.rows().len();
        if navigate(&mut self.cursor, cmd, n) {
            return Vec::new();
        }
        match cmd {
            Command::Open => {
                self.detail = match self.detail {
                    Some(_) => None,
                    None => self.current().map(|_| 0),
                };
                Vec::new()
            }
            Command::Back => {
                self.detail = None;
                Vec::new()
            }
            Command::Retry | Command::Delete => match self.current() {
                Some(m) => {
                    let id = m.id.to_string();
                    vec![Intent::Act(if cmd == Command::Retry {
                        Action::QueueRetry { id }
                    } else {
                        Action::QueueDelete { id }
                    })]
                }
                None => vec![Intent::Say("the queue is empty".into())],
            },
            _ => Vec::new(),
        }
    }

    fn refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        vec![Fetch::Queue]
    }

    fn freshness(&self) -> Freshness<'_> {
        self.list.freshness()
    }

    fn render(&mut self, frame: &mut Frame, area: Rect, view: &View) {
        let t = view.theme;
        let now = view.now;
        let Some(rows) = &self.list.data else {
            placeholder(frame, area, t, self.list.loading, self.list.error.as_ref());
            return;
        };
        if rows.is_empty() {
            frame.render_widget(
                Line::raw("The queue is empty: everything was delivered."),
                area,
            );
            return;
        }
        let (list, detail) = list_and_detail(area, self.detail.is_some());
        if let Some(list) = list {
            draw_table(
                frame,
                list,
                &COLUMNS,
                rows.len(),
                &mut self.cursor,
                t,
                |i| {
                    let m = &rows[i];
                    let to = match m.recipients.as_slice() {
                        [] => String::new(),
                        [one] => one.address.to_string(),
                        [first, rest @ ..] => format!("{} +{}", first.address, rest.len()),
                    };
                    let error = m
                        .last_error
                        .as_ref()
                        .map_or(String::new(), |e| e.to_string());
                    (
                        vec![
                            cell(m.id.to_string()),
                            cell(if m.direction == "inbound" {
                                "in"
                            } else {
                                "out"
                            }),
                            cell(if m.mail_from.is_empty() {
                                "<>".to_string()
                            } else {
                                m.mail_from.to_string()
                            }),
                            cell(to),
                            cell(format!("{:>5}", m.attempts)),
                            cell(if m.state == "held" {
                                "held".to_string()
                            } else {
                                format::relative(m.next_attempt, now)
                            }),
                            cell(format::age(now - m.received_at)),
                            cell(error).style(t.warn()),
                        ],
                        Style::default(),
                    )
                },
            );
        }
        if let (Some(area), Some(m)) = (detail, rows.get(self.cursor.row)) {
            let text = Self::detail_text(m, now, t);
            draw_detail(
                frame,
                area,
                "Queued message (Esc closes)",
                text,
                self.detail.unwrap_or(0),
                t,
            );
        }
    }
}
