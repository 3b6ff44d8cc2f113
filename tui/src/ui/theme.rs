//! Styles. The terminal's own foreground and background everywhere (readable on light and
//! dark terminals); bold and reverse for structure; colour only for status (ok, warning,
//! bad), and none at all under `NO_COLOR`.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty (no-color.org).
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    pub fn plain(&self) -> Style {
        Style::default()
    }

    pub fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    /// Column headers and titles.
    pub fn header(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    /// The row under the cursor, the current tab.
    pub fn cursor(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// A selected (marked) row.
    pub fn marked(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    /// Keys that cannot be used now (read-only mode), secondary text.
    pub fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }

    pub fn ok(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Green)
        } else {
            Style::default()
        }
    }

    pub fn warn(&self) -> Style {
        if self.color {
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::BOLD)
        }
    }

    pub fn bad(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }

    /// A status by how urgent it is.
    pub fn level(&self, level: Level) -> Style {
        match level {
            Level::Ok => self.ok(),
            Level::Warn => self.warn(),
            Level::Bad => self.bad(),
            Level::Plain => self.plain(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Plain,
    Ok,
    Warn,
    Bad,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_colour_status_is_still_distinct() {
        let t = Theme { color: false };
        assert_eq!(t.ok().fg, None);
        assert_eq!(t.bad().fg, None);
        assert_ne!(t.bad(), t.plain());
        assert_ne!(t.warn(), t.plain());
        let c = Theme { color: true };
        assert_eq!(c.bad().fg, Some(Color::Red));
        // Never a background colour: the terminal's own stays.
        assert_eq!(c.bad().bg, None);
    }
}
