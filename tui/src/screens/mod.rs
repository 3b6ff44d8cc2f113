//! The screens. Each owns its state, turns commands into [`Intent`]s, and draws itself.

pub mod certs;
pub mod dashboard;
pub mod lists;
pub mod quarantine;
pub mod queue;
pub mod trust;

#[cfg(test)]
mod render_tests;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};

use crate::api::ApiError;
use crate::app::{Ctx, Freshness, Intent, View};
use crate::keys::Command;
use crate::ui::table::{Column, constraints, fit};
use crate::ui::{RowCursor, Theme};
use crate::worker::Fetch;

pub trait Screen {
    /// A command from the key table.
    fn on_command(&mut self, cmd: Command, ctx: &Ctx) -> Vec<Intent>;

    /// The screen takes raw keys (text is being typed into it).
    fn capturing(&self) -> bool {
        false
    }

    fn on_text(&mut self, _key: KeyEvent, _ctx: &Ctx) -> Vec<Intent> {
        Vec::new()
    }

    fn render(&mut self, frame: &mut Frame, area: Rect, view: &View);

    /// What to load when the screen is shown or reloaded.
    fn refresh(&self, ctx: &Ctx) -> Vec<Fetch>;

    /// What to load on the periodic reload (by default what [`Screen::refresh`] loads).
    fn auto_refresh(&self, ctx: &Ctx) -> Vec<Fetch> {
        self.refresh(ctx)
    }

    fn freshness(&self) -> Freshness<'_>;
}

/// Move `cursor` for a navigation command in a list of `len`; `false`: not a navigation.
pub fn navigate(cursor: &mut RowCursor, cmd: Command, len: usize) -> bool {
    match cmd {
        Command::Up => cursor.up(),
        Command::Down => cursor.down(len),
        Command::PageUp => cursor.page_up(),
        Command::PageDown => cursor.page_down(len),
        Command::Top => cursor.top(),
        Command::Bottom => cursor.bottom(len),
        _ => return false,
    }
    true
}

/// A table of `len` rows in `area`: only the columns that fit, only the rows on screen
/// (`row(i)` gives row `i`'s cells in the order of `columns`, and its style).
pub fn draw_table<'a>(
    frame: &mut Frame,
    area: Rect,
    columns: &[Column],
    len: usize,
    cursor: &mut RowCursor,
    theme: &Theme,
    mut row: impl FnMut(usize) -> (Vec<Cell<'a>>, Style),
) {
    let kept = fit(columns, area.width);
    let height = usize::from(area.height.saturating_sub(1));
    let window = cursor.window(len, height);
    let header =
        Row::new(kept.iter().map(|&(i, _)| Cell::from(columns[i].title))).style(theme.header());
    let rows: Vec<Row> = window
        .clone()
        .map(|i| {
            let (mut cells, mut style) = row(i);
            if i == cursor.row {
                style = style.patch(theme.cursor());
            }
            let picked: Vec<Cell> = kept
                .iter()
                .map(|&(k, _)| std::mem::take(&mut cells[k]))
                .collect();
            Row::new(picked).style(style)
        })
        .collect();
    let table = Table::new(rows, constraints(&kept))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
}

/// What a screen shows before its data is there, or when loading it failed.
pub fn placeholder(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    loading: bool,
    error: Option<&ApiError>,
) {
    let lines = match error {
        Some(e) => {
            let mut l = vec![Line::styled(e.to_string(), theme.bad())];
            if !e.advice().is_empty() {
                l.push(Line::raw(""));
                l.push(Line::raw(e.advice()));
            }
            l.push(Line::raw(""));
            l.push(Line::styled("F5 tries again.", theme.dim()));
            l
        }
        None if loading => vec![Line::raw("loading…")],
        None => vec![Line::raw("nothing loaded yet (F5 loads)")],
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// Split `area` for a list and its detail: side by side when wide, else the detail alone.
pub fn list_and_detail(area: Rect, detail_open: bool) -> (Option<Rect>, Option<Rect>) {
    if !detail_open {
        return (Some(area), None);
    }
    if area.width >= 140 {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(area);
        (Some(l), Some(r))
    } else {
        (None, Some(area))
    }
}

/// A detail pane: a bordered, scrollable text.
pub fn draw_detail(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    text: Text<'_>,
    scroll: u16,
    theme: &Theme,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(format!(" {title} "), theme.bold()));
    // Lines before wrapping: the end of a long text may need a few more lines than this.
    let max = (text.lines.len() as u16).saturating_sub(area.height.saturating_sub(2));
    frame.render_widget(
        Paragraph::new(text)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll.min(max), 0)),
        area,
    );
}

/// Scroll a detail pane for a navigation command; `false`: not one.
pub fn scroll_detail(scroll: &mut u16, cmd: Command) -> bool {
    match cmd {
        Command::Up => *scroll = scroll.saturating_sub(1),
        Command::Down => *scroll = scroll.saturating_add(1),
        Command::PageUp => *scroll = scroll.saturating_sub(10),
        Command::PageDown => *scroll = scroll.saturating_add(10),
        Command::Top => *scroll = 0,
        Command::Bottom => *scroll = u16::MAX / 2,
        _ => return false,
    }
    true
}

/// The text shown in a cell, styled.
pub fn cell<'a>(s: impl Into<String>) -> Cell<'a> {
    Cell::from(s.into())
}
