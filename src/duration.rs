//! Durations as people write them: `90s`, `30m`, `4h`, `1d` (and combinations like `1h30m`).

use time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: use a number with s, m, h or d, like 90s, 30m, 4h or 1d"
        )
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || total == 0 || total > 366 * 86_400 {
        return Err(bad());
    }
    Ok(Duration::seconds(total))
}

/// The shortest exact rendering (`5400s` → `1h30m`).
pub fn format(d: Duration) -> String {
    let mut secs = d.whole_seconds().max(0);
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if secs >= unit {
            out.push_str(&format!("{}{}", secs / unit, name));
            secs %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse("30m"), Ok(Duration::minutes(30)));
        assert_eq!(parse("4h"), Ok(Duration::hours(4)));
        assert_eq!(parse("1d"), Ok(Duration::days(1)));
        assert_eq!(parse("1h30m"), Ok(Duration::minutes(90)));
        for bad in [
            "",
            "h",
            "10",
            "-5m",
            "5 m",
            "0s",
            "1y",
            "99999999999999999999d",
            "400d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(secs in 1i64..=366 * 86_400) {
            let d = Duration::seconds(secs);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,12}") {
            let _ = parse(&s);
        }
    }
}
