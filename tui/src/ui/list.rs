//! The cursor of a table: which row is under it and which rows are on screen. Only the rows
//! on screen are ever built, so a list of 100,000 draws as fast as one of 20.

use std::ops::Range;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCursor {
    pub row: usize,
    pub offset: usize,
    /// Rows the table showed at its last draw (the page of PgUp/PgDn).
    pub page: usize,
}

impl RowCursor {
    fn page(&self) -> usize {
        self.page.max(1)
    }

    pub fn up(&mut self) {
        self.row = self.row.saturating_sub(1);
    }

    pub fn down(&mut self, len: usize) {
        if self.row + 1 < len {
            self.row += 1;
        }
    }

    pub fn page_up(&mut self) {
        self.row = self.row.saturating_sub(self.page());
    }

    pub fn page_down(&mut self, len: usize) {
        self.row = (self.row + self.page()).min(len.saturating_sub(1));
    }

    pub fn top(&mut self) {
        self.row = 0;
    }

    pub fn bottom(&mut self, len: usize) {
        self.row = len.saturating_sub(1);
    }

    /// Keep the row inside a list of `len`.
    pub fn clamp(&mut self, len: usize) {
        self.row = self.row.min(len.saturating_sub(1));
    }

    /// The rows to draw in `height` lines, scrolled so the cursor's row is among them.
    pub fn window(&mut self, len: usize, height: usize) -> Range<usize> {
        self.page = height;
        self.clamp(len);
        if height == 0 || len == 0 {
            self.offset = 0;
            return 0..0;
        }
        if self.row < self.offset {
            self.offset = self.row;
        } else if self.row >= self.offset + height {
            self.offset = self.row + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
        self.offset..(self.offset + height).min(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_cursor() {
        let mut c = RowCursor::default();
        assert_eq!(c.window(100, 10), 0..10);
        c.page_down(100);
        assert_eq!(c.row, 10);
        assert_eq!(c.window(100, 10), 1..11);
        c.bottom(100);
        assert_eq!(c.window(100, 10), 90..100);
        c.top();
        assert_eq!(c.window(100, 10), 0..10);
        c.up();
        assert_eq!(c.row, 0);
        assert_eq!(c.window(3, 10), 0..3);
        c.bottom(0);
        assert_eq!(c.window(0, 10), 0..0);
    }
}
