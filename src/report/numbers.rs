//! Numbers as a person reads them: rounded to what they mean, and plurals that agree.

/// A measured value, rounded for reading: integers as integers, others to three
/// decimals with trailing zeros dropped, and very small values to three significant
/// digits (`391.119`, `0.25`, `0.000123`, `42`).
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let decimals = if x.abs() >= 0.01 {
        3
    } else {
        // Three significant digits: 0.000123 needs six decimals.
        (2 - x.abs().log10().floor() as i32).clamp(3, 12) as usize
    };
    let s = format!("{x:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// "1 service", "3 services", "0 endpoints".
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if noun.ends_with('s') || noun.ends_with("sh") || noun.ends_with("ch") {
        format!("{n} {noun}es")
    } else if let Some(stem) = noun
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_to_what_they_mean() {
        assert_eq!(number(391.11884699999996), "391.119");
        assert_eq!(number(165.0), "165");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(0.000123456), "0.000123");
        assert_eq!(number(-0.0001), "-0.0001");
        assert_eq!(number(1e-13), "0");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn plurals_agree() {
        assert_eq!(plural(1, "service"), "1 service");
        assert_eq!(plural(0, "endpoint"), "0 endpoints");
        assert_eq!(plural(2, "policy"), "2 policies");
        assert_eq!(plural(2, "key"), "2 keys");
        assert_eq!(plural(3, "class"), "3 classes");
    }
}
