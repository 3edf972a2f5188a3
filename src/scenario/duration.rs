//! Durations as the scenario language writes them: "250us", "5ms", "1.5s", "2m", "1h".
//! Parsed exactly into nanoseconds, without floating point.

use crate::engine::SimDuration;

const UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

pub const EXPECTED: &str = "a duration: a number and a unit (ns, us, ms, s, m, h), e.g. \"250us\", \"5ms\", \"1.5s\", \"2m\"";

pub fn parse(text: &str) -> Result<SimDuration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let Some(&(_, unit_ns)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(if unit.is_empty() {
            format!("`{text}` has no unit; expected {EXPECTED}")
        } else if t.starts_with('-') {
            format!("`{text}` is negative; expected {EXPECTED}")
        } else {
            format!("`{text}` is not {EXPECTED}")
        });
    };
    let number = number.replace('_', "");
    let (int, frac) = number.split_once('.').unwrap_or((&number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("`{text}` is not {EXPECTED}"));
    }
    let overflow = || format!("`{text}` is too long: the longest duration is about 584 years");
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| overflow())?
    };
    let mut ns = int.checked_mul(unit_ns).ok_or_else(overflow)?;
    if !frac.is_empty() {
        let digits = u32::try_from(frac.len()).map_err(|_| overflow())?;
        let scale = 10u128.checked_pow(digits).ok_or_else(overflow)?;
        let frac_value: u128 = frac.parse().map_err(|_| overflow())?;
        let scaled = frac_value * u128::from(unit_ns);
        if !scaled.is_multiple_of(scale) {
            return Err(format!("`{text}` is finer than a nanosecond"));
        }
        let extra = u64::try_from(scaled / scale).map_err(|_| overflow())?;
        ns = ns.checked_add(extra).ok_or_else(overflow)?;
    }
    Ok(SimDuration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms_exactly() {
        let cases = [
            ("250us", 250_000),
            ("5ms", 5_000_000),
            ("1.5s", 1_500_000_000),
            ("2m", 120_000_000_000),
            ("1h", 3_600_000_000_000),
            ("2.5ms", 2_500_000),
            ("0s", 0),
            ("7ns", 7),
            ("1_000ms", 1_000_000_000),
            (".5s", 500_000_000),
        ];
        for (text, ns) in cases {
            assert_eq!(parse(text).unwrap().as_nanos(), ns, "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for (text, why) in [
            ("5", "no unit"),
            ("5 sec", "is not"),
            ("-5ms", "negative"),
            ("1.2.3s", "is not"),
            ("0.5ns", "finer than a nanosecond"),
            ("99999999999h", "too long"),
            ("ms", "is not"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
