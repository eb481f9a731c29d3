//! The one reading of a duration a user writes: `railgun.toml`'s `retry_backoff` and
//! `db restore --lock-timeout` take the same words.

use std::time::Duration;

use anyhow::{Result, bail};

/// `500ms`, `2s`, `5` (seconds), `2m` or `3 min`: a whole number and one of the units Postgres's
/// timeouts take that a wait of ours needs (ms, s, m or min), a space between them allowed.
pub fn parse(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(number) = number.parse::<u64>() else {
        bail!(hint!("{text:?} is not a duration"; "write a whole number and a unit: \"500ms\", \"2s\", \"1min\""))
    };
    let seconds = |factor: u64| number.checked_mul(factor).map(Duration::from_secs);
    let duration = match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" | "" => seconds(1),
        "m" | "min" => seconds(60),
        other => bail!(hint!("{text:?}: unknown unit {other:?}"; "use ms, s (a bare number is seconds), m or min")),
    };
    match duration {
        Some(duration) => Ok(duration),
        None => bail!("{text:?} is longer than a duration can be"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_postgres_units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("3 min").unwrap(), Duration::from_secs(180));
        assert!(parse("fast").is_err() && parse("2h").is_err());
    }

    /// What `db restore --lock-timeout` took before it shared this parser.
    #[test]
    fn the_lock_timeouts_words_too() {
        assert_eq!(parse("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert!(parse("").is_err() && parse("-1s").is_err() && parse("1.5s").is_err() && parse("5 sec").is_err());
        assert!(parse(&format!("{}min", u64::MAX)).is_err(), "no overflow");
    }
}
