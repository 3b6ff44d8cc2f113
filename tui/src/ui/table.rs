//! Tables whose columns fit the width: columns are kept by priority, and those that do not
//! fit are dropped (never wrapped); the width left over is shared among the columns that
//! can grow, up to each one's maximum.

use ratatui::layout::Constraint;

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    /// Width it needs.
    pub width: u16,
    /// Width it may grow to when there is room.
    pub max: u16,
    /// Lower is kept first.
    pub priority: u8,
}

/// A column of a fixed width.
pub const fn col(title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        title,
        width,
        max: width,
        priority,
    }
}

/// A column that grows up to `max` when there is room.
pub const fn grow(title: &'static str, width: u16, max: u16, priority: u8) -> Column {
    Column {
        title,
        width,
        max,
        priority,
    }
}

/// A column that takes whatever width is left.
pub const fn fill(title: &'static str, width: u16, priority: u8) -> Column {
    grow(title, width, u16::MAX, priority)
}

/// The columns that fit in `width` (one space between two), in their order, with the width
/// each gets.
pub fn fit(columns: &[Column], width: u16) -> Vec<(usize, u16)> {
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
    let mut widths: Vec<(usize, u16)> = kept.iter().map(|&i| (i, columns[i].width)).collect();
    // Share what is left one column at a time, so growing columns widen evenly.
    let mut extra = u32::from(width).saturating_sub(used);
    while extra > 0 {
        let mut grew = false;
        for (i, w) in widths.iter_mut() {
            if extra > 0 && *w < columns[*i].max {
                *w += 1;
                extra -= 1;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    widths
}

/// The layout constraints of the fitted columns.
pub fn constraints(widths: &[(usize, u16)]) -> Vec<Constraint> {
    widths.iter().map(|&(_, w)| Constraint::Length(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_that_do_not_fit_are_dropped_by_priority() {
        let cols = [col("a", 10, 0), col("b", 10, 2), fill("c", 20, 1)];
        let kept = |w| fit(&cols, w).iter().map(|&(i, _)| i).collect::<Vec<_>>();
        assert_eq!(kept(80), vec![0, 1, 2]);
        assert_eq!(kept(35), vec![0, 2]);
        // A column that does not fit leaves room for a narrower one of lower priority.
        assert_eq!(kept(25), vec![0, 1]);
        assert_eq!(kept(15), vec![0]);
        assert_eq!(kept(5), Vec::<usize>::new());
    }

    #[test]
    fn the_room_left_is_shared_up_to_each_maximum() {
        let cols = [grow("a", 10, 14, 0), fill("b", 10, 0), col("c", 5, 0)];
        assert_eq!(fit(&cols, 27), vec![(0, 10), (1, 10), (2, 5)]);
        assert_eq!(fit(&cols, 31), vec![(0, 12), (1, 12), (2, 5)]);
        assert_eq!(fit(&cols, 60), vec![(0, 14), (1, 39), (2, 5)]);
    }
}
