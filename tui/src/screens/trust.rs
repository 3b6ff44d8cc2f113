//! The level of trust: each domain with its level (pinned by an operator or learned from our
//! users' mail), weight and evidence; pin and unpin.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;

use super::{Screen, cell, draw_table, navigate, placeholder};
use crate::action::Action;
use crate::api::ApiResult;
use crate::api::types::TrustDomain;
use crate::app::{Choice, ChoiceNext, Ctx, Freshness, Intent, Loadable, View};
use crate::keys::Command;
use crate::ui::table::{Column, col, fill};
use crate::ui::{RowCursor, format};
use crate::worker::Fetch;

#[derive(Debug, Default)]
pub struct Trust {
    pub list: Loadable<Vec<TrustDomain>>,
    pub cursor: RowCursor,
}

const COLUMNS: [Column; 7] = [
    fill("domain", 20, 0),
    col("level", 16, 0),
    col("weight", 7, 1),
    col("people", 6, 2),
    col("servers", 7, 4),
    col("TLS ok/not", 10, 3),
    col("last mail", 10, 5),
];

impl Trust {
    pub fn take(&mut self, r: ApiResult<Vec<TrustDomain>>, now: i64) {
        self.list.finish(r, now);
        let n = self.rows().len();
        self.cursor.clamp(n);
    }

    fn rows(&self) -> &[TrustDomain] {
        self.list.data.as_deref().unwrap_or(&[])
    }

    fn current(&self) -> Option<&TrustDomain> {
        self.rows().get(self.cursor.row)
    }
}

impl Screen for Trust {
    fn on_command(&mut self, cmd: Command, _ctx: &Ctx) -> Vec<Intent> {
        let n = self.rows().len();
        if navigate(&mut self.cursor, cmd, n) {
            return Vec::new();
        }
        let Some(d) = self.current() else {
            return Vec::new();
        };
        let domain = d.domain.to_string();
        match cmd {
            Command::Pin => vec![Intent::Choose(Choice {
                title: format!("Pin the level of {domain}"),
                options: vec![
                    ('h', "high: our users correspond with it"),
                    ('m', "medium"),
                    ('l', "low"),
                    ('n', "none: no trust at all"),
                ],
                next: ChoiceNext::Pin { domain },
            })],
            Command::Unpin if d.pinned.is_none() => {
                vec![Intent::Say(format!(
                    "{domain} is not pinned: its trust is learned"
                ))]
            }
            Command::Unpin => vec![Intent::Act(Action::TrustPin {
                domain,
                level: None,
            })],
            _ => Vec::new(),
        }
    }

    fn refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        vec![Fetch::Trust]
    }

    fn freshness(&self) -> Freshness<'_> {
        self.list.freshness()
    }

    fn render(&mut self, frame: &mut Frame, area: Rect, view: &View) {
        let t = view.theme;
        let Some(rows) = &self.list.data else {
            placeholder(frame, area, t, self.list.loading, self.list.error.as_ref());
            return;
        };
        if rows.is_empty() {
            frame.render_widget(
                Line::raw("No domain has learned or pinned trust yet (it grows with our users' outbound mail)."),
                area,
            );
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
                let d = &rows[i];
                let level = match &d.pinned {
                    Some(l) => cell(format!("{l} (pinned)")).style(t.bold()),
                    None => cell("learned"),
                };
                (
                    vec![
                        cell(d.domain.to_string()),
                        level,
                        cell(format!("{:>7.1}", d.weight)),
                        cell(format!("{:>6}", d.correspondents)),
                        cell(format!("{:>7}", d.servers)),
                        cell(format!("{:>5}/{:<4}", d.tls_verified, d.tls_unverified)),
                        cell(if d.last_activity > 0 {
                            format::date(d.last_activity)
                        } else {
                            String::new()
                        }),
                    ],
                    Style::default(),
                )
            },
        );
    }
}
