//! Key names, and the naming convention the seed doc recommends: `<service_name>-<dd_mm_yyyy>-<hh_mm>`.

use std::fmt;

use chrono::{DateTime, Datelike, TimeZone, Timelike};

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A key's name: trimmed, 1 to 100 characters, no control characters. Unique per user among live keys.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

/// Why a key name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    #[error("The name is empty: give the key a name that says which service uses it.")]
    Empty,
    #[error("The name is longer than {MAX_NAME_CHARS} characters.")]
    TooLong,
    #[error("The name contains control characters (such as line breaks or tabs).")]
    ControlCharacter,
}

impl KeyName {
    /// Parses a user-supplied name.
    pub fn parse(s: &str) -> Result<Self, KeyNameError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyNameError::Empty);
        }
        if s.chars().count() > MAX_NAME_CHARS {
            return Err(KeyNameError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(KeyNameError::ControlCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name follows `<service_name>-<dd_mm_yyyy>-<hh_mm>` with a real date and time.
    pub fn follows_convention(&self) -> bool {
        follows_convention(&self.0)
    }

    /// The recommended name for a service at a moment, e.g. `billing-26_11_2026-14_05`. A `service` that already
    /// ends in a date and time (a whole conventional name) is returned as it is, never stamped twice.
    pub fn conventional<Tz: TimeZone>(service: &str, at: &DateTime<Tz>) -> String {
        if follows_convention(service.trim()) {
            return service.trim().to_owned();
        }
        format!(
            "{}-{:02}_{:02}_{:04}-{:02}_{:02}",
            service.trim(),
            at.day(),
            at.month(),
            at.year(),
            at.hour(),
            at.minute()
        )
    }
}

fn follows_convention(s: &str) -> bool {
    // "<service>-dd_mm_yyyy-hh_mm": the suffix is 17 ASCII bytes.
    const SUFFIX: usize = "-dd_mm_yyyy-hh_mm".len();
    if s.len() <= SUFFIX || !s.is_char_boundary(s.len() - SUFFIX) {
        return false;
    }
    let (service, suffix) = s.split_at(s.len() - SUFFIX);
    let b = suffix.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &suffix[r];
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let shape = b[0] == b'-' && b[3] == b'_' && b[6] == b'_' && b[11] == b'-' && b[14] == b'_';
    let (Some(d), Some(m), Some(y), Some(h), Some(min)) = (num(1..3), num(4..6), num(7..11), num(12..14), num(15..17))
    else {
        return false;
    };
    shape
        && !service.trim().is_empty()
        && chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
        && h < 24
        && min < 60
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(KeyName::parse("  billing  ").unwrap().as_str(), "billing");
        assert_eq!(KeyName::parse("   ").unwrap_err(), KeyNameError::Empty);
        assert_eq!(KeyName::parse(&"x".repeat(101)).unwrap_err(), KeyNameError::TooLong);
        assert!(KeyName::parse(&"é".repeat(100)).is_ok());
        assert_eq!(KeyName::parse(&"x".repeat(10_000)).unwrap_err(), KeyNameError::TooLong);
        assert_eq!(KeyName::parse("a\nb").unwrap_err(), KeyNameError::ControlCharacter);
        assert_eq!(KeyName::parse("a\u{7}b").unwrap_err(), KeyNameError::ControlCharacter);
    }

    #[test]
    fn convention_is_recognised() {
        let ok = |s: &str| KeyName::parse(s).unwrap().follows_convention();
        assert!(ok("billing-service-26_11_2026-14_05"));
        assert!(ok("crm-01_01_2025-00_00"));
        assert!(!ok("billing"));
        assert!(!ok("-26_11_2026-14_05"));
        assert!(!ok("billing-31_02_2026-14_05"), "no 31st of February");
        assert!(!ok("billing-26_11_2026-24_05"));
        assert!(!ok("billing-26/11/2026-14:05"));
        assert!(!ok("é-26_11_2026-14_0é"));
    }

    #[test]
    fn conventional_names_follow_the_convention() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 14, 5, 0).unwrap();
        let n = KeyName::conventional("billing", &at);
        assert_eq!(n, "billing-26_11_2026-14_05");
        assert!(KeyName::parse(&n).unwrap().follows_convention());
    }

    #[test]
    fn a_whole_conventional_name_is_not_stamped_twice() {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 22, 49, 0).unwrap();
        let whole = "billing-service-26_11_2026-14_05";
        assert_eq!(KeyName::conventional(whole, &at), whole);
        assert_eq!(KeyName::conventional(&format!(" {whole} "), &at), whole);
        assert_eq!(KeyName::conventional("billing-service", &at), "billing-service-27_11_2026-22_49");
        // Only a real date and time counts as a stamp.
        assert_eq!(KeyName::conventional("x-31_02_2026-14_05", &at), "x-31_02_2026-14_05-27_11_2026-22_49");
    }
}
