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
    #[error(
        "The name contains invisible formatting characters (such as right-to-left overrides or zero-width spaces), \
         which can make a name look like another: type it again without them."
    )]
    FormatCharacter,
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
        if s.chars().any(is_format_character) {
            return Err(KeyNameError::FormatCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// Reads a name from storage or an export file. Names stored before a rule was added stay readable: only the
    /// rules every stored name has always met (trimmed, non-empty, bounded, no control characters) apply here.
    pub fn from_stored(s: &str) -> Result<Self, KeyNameError> {
        match Self::parse(s) {
            Err(KeyNameError::FormatCharacter) if s.trim() == s => Ok(Self(s.to_owned())),
            other => other,
        }
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

impl KeyName {
    /// The name a key rolled from this one gets at `at`: the same service with the new date and time
    /// (`billing-26_11_2026-14_05` → `billing-27_02_2027-09_30`); a name without the convention's date gets one
    /// (`crm` → `crm-27_02_2027-09_30`). A `-2`-style suffix a clash once added is dropped first. The result fits the
    /// length limit (the service part is shortened when needed).
    pub fn rolled<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> String {
        let mut base = self.0.as_str();
        if let Some((head, n)) = base.rsplit_once('-') {
            if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) && follows_convention(head) {
                base = head;
            }
        }
        const SUFFIX: usize = "-dd_mm_yyyy-hh_mm".len();
        let service = if follows_convention(base) { &base[..base.len() - SUFFIX] } else { base };
        // Room for the stamp and a clash suffix such as `-10`.
        let service: String = service.chars().take(MAX_NAME_CHARS - SUFFIX - 4).collect();
        let service = service.trim();
        Self::conventional(if service.is_empty() { "key" } else { service }, at)
    }

    /// The `n`th candidate for a name that may be taken: the name itself, then `name-2`, `name-3`, ….
    pub fn numbered(name: &str, n: u32) -> String {
        if n <= 1 {
            name.to_owned()
        } else {
            format!("{name}-{n}")
        }
    }
}

/// Unicode format characters (general category Cf) that people meet in pasted text: bidirectional controls
/// (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C), zero-width characters (U+200B–U+200D, U+2060–U+2064, U+FEFF),
/// the soft hyphen (U+00AD) and tag characters (U+E0000–U+E007F). They are invisible, so `billing\u{202E}...` could
/// be made to read like another key's name.
fn is_format_character(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

fn follows_convention(s: &str) -> bool {
    // "<service>-dd_mm_yyyy-hh_mm": the suffix is 17 ASCII bytes. Only ASCII bytes are ever indexed below: a suffix
    // holding any other character (e.g. "1é1_2026-14_05") cannot be the convention and is refused before slicing.
    const SUFFIX: usize = "-dd_mm_yyyy-hh_mm".len();
    if s.len() <= SUFFIX || !s.is_char_boundary(s.len() - SUFFIX) {
        return false;
    }
    let (service, suffix) = s.split_at(s.len() - SUFFIX);
    if !suffix.is_ascii() {
        return false;
    }
    let b = suffix.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
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
mod props {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rolled_names_keep_the_service_and_take_the_new_time() {
        use chrono::Utc;
        let at = Utc.with_ymd_and_hms(2027, 2, 27, 9, 30, 0).unwrap();
        let name = |s: &str| KeyName::parse(s).unwrap().rolled(&at);
        assert_eq!(name("billing-service-26_11_2026-14_05"), "billing-service-27_02_2027-09_30");
        assert_eq!(name("billing-service-26_11_2026-14_05-2"), "billing-service-27_02_2027-09_30");
        assert_eq!(name("crm"), "crm-27_02_2027-09_30");
        assert_eq!(name("v-2"), "v-2-27_02_2027-09_30");
        let long = "x".repeat(100);
        let rolled = name(&long);
        assert!(KeyName::parse(&KeyName::numbered(&rolled, 10)).is_ok(), "{rolled}");
        assert_eq!(KeyName::numbered("a", 1), "a");
        assert_eq!(KeyName::numbered("a", 2), "a-2");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_cases(2_000)))]

        /// Any text at all: parsing and the convention check never panic, and a parsed name obeys its rules.
        #[test]
        fn any_text_is_judged_without_panicking(s in any::<String>()) {
            if let Ok(n) = KeyName::parse(&s) {
                let _ = n.follows_convention();
                prop_assert!(!n.as_str().is_empty());
                prop_assert!(n.as_str().chars().count() <= MAX_NAME_CHARS);
                prop_assert!(!n.as_str().chars().any(|c| c.is_control() || is_format_character(c)));
            }
            let _ = follows_convention(&s);
        }

        /// Names that end in something shaped like the convention's suffix, with arbitrary characters mixed in.
        #[test]
        fn near_conventional_names_never_panic(service in "\\PC{0,8}", tail in "[-_0-9é€😀]{10,20}") {
            let s = format!("{service}{tail}");
            let _ = follows_convention(&s);
        }

        /// Every conventional name made for a real moment follows the convention, whatever the service is called.
        #[test]
        fn conventional_names_round_trip(service in "[\\p{L}\\p{N}][\\p{L}\\p{N} _-]{0,40}", secs in 0i64..4_102_444_800) {
            let at = chrono::DateTime::from_timestamp(secs, 0).unwrap();
            let name = KeyName::conventional(&service, &at);
            prop_assert!(KeyName::parse(&name).unwrap().follows_convention(), "{name}");
        }
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
        // The name from the defect report: a multibyte character inside the last 17 bytes (was a panic).
        assert!(!ok("svc-1é1_2026-14_05"));
        assert!(!ok("x-2é_11_2026-14_05"));
        assert!(ok("café-26_11_2026-14_05"));
    }

    #[test]
    fn invisible_format_characters_are_refused() {
        for c in ['\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{200F}', '\u{E0041}', '\u{00AD}'] {
            let name = format!("billing{c}-service");
            assert_eq!(KeyName::parse(&name).unwrap_err(), KeyNameError::FormatCharacter, "{c:?}");
        }
        assert!(KeyName::parse("Zürich ☕ 計費").is_ok(), "ordinary non-ASCII letters and symbols are fine");
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
