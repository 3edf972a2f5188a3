//! Checking single values: names, durations, integers, probabilities, percentages,
//! status codes and status translations.

use super::*;

impl Builder {
    pub(super) fn check_name(&mut self, n: &Spanned<String>, what: &str) {
        let s = n.get_ref();
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.error(
                span(n),
                format!("`{s}` is not a valid {what} name"),
                NAME_EXPECTED,
            );
        }
    }

    pub(super) fn duration(&mut self, s: &Spanned<String>) -> Option<SimDuration> {
        match duration::parse(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(span(s), format!("bad duration: {e}"), duration::EXPECTED);
                None
            }
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        s: &Spanned<String>,
        what: &str,
    ) -> Option<SimDuration> {
        let d = self.duration(s)?;
        if d.is_zero() {
            self.error(
                span(s),
                format!("{what} must be longer than zero"),
                "a positive duration",
            );
            return None;
        }
        Some(d)
    }

    pub(super) fn int(
        &mut self,
        v: &Spanned<i64>,
        min: i64,
        max: i64,
        what: &str,
        expected: &str,
    ) -> Option<u64> {
        let x = *v.get_ref();
        if x < min || x > max {
            self.error(span(v), format!("{what} is {x}, out of range"), expected);
            return None;
        }
        Some(x as u64)
    }

    pub(super) fn int_u32(
        &mut self,
        v: &Spanned<i64>,
        min: i64,
        what: &str,
        expected: &str,
    ) -> Option<u32> {
        self.int(v, min, i64::from(u32::MAX), what, expected)
            .map(|x| x as u32)
    }

    /// An integer from `min` to a documented maximum (`scenario::bounds`).
    pub(super) fn bounded(
        &mut self,
        v: &Spanned<i64>,
        min: i64,
        max: u32,
        what: &str,
        expected: &str,
    ) -> Option<u32> {
        let x = *v.get_ref();
        if x > i64::from(max) {
            self.error(
                span(v),
                format!("{what} is {x}, above meshsim's maximum of {max}"),
                format!("{expected}, and at most {max} (see ARCHITECTURE.md, Bounds)"),
            );
            return None;
        }
        self.int_u32(v, min, what, expected)
    }

    pub(super) fn probability(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let p = *v.get_ref();
        if !(0.0..=1.0).contains(&p) {
            self.error(
                span(v),
                format!("{what} is {p}, not a probability"),
                "a number from 0 to 1",
            );
            return None;
        }
        Some(p)
    }

    pub(super) fn status(&mut self, s: &Spanned<String>, allow_ok: bool) -> Option<Status> {
        let names: Vec<&str> = Status::ALL
            .iter()
            .filter(|st| allow_ok || !st.is_ok())
            .map(|st| st.name())
            .collect();
        match Status::from_name(s.get_ref()) {
            Some(st) if allow_ok || !st.is_ok() => Some(st),
            _ => {
                self.error(
                    span(s),
                    format!("`{}` is not a status code here", s.get_ref()),
                    format!("one of: {}", names.join(", ")),
                );
                None
            }
        }
    }

    pub(super) fn translation(
        &mut self,
        map: &Spanned<BTreeMap<Name, Spanned<String>>>,
    ) -> Translation {
        let mut t = Translation::default();
        for (from, to) in map.get_ref() {
            let from_status = self.status(from, false);
            let to_status = self.status(to, true);
            if let (Some(f), Some(to)) = (from_status, to_status) {
                t.set(f, to);
            }
        }
        t
    }

    pub(super) fn statuses(&mut self, list: &Statuses) -> StatusSet {
        let mut set = StatusSet::EMPTY;
        for st in list.get_ref() {
            if let Some(st) = self.status(st, false) {
                set.insert(st);
            }
        }
        set
    }

    /// A percentage (0 to 100) as a fraction.
    pub(super) fn percent(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let x = *v.get_ref();
        if !(0.0..=100.0).contains(&x) {
            self.error(
                span(v),
                format!("{what} is {x}, not a percentage"),
                "a number from 0 to 100",
            );
            return None;
        }
        Some(x / 100.0)
    }

    pub(super) fn positive_f64(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let x = *v.get_ref();
        if !(x > 0.0 && x.is_finite()) {
            self.error(span(v), format!("{what} is {x}"), "a number above zero");
            return None;
        }
        Some(x)
    }
}
