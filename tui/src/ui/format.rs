//! Times, ages and sizes as the screens print them. Times are UTC.

/// `2026-12-03 07:05` (UTC) from unix seconds.
pub fn datetime(unix: i64) -> String {
    let (y, m, d, hh, mm) = civil(unix);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}")
}

/// `12-03 07:05` (UTC): a listing's short form.
pub fn short_time(unix: i64) -> String {
    let (_, m, d, hh, mm) = civil(unix);
    format!("{m:02}-{d:02} {hh:02}:{mm:02}")
}

/// `2026-12-03` (UTC).
pub fn date(unix: i64) -> String {
    let (y, m, d, _, _) = civil(unix);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month, day, hour, minute of unix seconds (the proleptic Gregorian calendar).
fn civil(unix: i64) -> (i64, u32, u32, u32, u32) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Days to civil date, after H. Hinnant's public-domain algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (secs / 3600) as u32, ((secs % 3600) / 60) as u32)
}

/// `45s`, `12m`, `3h`, `5d`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `in 3m` or `3m ago`.
pub fn relative(at: i64, now: i64) -> String {
    if at >= now {
        format!("in {}", age(at - now))
    } else {
        format!("{} ago", age(now - at))
    }
}

/// `812 B`, `12 KB`, `3.4 MB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{} KB", bytes / 1024),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// Cut `s` to `width` characters, with an ellipsis at a cut.
pub fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ages() {
        assert_eq!(datetime(0), "1970-01-01 00:00");
        assert_eq!(datetime(1_796_284_800), "2026-12-03 08:00");
        assert_eq!(short_time(1_709_210_096), "02-29 12:34");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3599), "59m");
        assert_eq!(age(86_400 * 3), "3d");
        assert_eq!(relative(100, 40), "in 1m");
        assert_eq!(relative(40, 100), "1m ago");
        assert_eq!(size(2048), "2 KB");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
