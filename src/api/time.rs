//! Docker's time arguments (`since`, `until`, the `until` filter): a Unix
//! timestamp with optional fraction, an RFC 3339 date, or a Go duration
//! counted back from now (`10m`, `1h30m`).

use chrono::{DateTime, Utc};

/// Nanoseconds since the epoch.
pub fn parse_time_filter(value: &str) -> Result<i64, String> {
    parse_at(value, Utc::now())
}

fn parse_at(value: &str, now: DateTime<Utc>) -> Result<i64, String> {
    let v = value.trim();
    let bad = || format!("invalid time value {value:?}");
    if v.is_empty() {
        return Err(bad());
    }
    if let Some((secs, frac)) = split_timestamp(v) {
        let nanos = format!("{frac:0<9}")[..9]
            .parse::<i64>()
            .map_err(|_| bad())?;
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(nanos))
            .ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    let back = go_duration_nanos(v).ok_or_else(bad)?;
    Ok(now.timestamp_nanos_opt().unwrap_or_default() - back)
}

fn split_timestamp(v: &str) -> Option<(i64, &str)> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if secs.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    Some((secs.parse().ok()?, frac))
}

/// A Go `time.ParseDuration` string (units h, m, s, ms, us, ns) in nanoseconds.
fn go_duration_nanos(v: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_forms() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let base = now.timestamp_nanos_opt().unwrap();
        assert_eq!(
            parse_at("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_at("1700000000.5", now).unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(parse_at("2026-01-01T00:00:00Z", now).unwrap(), base);
        assert_eq!(parse_at("10m", now).unwrap(), base - 600_000_000_000);
        assert_eq!(parse_at("1h30m", now).unwrap(), base - 5_400_000_000_000);
        for bad in ["", "yesterday", "10x", "1.2.3"] {
            assert!(parse_at(bad, now).is_err(), "{bad}");
        }
    }
}
