//! Time as the store keeps it (Unix milliseconds), and its JSON form.

use atna_domain::Millis;
use chrono::{DateTime, Utc};

/// Now, in Unix milliseconds. Read on every key check: straight from the system clock, without building a calendar
/// date as `Utc::now()` does.
pub fn now() -> Millis {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis().min(Millis::MAX as u128) as Millis,
        // A clock set before 1970: negative milliseconds, as chrono would say.
        Err(e) => -(e.duration().as_millis().min(Millis::MAX as u128) as Millis),
    }
}

/// Milliseconds as a UTC date-time (saturating at the representable range).
pub fn to_datetime(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_agrees_with_chrono() {
        let (before, ours, after) =
            (chrono::Utc::now().timestamp_millis(), super::now(), chrono::Utc::now().timestamp_millis());
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
    }
}
