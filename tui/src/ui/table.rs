//! Tables whose columns fit the width: columns are kept by priority, and those that do not
//! fit are dropped (never wrapped); one column may take the width that is left.

use ratatui::layout::Constraint;

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    /// Width it needs (the least it takes, when it fills).
    pub width: u16,
    /// Lower is kept first.
    pub priority: u8,
    /// Takes the width that is left.
    pub fill: bool,
}

pub const fn col(title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        title,
        width,
        priority,
        fill: false,
    }
}

pub const fn fill(title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        title,
        width,
        priority,
        fill: true,
    }
}

/// The columns (their indices, in their order) that fit in `width`, one space between two.
pub fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let mut by_priority: Vec<usize> = (0..columns.len()).collect();
    by_priority.sort_by_key(|&i| (columns[i].priority, i));
    let mut used: u32 = 0;
    let mut kept = Vec::new();
    for i in by_priority {
        let need = u32::from(columns[i].width) + u32::from(!kept.is_empty());
        if used + need <= u32::from(width) {
            used += need;
            kept.push(i);
        }
    }
    kept.sort_unstable();
    kept
}

/// The layout constraints of the kept columns.
pub fn constraints(columns: &[Column], kept: &[usize]) -> Vec<Constraint> {
    kept.iter()
        .map(|&i| {
            let c = columns[i];
            if c.fill {
                Constraint::Fill(1)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_that_do_not_fit_are_dropped_by_priority() {
        let cols = [col("a", 10, 0), col("b", 10, 2), fill("c", 20, 1)];
        assert_eq!(fit(&cols, 80), vec![0, 1, 2]);
        assert_eq!(fit(&cols, 35), vec![0, 2]);
        // A column that does not fit leaves room for a narrower one of lower priority.
        assert_eq!(fit(&cols, 25), vec![0, 1]);
        assert_eq!(fit(&cols, 15), vec![0]);
        assert_eq!(fit(&cols, 5), Vec::<usize>::new());
    }
}
