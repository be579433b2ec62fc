//! Time as the store keeps it (Unix milliseconds), and its JSON form.

use atna_domain::Millis;
use chrono::{DateTime, Utc};

/// Now, in Unix milliseconds.
pub fn now() -> Millis {
    Utc::now().timestamp_millis()
}

/// Milliseconds as a UTC date-time (saturating at the representable range).
pub fn to_datetime(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
