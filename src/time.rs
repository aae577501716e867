//! Event time: milliseconds since the Unix epoch, parsing of time fields and durations.

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};

/// Event time in milliseconds since the Unix epoch (UTC). Also the timely timestamp.
pub type Time = u64;

/// One hour in milliseconds.
pub const HOUR_MS: Time = 3_600_000;

/// How a source's time field is written.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// JSON number = epoch ms; string = RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) or digits (epoch ms).
    Auto,
    /// Integer milliseconds since the epoch.
    EpochMs,
    /// Seconds since the epoch (may have a fraction).
    EpochS,
    /// RFC 3339 with offset, e.g. `2017-11-07T09:30:38.123Z`.
    Rfc3339,
    /// A chrono `strftime` pattern read as UTC, e.g. `%Y-%m-%d %H:%M:%S`.
    Pattern(String),
}

impl TimeFormat {
    /// Parses the `time_format` setting of a source.
    pub fn from_setting(s: &str) -> Self {
        match s {
            "auto" => TimeFormat::Auto,
            "epoch_ms" => TimeFormat::EpochMs,
            "epoch_s" => TimeFormat::EpochS,
            "rfc3339" => TimeFormat::Rfc3339,
            other => TimeFormat::Pattern(other.to_string()),
        }
    }

    /// Parses a time written as text.
    pub fn parse_str(&self, s: &str) -> Result<Time, String> {
        let s = s.trim();
        let parsed = match self {
            TimeFormat::Auto => {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse::<u64>().ok()
                } else {
                    parse_rfc3339(s).or_else(|| parse_pattern(s, "%Y-%m-%d %H:%M:%S%.f"))
                }
            }
            TimeFormat::EpochMs => s.parse::<u64>().ok(),
            TimeFormat::EpochS => s.parse::<f64>().ok().and_then(secs_to_ms),
            TimeFormat::Rfc3339 => parse_rfc3339(s),
            TimeFormat::Pattern(p) => parse_pattern(s, p),
        };
        parsed.ok_or_else(|| format!("cannot read {s:?} as a time ({})", self.describe()))
    }

    /// Parses a time written as a JSON number.
    pub fn parse_number(&self, n: f64) -> Result<Time, String> {
        let parsed = match self {
            TimeFormat::Auto | TimeFormat::EpochMs if n >= 0.0 && n.fract() == 0.0 => {
                Some(n as u64)
            }
            TimeFormat::EpochS => secs_to_ms(n),
            _ => None,
        };
        parsed.ok_or_else(|| format!("cannot read {n} as a time ({})", self.describe()))
    }

    fn describe(&self) -> String {
        match self {
            TimeFormat::Auto => "expected epoch ms, RFC 3339 or `YYYY-MM-DD HH:MM:SS`".into(),
            TimeFormat::EpochMs => "expected integer epoch milliseconds".into(),
            TimeFormat::EpochS => "expected epoch seconds".into(),
            TimeFormat::Rfc3339 => "expected RFC 3339".into(),
            TimeFormat::Pattern(p) => format!("expected pattern {p:?}, UTC"),
        }
    }
}

fn secs_to_ms(s: f64) -> Option<Time> {
    (s >= 0.0 && s.is_finite()).then(|| (s * 1000.0).round() as u64)
}

fn parse_rfc3339(s: &str) -> Option<Time> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis();
    u64::try_from(t).ok()
}

fn parse_pattern(s: &str, pattern: &str) -> Option<Time> {
    let t = NaiveDateTime::parse_from_str(s, pattern)
        .ok()?
        .and_utc()
        .timestamp_millis();
    u64::try_from(t).ok()
}

/// Parses a duration like `15m`, `30s`, `1h`, `250ms`, `7d` (or a bare number of ms).
pub fn parse_duration(s: &str) -> Result<Time, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{s:?} is not a duration; write e.g. \"15m\", \"30s\", \"1h\", \"250ms\"")
    })?;
    let scale = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => HOUR_MS,
        "d" => 24 * HOUR_MS,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}; use ms, s, m, h or d, e.g. \"15m\""
            ))
        }
    };
    Ok(n * scale)
}

/// Wall-clock time in epoch ms.
pub fn now_ms() -> Time {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Time)
}

/// Civil date and hour of an event time (UTC), for partition paths and derived features.
pub fn utc(t: Time) -> NaiveDateTime {
    DateTime::from_timestamp_millis(t as i64)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

/// Hour of day 0..=23 (UTC).
pub fn hour_of_day(t: Time) -> u32 {
    utc(t).hour()
}

/// Day of week 0 = Monday ..= 6 = Sunday (UTC).
pub fn day_of_week(t: Time) -> u32 {
    utc(t).weekday().num_days_from_monday()
}

/// Renders an event time as RFC 3339 with milliseconds, for logs and messages.
pub fn display(t: Time) -> String {
    if t == Time::MAX {
        return "end".into();
    }
    utc(t).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reads_every_documented_form() {
        let f = TimeFormat::Auto;
        assert_eq!(
            f.parse_str("2017-11-07 09:30:38").unwrap(),
            1_510_047_038_000
        );
        assert_eq!(
            f.parse_str("2017-11-07T09:30:38.5Z").unwrap(),
            1_510_047_038_500
        );
        assert_eq!(f.parse_str("1510047038000").unwrap(), 1_510_047_038_000);
        assert_eq!(
            f.parse_number(1_510_047_038_000.0).unwrap(),
            1_510_047_038_000
        );
        assert!(f.parse_str("yesterday").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), 900_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
        assert!(parse_duration("15 parsecs").is_err());
    }

    #[test]
    fn calendar_features_are_utc() {
        // 2017-11-07 was a Tuesday.
        assert_eq!(hour_of_day(1_510_047_038_000), 9);
        assert_eq!(day_of_week(1_510_047_038_000), 1);
    }
}
