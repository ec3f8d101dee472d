//! Time parameters of the read-only admin routes (`from`, `to`): unix
//! seconds (`1767225600`) or RFC 3339 (`2026-01-01T00:00:00Z`, with an
//! offset or fractional seconds; a bare `2026-01-01` is that UTC midnight).
//! `from` is inclusive, `to` exclusive.

use crate::error::ApiError;

/// The latest instant taken: 9999-12-31T23:59:59Z.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Digits `text[at..at + len]` as a number.
fn digits(text: &str, at: usize, len: usize) -> Option<i64> {
    let part = text.get(at..at + len)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// An RFC 3339 timestamp (or a bare date) as unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let (year, month, day) = (
        digits(text, 0, 4)?,
        digits(text, 5, 2)?,
        digits(text, 8, 2)?,
    );
    if text.get(4..5) != Some("-") || text.get(7..8) != Some("-") {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * 86_400_000;
    if text.len() == 10 {
        return Some(midnight);
    }
    if !matches!(text.get(10..11), Some("T" | "t" | " ")) {
        return None;
    }
    let (hour, minute, second) = (
        digits(text, 11, 2)?,
        digits(text, 14, 2)?,
        digits(text, 17, 2)?,
    );
    if text.get(13..14) != Some(":") || text.get(16..17) != Some(":") {
        return None;
    }
    // 60: a leap second, counted as the last second of the minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let first3 = fraction.get(..len.min(3))?;
        millis = first3.parse::<i64>().ok()? * 10_i64.pow(3 - first3.len() as u32);
        rest = fraction.get(len..)?;
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.get(3..4) != Some(":") {
                return None;
            }
            let (hours, minutes) = (digits(rest, 1, 2)?, digits(rest, 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
    };
    let seconds = hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(midnight + seconds * 1000 + millis)
}

/// A `from`/`to` parameter as unix milliseconds.
pub fn parse_time(param: &'static str, text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>()
            .ok()
            .filter(|seconds| *seconds <= MAX_UNIX_SECONDS)
            .map(|seconds| seconds * 1000)
    } else {
        parse_rfc3339(text)
    };
    parsed
        .filter(|ms| (0..=MAX_UNIX_SECONDS * 1000).contains(ms))
        .ok_or_else(|| {
            ApiError::bad_param(
                param,
                format!(
                    "`{param}` must be unix seconds or an RFC 3339 time such as \
                     2026-01-01T00:00:00Z, got {text:?}"
                ),
            )
        })
}

/// A checked `[from, to)` range in unix milliseconds: `to` defaults to
/// just after `now_ms` (so that now is in), `from` to `to - default_span_ms`.
pub fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    now_ms: i64,
    default_span_ms: i64,
) -> Result<(i64, i64), ApiError> {
    let to = to
        .map(|to| parse_time("to", to))
        .transpose()?
        .unwrap_or(now_ms.saturating_add(1));
    let from = from
        .map(|from| parse_time("from", from))
        .transpose()?
        .unwrap_or_else(|| to.saturating_sub(default_span_ms).max(0));
    if from >= to {
        return Err(ApiError::bad_param("from", "`from` must be before `to`"));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-23T01:01:01Z"),
            Some(1_795_395_661_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T03:01:01.25+02:00"),
            Some(1_795_395_661_250)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22t20:01:01.123456-05:00"),
            Some(1_795_395_661_123)
        );
        assert_eq!(parse_rfc3339("2024-02-29"), Some(1_709_164_800_000));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-11-23T24:00:00Z",
            "2026-11-23T01:01:01",
            "2026-11-23T01:01:01+0200",
            "2026-11-23T01:01:01.Z",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            parse_time("from", "1795395661").ok(),
            Some(1_795_395_661_000)
        );
        assert!(parse_time("from", "-1").is_err());
        assert!(parse_time("from", "99999999999999").is_err());
    }

    #[test]
    fn ranges_default_and_must_be_ordered() {
        let now = 10 * 86_400_000;
        assert_eq!(
            time_range(None, None, now, 86_400_000).ok(),
            Some((9 * 86_400_000 + 1, now + 1))
        );
        assert_eq!(
            time_range(Some("0"), Some("60"), now, 1).ok(),
            Some((0, 60_000))
        );
        assert!(time_range(Some("60"), Some("60"), now, 1).is_err());
    }
}
