//! Time as the gateway writes it: seconds since the epoch and RFC 5322 dates (trace headers,
//! bounces, S/MIME signing times, certificate validity).

use std::time::{SystemTime, UNIX_EPOCH};

pub use filters::unix_now;

/// "Sat, 28 Nov 2026 01:23:57 +0000"
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01, the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time an operator types, in UTC: unix seconds, `HH:MM` (today), `YYYY-MM-DD`, or
/// `YYYY-MM-DDTHH:MM[:SS]` (a trailing `Z` is allowed). `now` gives "today".
pub fn parse_utc_time(s: &str, now: i64) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    if let Ok(secs) = s.parse::<i64>() {
        return Some(secs);
    }
    let clock = |t: &str| -> Option<i64> {
        let mut parts = t.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let sec: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
            return None;
        }
        Some(h * 3600 + m * 60 + sec)
    };
    let date = |d: &str| -> Option<i64> {
        let mut parts = d.split('-');
        let y: i64 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let day: u32 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
            return None;
        }
        Some(days_from_civil(y, m, day) * 86400)
    };
    match s.split_once('T') {
        Some((d, t)) => Some(date(d)? + clock(t)?),
        None if s.contains('-') => date(s),
        None => Some(now.div_euclid(86400) * 86400 + clock(s)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_829_037);
        assert_eq!(rfc5322_date(t), "Sat, 28 Nov 2026 01:23:57 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn operator_times() {
        for days in [-800_000, -1, 0, 11_016, 20_420, 900_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let now = 1_795_829_037; // 2026-11-28 01:23:57
        assert_eq!(parse_utc_time("09:00", now), Some(1_795_824_000 + 9 * 3600));
        assert_eq!(parse_utc_time("2026-11-28", now), Some(1_795_824_000));
        assert_eq!(parse_utc_time("2026-11-28T01:23:57Z", now), Some(now));
        assert_eq!(parse_utc_time("1795829037", now), Some(now));
        assert_eq!(parse_utc_time("25:00", now), None);
        assert_eq!(parse_utc_time("yesterday", now), None);
    }
}
