//! Per-key limits: a rate limit (GCRA, the generic cell rate algorithm) and a usage quota with an optional daily or
//! monthly refill. Pure arithmetic on Unix milliseconds: the server keeps the state in memory and passes the time in,
//! so every rule here is tested with an exact clock.
//!
//! Why GCRA: it keeps one number per key (the "theoretical arrival time"), is exact (a burst of `limit + k` requests
//! at once lets exactly `limit` through, then one every `period / limit`), has no window edges where twice the limit
//! slips through (a fixed window's weakness), and needs no list of timestamps (a sliding log's cost). It answers both
//! headers of the IETF draft directly: how many requests would pass right now, and when the allowance is whole again.

use chrono::{Datelike, TimeZone, Utc};

use crate::Millis;

/// Most requests a rate limit may allow per period.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;
/// Longest rate-limit period: one day.
pub const MAX_PERIOD_SECONDS: u32 = 24 * 60 * 60;
/// Largest quota or refill amount (so counts never come near overflowing).
pub const MAX_QUOTA: i64 = 1_000_000_000_000;

/// What is wrong with a rate limit or quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("a rate limit allows 1 to {MAX_RATE_LIMIT} requests per period")]
    Limit,
    #[error("a rate limit's period is 1 to {MAX_PERIOD_SECONDS} seconds (one day)")]
    Period,
    #[error("write a rate limit as requests/period, e.g. 100/60s, 10/1m or 5000/1h")]
    Spec,
    #[error("a quota is 0 to {MAX_QUOTA} uses")]
    Quota,
    #[error("a refill amount is 1 to {MAX_QUOTA} uses")]
    RefillAmount,
    #[error("a refill interval is `daily` or `monthly`")]
    Interval,
}

/// At most `limit` requests per `period_seconds`, spread by GCRA (a whole `limit` may come at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    limit: u32,
    period_seconds: u32,
}

/// A rate limit's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Allowed: the key's new state, how many more requests would pass right now, and in how many seconds the
    /// allowance is whole again.
    Allowed { tat: i64, remaining: u32, reset_seconds: u64 },
    /// Refused: in how many seconds (at least 1) one request would pass. The state is unchanged.
    Refused { retry_after_seconds: u64 },
}

impl RateLimit {
    /// A rate limit, checked.
    pub fn new(limit: u32, period_seconds: u32) -> Result<Self, LimitError> {
        if limit == 0 || limit > MAX_RATE_LIMIT {
            return Err(LimitError::Limit);
        }
        if period_seconds == 0 || period_seconds > MAX_PERIOD_SECONDS {
            return Err(LimitError::Period);
        }
        Ok(Self { limit, period_seconds })
    }

    /// Reads the command line's form: `100/60s`, `100/60` (seconds), `10/1m`, `5000/1h`, `100/s`, `100/m`, `100/h`,
    /// `100/d`.
    pub fn parse_spec(spec: &str) -> Result<Self, LimitError> {
        let (n, per) = spec.trim().split_once('/').ok_or(LimitError::Spec)?;
        let limit: u32 = n.trim().parse().map_err(|_| LimitError::Spec)?;
        let per = per.trim();
        let (num, unit) = match per.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => (&per[..i], &per[i..]),
            None => (per, "s"),
        };
        let count: u64 = if num.is_empty() { 1 } else { num.parse().map_err(|_| LimitError::Spec)? };
        let unit: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(LimitError::Spec),
        };
        let seconds = count.checked_mul(unit).filter(|s| *s <= u64::from(u32::MAX)).ok_or(LimitError::Period)?;
        Self::new(limit, seconds as u32)
    }

    pub fn limit(self) -> u32 {
        self.limit
    }

    pub fn period_seconds(self) -> u32 {
        self.period_seconds
    }

    /// Time runs in "scaled" units of `1 / limit` milliseconds, so that the emission interval (`period / limit`) is
    /// a whole number (`period` in ms) and the arithmetic is exact. A day in ms times a million is far below `i64`.
    fn scaled(self, ms: Millis) -> i64 {
        ms.saturating_mul(i64::from(self.limit))
    }

    fn interval(self) -> i64 {
        i64::from(self.period_seconds) * 1000
    }

    fn capacity(self) -> i64 {
        self.interval() * i64::from(self.limit)
    }

    /// Decides one request at `now` given the key's state (`tat`: 0 for a key not seen yet). Refused requests leave
    /// the state as it was: they consume nothing.
    pub fn decide(self, tat: i64, now: Millis) -> RateDecision {
        let now_s = self.scaled(now);
        let new_tat = tat.max(now_s).saturating_add(self.interval());
        let ahead = new_tat - now_s;
        if ahead > self.capacity() {
            let wait_ms = ceil_div(ahead - self.capacity(), i64::from(self.limit));
            return RateDecision::Refused { retry_after_seconds: ceil_div(wait_ms, 1000).max(1) as u64 };
        }
        RateDecision::Allowed {
            tat: new_tat,
            remaining: ((self.capacity() - ahead) / self.interval()) as u32,
            reset_seconds: ceil_div(ceil_div(ahead, i64::from(self.limit)), 1000) as u64,
        }
    }

    /// The state after `uses` requests admitted elsewhere (other nodes) at about `now`: charged like local ones, even
    /// past the allowance, so the key waits until that debt is paid and its long-run rate stays the limit.
    pub fn charge(self, tat: i64, uses: i64, now: Millis) -> i64 {
        tat.max(self.scaled(now)).saturating_add(self.interval().saturating_mul(uses.max(0)))
    }

    /// How many requests would pass at `now` with state `tat` (for showing, without deciding).
    pub fn remaining(self, tat: i64, now: Millis) -> u32 {
        let ahead = tat.saturating_sub(self.scaled(now)).max(0);
        ((self.capacity() - ahead).max(0) / self.interval()) as u32
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if a <= 0 {
        0
    } else {
        (a + b - 1) / b
    }
}

/// How often a quota is filled up again (at the start of each UTC day or month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefillInterval {
    Daily,
    Monthly,
}

impl RefillInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            RefillInterval::Daily => "daily",
            RefillInterval::Monthly => "monthly",
        }
    }

    pub fn parse(s: &str) -> Result<Self, LimitError> {
        match s {
            "daily" => Ok(RefillInterval::Daily),
            "monthly" => Ok(RefillInterval::Monthly),
            _ => Err(LimitError::Interval),
        }
    }

    /// When the interval that contains `now` began (UTC midnight, or the first of the month at UTC midnight).
    pub fn start_of(self, now: Millis) -> Millis {
        const DAY: Millis = 24 * 60 * 60 * 1000;
        let day = now.div_euclid(DAY) * DAY;
        match self {
            RefillInterval::Daily => day,
            RefillInterval::Monthly => {
                let d = Utc.timestamp_millis_opt(day).single().unwrap_or_default();
                Utc.with_ymd_and_hms(d.year(), d.month(), 1, 0, 0, 0).single().map_or(day, |m| m.timestamp_millis())
            }
        }
    }

    /// When the next interval after the one containing `now` begins.
    pub fn next_after(self, now: Millis) -> Millis {
        const DAY: Millis = 24 * 60 * 60 * 1000;
        match self {
            RefillInterval::Daily => self.start_of(now) + DAY,
            // Some day of the next month is at most 32 days after this month's first.
            RefillInterval::Monthly => self.start_of(self.start_of(now) + 32 * DAY),
        }
    }
}

/// A quota's refill: back to `amount` uses at the start of every interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refill {
    pub amount: i64,
    pub interval: RefillInterval,
}

impl Refill {
    pub fn new(amount: i64, interval: RefillInterval) -> Result<Self, LimitError> {
        if !(1..=MAX_QUOTA).contains(&amount) {
            return Err(LimitError::RefillAmount);
        }
        Ok(Self { amount, interval })
    }
}

/// A usage quota ("credits"): uses left, how many it started with (for "1,234 of 10,000 left"), its refill, and when
/// it was last filled up (creation counts as a fill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub remaining: i64,
    /// The refill amount when there is one, else the quota the key was created with.
    pub total: i64,
    pub refill: Option<Refill>,
    pub refilled_at: Millis,
}

impl Quota {
    /// A new key's quota, filled at `now`.
    pub fn new(remaining: i64, refill: Option<Refill>, now: Millis) -> Result<Self, LimitError> {
        if !(0..=MAX_QUOTA).contains(&remaining) {
            return Err(LimitError::Quota);
        }
        Ok(Self { remaining, total: refill.map_or(remaining, |r| r.amount), refill, refilled_at: now })
    }

    /// Whether a refill is due at `now` (an interval began since the last fill).
    pub fn refill_due(&self, now: Millis) -> bool {
        self.refill.is_some_and(|r| self.refilled_at < r.interval.start_of(now))
    }

    /// Uses left at `now`, counting a refill that is due but not yet written.
    pub fn remaining_at(&self, now: Millis) -> i64 {
        match self.refill {
            Some(r) if self.refill_due(now) => r.amount,
            _ => self.remaining,
        }
    }

    /// When the next refill happens (`None`: never).
    pub fn next_refill(&self, now: Millis) -> Option<Millis> {
        self.refill.map(|r| r.interval.next_after(now))
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl std::fmt::Display for RateLimit {
    /// `100/60s`: the command line's form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.limit, self.period_seconds)
    }
}

impl Quota {
    /// `1,234 of 10,000 left` (and `, refilled daily`), as people are shown it at `now`.
    pub fn describe(&self, now: Millis) -> String {
        let mut s = format!("{} of {} left", thousands(self.remaining_at(now).max(0)), thousands(self.total));
        if let Some(r) = self.refill {
            s.push_str(", refilled ");
            s.push_str(r.interval.as_str());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_780_000_000_000;

    #[test]
    fn a_burst_of_n_plus_k_lets_exactly_n_through_then_one_per_interval() {
        let rl = RateLimit::new(100, 60).unwrap();
        let mut tat = 0;
        let mut allowed = 0;
        for _ in 0..130 {
            if let RateDecision::Allowed { tat: t, .. } = rl.decide(tat, T0) {
                tat = t;
                allowed += 1;
            }
        }
        assert_eq!(allowed, 100);
        // One request comes back every 600 ms.
        assert_eq!(rl.decide(tat, T0 + 599), RateDecision::Refused { retry_after_seconds: 1 });
        assert!(matches!(rl.decide(tat, T0 + 600), RateDecision::Allowed { remaining: 0, .. }));
        // After a whole period the allowance is whole again.
        assert!(matches!(rl.decide(tat, T0 + 60_000), RateDecision::Allowed { remaining: 99, .. }));
    }

    #[test]
    fn headers_count_down_and_say_when_the_allowance_is_whole() {
        let rl = RateLimit::new(3, 10).unwrap();
        let RateDecision::Allowed { tat, remaining, reset_seconds } = rl.decide(0, T0) else { panic!() };
        assert_eq!((remaining, reset_seconds), (2, 4), "one of three used: whole again in 3.33 s");
        let RateDecision::Allowed { tat, remaining, .. } = rl.decide(tat, T0) else { panic!() };
        assert_eq!(remaining, 1);
        let RateDecision::Allowed { tat, remaining, reset_seconds } = rl.decide(tat, T0) else { panic!() };
        assert_eq!((remaining, reset_seconds), (0, 10));
        assert_eq!(rl.decide(tat, T0), RateDecision::Refused { retry_after_seconds: 4 });
        assert_eq!(rl.remaining(tat, T0 + 10_000), 3);
    }

    #[test]
    fn uses_elsewhere_are_charged_as_debt() {
        let rl = RateLimit::new(10, 1).unwrap();
        let tat = rl.charge(0, 25, T0);
        // 25 uses of a 10/s allowance: nothing passes for the next 1.5 s.
        assert!(matches!(rl.decide(tat, T0 + 1_400), RateDecision::Refused { .. }));
        assert!(matches!(rl.decide(tat, T0 + 1_600), RateDecision::Allowed { .. }));
    }

    #[test]
    fn quotas_and_rates_read_well() {
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let q = Quota { remaining: 1234, ..Quota::new(10_000, None, T0).unwrap() };
        assert_eq!(q.describe(T0), "1,234 of 10,000 left");
        let r = Refill::new(500, RefillInterval::Monthly).unwrap();
        assert_eq!(Quota::new(500, Some(r), T0).unwrap().describe(T0), "500 of 500 left, refilled monthly");
        assert_eq!(RateLimit::new(100, 60).unwrap().to_string(), "100/60s");
    }

    #[test]
    fn specs_parse() {
        let p = |s| RateLimit::parse_spec(s).map(|r| (r.limit(), r.period_seconds()));
        assert_eq!(p("100/60s"), Ok((100, 60)));
        assert_eq!(p("100/60"), Ok((100, 60)));
        assert_eq!(p("10/1m"), Ok((10, 60)));
        assert_eq!(p("5/h"), Ok((5, 3600)));
        assert_eq!(p("5/2d"), Err(LimitError::Period));
        assert_eq!(p("0/1s"), Err(LimitError::Limit));
        assert_eq!(p("100"), Err(LimitError::Spec));
        assert_eq!(p("100/5x"), Err(LimitError::Spec));
    }

    #[test]
    fn refills_happen_at_the_start_of_each_utc_day_or_month() {
        // 2026-03-15T12:00:00Z
        let mid_march = Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap().timestamp_millis();
        let ms = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp_millis();
        assert_eq!(RefillInterval::Daily.start_of(mid_march), ms(2026, 3, 15));
        assert_eq!(RefillInterval::Daily.next_after(mid_march), ms(2026, 3, 16));
        assert_eq!(RefillInterval::Monthly.start_of(mid_march), ms(2026, 3, 1));
        assert_eq!(RefillInterval::Monthly.next_after(mid_march), ms(2026, 4, 1));
        assert_eq!(RefillInterval::Monthly.next_after(ms(2026, 12, 31)), ms(2027, 1, 1));
        let q = Quota {
            remaining: 3,
            ..Quota::new(10, Some(Refill::new(50, RefillInterval::Daily).unwrap()), mid_march).unwrap()
        };
        assert_eq!(q.total, 50);
        assert_eq!(q.remaining_at(mid_march + 1000), 3);
        assert_eq!(q.remaining_at(ms(2026, 3, 16)), 50);
        assert!(Quota::new(-1, None, 0).is_err());
    }
}
