//! Allow and block lists: every entry with whom it is for, its comment, expiry and author;
//! add (list, sender, recipient, comment) and remove with confirmation.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;

use super::{Screen, cell, draw_table, navigate, placeholder};
use crate::action::Action;
use crate::api::ApiResult;
use crate::api::types::ListEntry;
use crate::app::{Choice, ChoiceNext, Ctx, Freshness, Intent, Loadable, View};
use crate::keys::Command;
use crate::ui::table::{Column, col, fill, grow};
use crate::ui::{RowCursor, format};
use crate::worker::Fetch;

#[derive(Debug, Default)]
pub struct Lists {
    pub list: Loadable<Vec<ListEntry>>,
    pub cursor: RowCursor,
}

const COLUMNS: [Column; 7] = [
    col("id", 5, 2),
    col("list", 5, 0),
    fill("sender", 20, 0),
    grow("recipient", 20, 30, 1),
    grow("comment", 18, 40, 3),
    col("expires", 10, 4),
    col("added by", 16, 5),
];

impl Lists {
    pub fn take(&mut self, r: ApiResult<Vec<ListEntry>>, now: i64) {
        self.list.finish(r, now);
        let n = self.rows().len();
        self.cursor.clamp(n);
    }

    fn rows(&self) -> &[ListEntry] {
        self.list.data.as_deref().unwrap_or(&[])
    }
}

impl Screen for Lists {
    fn on_command(&mut self, cmd: Command, _ctx: &Ctx) -> Vec<Intent> {
        let n = self.rows().len();
        if navigate(&mut self.cursor, cmd, n) {
            return Vec::new();
        }
        match cmd {
            Command::Add => vec![Intent::Choose(Choice {
                title: "Add to which list?".into(),
                options: vec![
                    ('a', "allow: skip the spam filters for this sender"),
                    ('b', "block: refuse this sender in the SMTP dialog"),
                ],
                next: ChoiceNext::ListKind,
            })],
            Command::Delete => match self.rows().get(self.cursor.row) {
                Some(e) => vec![Intent::Act(Action::ListRemove {
                    id: e.id,
                    what: format!(
                        "{} {} → {}",
                        e.list,
                        e.sender,
                        e.recipient.as_ref().map_or("everyone", |r| r.as_str())
                    ),
                })],
                None => vec![Intent::Say("no entry here".into())],
            },
            _ => Vec::new(),
        }
    }

    fn refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        vec![Fetch::Lists]
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
            frame.render_widget(Line::raw("No allow or block entries. a adds one."), area);
            return;
        }
        draw_table(
            frame,
            area,
            &COLUMNS,
            rows.len(),
            &mut self.cursor,
            t,
            |i| {
                let e = &rows[i];
                let list = if e.list == "block" {
                    cell("block").style(t.bad())
                } else {
                    cell("allow").style(t.ok())
                };
                let expires = match e.expires_at {
                    None => cell("never"),
                    Some(_) if e.expired => cell("expired").style(t.warn()),
                    Some(at) => cell(format::relative(at, now)),
                };
                (
                    vec![
                        cell(format!("{:>5}", e.id)),
                        list,
                        cell(e.sender.to_string()),
                        cell(
                            e.recipient
                                .as_ref()
                                .map_or("everyone".to_string(), |r| r.to_string()),
                        ),
                        cell(e.comment.as_ref().map_or(String::new(), |c| c.to_string())),
                        expires,
                        cell(e.added_by.to_string()),
                    ],
                    if e.expired { t.dim() } else { Style::default() },
                )
            },
        );
    }
}
