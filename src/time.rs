//! Timestamps and durations shared by every stage.
//!
//! Timestamps are RFC 3339 and always normalised to UTC. Durations use Cedar's
//! `duration` syntax (`1d2h30m15s500ms`, each unit optional but in that order),
//! so a target written in `tiers.yaml` is exactly the value Cedar sees.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in UTC.
pub type Timestamp = DateTime<Utc>;

/// Parses an RFC 3339 timestamp (any offset) into UTC.
pub fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp ({e})"))
}

/// Formats a timestamp the one way syncproof writes them: `2026-11-02T09:14:00Z`.
pub fn format_timestamp(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A non-negative span of time with millisecond precision, written in Cedar
/// `duration` syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    millis: i64,
}

impl Span {
    /// A span of `millis` milliseconds (negative values are clamped to zero).
    pub fn from_millis(millis: i64) -> Self {
        Span {
            millis: millis.max(0),
        }
    }

    /// The span between two instants; zero when `to` is before `from`.
    pub fn between(from: &Timestamp, to: &Timestamp) -> Self {
        Span::from_millis((*to - *from).num_milliseconds())
    }

    /// The span in milliseconds.
    pub fn as_millis(self) -> i64 {
        self.millis
    }

    /// Parses Cedar `duration` syntax, e.g. `15m`, `1h30m`, `90d`, `250ms`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration (expected e.g. `15m`, `1h30m`, `90d`)");
        if s.is_empty() || s.starts_with('-') {
            return Err(bad());
        }
        // Units in the only order Cedar accepts them.
        const UNITS: [(&str, i64); 5] = [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let mut rest = s;
        let mut total: i64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let value: i64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let pos = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(bad)?;
            let factor = UNITS[next_unit + pos].1;
            next_unit += pos + 1;
            total = value
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        Ok(Span::from_millis(total))
    }
}

impl fmt::Display for Span {
    /// Writes the span in Cedar `duration` syntax, largest units first: `6h12m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.millis;
        for (unit, factor) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            let n = rest / factor;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * factor;
            }
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Span::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for timestamps written as RFC 3339 strings in UTC.
pub mod rfc3339 {
    use super::{format_timestamp, parse_timestamp, Timestamp};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises a timestamp as `2026-11-02T09:14:00Z`.
    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_timestamp(t))
    }

    /// Deserialises an RFC 3339 timestamp with any offset into UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse_timestamp(&s).map_err(serde::de::Error::custom)
    }

    /// The same for optional timestamps.
    pub mod option {
        use super::super::{format_timestamp, parse_timestamp, Timestamp};
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serialises `Some(t)` as a string and `None` as null.
        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.collect_str(&format_timestamp(t)),
                None => s.serialize_none(),
            }
        }

        /// Deserialises an optional RFC 3339 timestamp.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => parse_timestamp(&s)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cedar_durations() {
        assert_eq!(Span::parse("15m").unwrap().as_millis(), 900_000);
        assert_eq!(Span::parse("1h30m").unwrap().as_millis(), 5_400_000);
        assert_eq!(Span::parse("90d").unwrap().as_millis(), 90 * 86_400_000);
        assert_eq!(Span::parse("1s500ms").unwrap().as_millis(), 1_500);
        assert_eq!(Span::parse("250ms").unwrap().as_millis(), 250);
    }

    #[test]
    fn rejects_what_cedar_rejects() {
        for bad in [
            "", "-5m", "5", "m", "1m1h", "1h1h", "5 m", "1.5h", "5x", "1w",
        ] {
            assert!(Span::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["0s", "15m", "1h30m", "90d", "6h12m", "1d2h3m4s5ms"] {
            assert_eq!(Span::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn timestamps_normalise_to_utc() {
        let t = parse_timestamp("2026-11-02T10:14:00+01:00").unwrap();
        assert_eq!(format_timestamp(&t), "2026-11-02T09:14:00Z");
        assert!(parse_timestamp("2026-11-02 09:14").is_err());
    }
}
