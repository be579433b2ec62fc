//! Times as people read them: "3 minutes ago", "in 30 days", "26 Nov 2026, 14:05 UTC".

use atna_domain::Millis;

use crate::clock::to_datetime;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A span in the largest whole unit: "3 minutes", "2 days".
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < MIN {
        plural(ms / 1000, "second")
    } else if ms < HOUR {
        plural(ms / MIN, "minute")
    } else if ms < DAY {
        plural(ms / HOUR, "hour")
    } else if ms < 60 * DAY {
        plural(ms / DAY, "day")
    } else if ms < 365 * DAY {
        plural(ms / (30 * DAY), "month")
    } else {
        plural(ms / (365 * DAY), "year")
    }
}

/// "just now" or "3 minutes ago".
pub fn ago(t: Millis, now: Millis) -> String {
    if now - t < 10_000 {
        "just now".to_owned()
    } else {
        format!("{} ago", span(now - t))
    }
}

/// "in 3 days" (or "ago" when past).
pub fn relative(t: Millis, now: Millis) -> String {
    if t >= now {
        format!("in {}", span(t - now))
    } else {
        ago(t, now)
    }
}

/// "26 Nov 2026, 14:05 UTC".
pub fn absolute(t: Millis) -> String {
    to_datetime(t).format("%-d %b %Y, %H:%M UTC").to_string()
}

/// A key's age: "today", "1 day", "12 days".
pub fn age(days: i64) -> String {
    if days <= 0 {
        "today".to_owned()
    } else {
        plural(days, "day")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(ago(0, 3 * MIN + 5), "3 minutes ago");
        assert_eq!(ago(0, 1000), "just now");
        assert_eq!(ago(0, DAY), "1 day ago");
        assert_eq!(relative(30 * DAY, 0), "in 30 days");
        assert_eq!(span(400 * DAY), "1 year");
        assert_eq!(absolute(0), "1 Jan 1970, 00:00 UTC");
        assert_eq!(age(0), "today");
    }
}
