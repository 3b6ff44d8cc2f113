//! Drawing helpers shared by the screens: the theme, the row cursor, columns that fit,
//! popups, and the formatting of times and sizes.

pub mod format;
pub mod list;
pub mod popup;
pub mod table;
pub mod theme;

pub use list::RowCursor;
pub use theme::Theme;
