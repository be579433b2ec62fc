//! Usage over time in the dashboard: the key page (click a key's name in My API Keys) with a chart of the last 24 hours,
//! 7 days or 90 days and the same numbers as a table, the 7-day sparklines of My API Keys, and the "calls yesterday"
//! sentence beside the delete page's danger note.
//!
//! Charts are SVG drawn on the server from precomputed geometry (templates `usage_chart.html`, `sparkline.html`): the
//! CSP forbids inline script and `style=`, so they use presentation attributes only, and a `<title>` per bar says its
//! numbers on hover. They work without JavaScript and print.

use askama::Template;
use atna_domain::{CredentialId, Millis};
use atna_store::Granularity;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::keys::{own_key, KeyRow};
use super::pages::{render, Chrome, DashQuery, DashResult};
use super::session::SignedIn;
use super::DashState;
use crate::clock::{self, to_datetime};
use crate::timeline::{self, Bucket};

/// The chart's drawing area (SVG user units; the CSS scales the whole picture to the page's width).
const W: f64 = 720.0;
const H: f64 = 180.0;
/// Room on the left for the scale, and below for the dates.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
/// Allowed requests and refused attempts.
pub const ALLOWED_FILL: &str = "#3b5bdb";
pub const REFUSED_FILL: &str = "#e8590c";

/// The ranges the key page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
    Quarter,
}

impl Range {
    fn parse(s: &str) -> Self {
        match s {
            "7d" => Range::Week,
            "90d" => Range::Quarter,
            _ => Range::Day,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Quarter => "90d",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Range::Day => "Last 24 hours",
            Range::Week => "Last 7 days",
            Range::Quarter => "Last 90 days",
        }
    }

    /// Bucket width and how many buckets, ending with the current one.
    fn buckets(self) -> (Granularity, i64) {
        match self {
            Range::Day => (Granularity::Hour, 24),
            Range::Week => (Granularity::Hour, 7 * 24),
            Range::Quarter => (Granularity::Day, 90),
        }
    }
}

/// One bar of the chart: allowed stacked under refused.
pub struct Bar {
    pub x: String,
    pub width: String,
    pub allowed_y: String,
    pub allowed_h: String,
    pub refused_y: String,
    pub refused_h: String,
    /// What hovering says: "27 Nov 14:00 UTC: 120 allowed, 43 refused (invalid_secret 3, rate_limited 40)".
    pub title: String,
}

/// A label under the chart.
pub struct Tick {
    pub x: String,
    pub text: String,
    /// `start` for the first label, `end` for the last (so neither is cut off at the edge), else `middle`.
    pub anchor: &'static str,
}

/// One row of the table under the chart.
pub struct TableRow {
    pub when: String,
    pub allowed: i64,
    pub refused: i64,
    /// "invalid_secret 3, rate_limited 40"; empty for none.
    pub reasons: String,
}

/// A drawn chart and its numbers (the SVG and the table under it).
#[derive(Template)]
#[template(path = "usage_chart.html")]
pub struct Chart {
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// The scale's top value (the busiest bucket, rounded up).
    pub top: i64,
    pub width: f64,
    pub height: f64,
    pub base_y: String,
    pub left: String,
    pub allowed_fill: &'static str,
    pub refused_fill: &'static str,
    /// Buckets with any request, oldest first (the table lists these; empty ones are left out).
    pub rows: Vec<TableRow>,
    pub total_allowed: i64,
    pub total_refused: i64,
    /// A sentence for the chart's accessible name.
    pub summary: String,
}

fn n2(v: f64) -> String {
    format!("{v:.1}")
}

/// A scale top at or above `v`: 1, 2 or 5 times a power of ten.
fn nice(v: i64) -> i64 {
    let mut p = 1;
    loop {
        for m in [1, 2, 5] {
            if m * p >= v {
                return m * p;
            }
        }
        p *= 10;
    }
}

fn when(b: &Bucket, g: Granularity) -> String {
    let t = to_datetime(b.start);
    match g {
        Granularity::Hour => t.format("%-d %b %H:00 UTC").to_string(),
        Granularity::Day => t.format("%-d %b %Y").to_string(),
    }
}

fn reasons(b: &Bucket) -> String {
    b.refused.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

impl Chart {
    /// Lays out `buckets` (oldest first) as stacked bars.
    pub fn new(buckets: &[Bucket], g: Granularity) -> Self {
        let top = nice(buckets.iter().map(|b| b.allowed + b.refused_total()).max().unwrap_or(0).max(1));
        let plot_w = W - LEFT;
        let plot_h = H - BOTTOM - 8.0;
        let base = H - BOTTOM;
        let slot = plot_w / buckets.len().max(1) as f64;
        let gap = if slot > 4.0 { slot * 0.15 } else { 0.0 };
        let scale = |n: i64| n as f64 / top as f64 * plot_h;
        let mut bars = Vec::with_capacity(buckets.len());
        let mut rows = Vec::new();
        for (i, b) in buckets.iter().enumerate() {
            let refused = b.refused_total();
            let (ah, rh) = (scale(b.allowed), scale(refused));
            let mut title = format!("{}: {} allowed, {} refused", when(b, g), b.allowed, refused);
            if refused > 0 {
                title.push_str(&format!(" ({})", reasons(b)));
            }
            bars.push(Bar {
                x: n2(LEFT + i as f64 * slot + gap / 2.0),
                width: n2((slot - gap).max(0.5)),
                allowed_y: n2(base - ah),
                allowed_h: n2(ah),
                refused_y: n2(base - ah - rh),
                refused_h: n2(rh),
                title,
            });
            if b.allowed + refused > 0 {
                rows.push(TableRow { when: when(b, g), allowed: b.allowed, refused, reasons: reasons(b) });
            }
        }
        // The first bucket, the middle one and the last one.
        let last = buckets.len().saturating_sub(1);
        let ticks = [0, buckets.len() / 2, last]
            .into_iter()
            .filter(|&i| i < buckets.len())
            .map(|i| {
                let (x, anchor) = match i {
                    0 => (LEFT + i as f64 * slot, "start"),
                    i if i == last => (LEFT + (i + 1) as f64 * slot, "end"),
                    _ => (LEFT + (i as f64 + 0.5) * slot, "middle"),
                };
                let t = to_datetime(buckets[i].start);
                let text = match g {
                    Granularity::Hour => t.format("%-d %b %H:00").to_string(),
                    Granularity::Day => t.format("%-d %b").to_string(),
                };
                Tick { x: n2(x), text, anchor }
            })
            .collect();
        let total_allowed = buckets.iter().map(|b| b.allowed).sum();
        let total_refused = buckets.iter().map(Bucket::refused_total).sum();
        let summary = format!("{total_allowed} allowed requests and {total_refused} refused attempts");
        Self {
            bars,
            ticks,
            top,
            width: W,
            height: H,
            base_y: n2(base),
            left: n2(LEFT),
            allowed_fill: ALLOWED_FILL,
            refused_fill: REFUSED_FILL,
            rows,
            total_allowed,
            total_refused,
            summary,
        }
    }
}

/// A 7-day sparkline of allowed calls (one bar per day, today last).
#[derive(Template)]
#[template(path = "sparkline.html")]
pub struct Sparkline {
    pub bars: Vec<SparkBar>,
    /// "Allowed calls, last 7 days: 0, 3, 12, 0, 0, 40, 312".
    pub label: String,
    pub fill: &'static str,
}

pub struct SparkBar {
    pub x: String,
    pub y: String,
    pub h: String,
    pub title: String,
}

impl Sparkline {
    /// Width and height in SVG units (and CSS pixels).
    pub const W: f64 = 70.0;
    pub const H: f64 = 20.0;

    /// Lays out daily counts, oldest first, the last one being today (`now`).
    pub fn new(days: &[i64], now: Millis) -> Self {
        let most = days.iter().copied().max().unwrap_or(0).max(1);
        let slot = Self::W / days.len().max(1) as f64;
        let today = Granularity::Day.floor(now);
        let bars = days
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                // An empty day still shows a hairline, so the row reads as "quiet", not "missing".
                let h = if n == 0 { 1.0 } else { (n as f64 / most as f64 * (Self::H - 1.0)).max(2.0) };
                let start = today - (days.len() - 1 - i) as i64 * Granularity::Day.millis();
                SparkBar {
                    x: n2(i as f64 * slot + 1.0),
                    y: n2(Self::H - h),
                    h: n2(h),
                    title: format!("{}: {n} allowed", to_datetime(start).format("%-d %b")),
                }
            })
            .collect();
        let list = days.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        Self { bars, label: format!("Allowed calls, last {} days: {list}", days.len()), fill: ALLOWED_FILL }
    }

    /// The bar width.
    pub fn bar_w(&self) -> String {
        n2((Self::W / self.bars.len().max(1) as f64 - 2.0).max(1.0))
    }
}

/// The danger note's fact about recent traffic: allowed calls only (refused attempts are not use: anyone who knows a
/// Credential ID can make them). `days` are the last 7 days' allowed calls, today last.
pub fn recent_use(days: &[i64]) -> String {
    let n = days.len();
    let (today, yesterday) = (days.get(n.wrapping_sub(1)).copied().unwrap_or(0), days.get(n.wrapping_sub(2)).copied());
    let week: i64 = days.iter().sum();
    let calls = |k: i64| if k == 1 { "1 call".to_owned() } else { format!("{k} calls") };
    match yesterday {
        Some(y) if y > 0 => format!("{} yesterday — something still uses this key", calls(y)),
        _ if today > 0 => format!("{} today — something still uses this key", calls(today)),
        _ if week > 0 => format!("{} in the last 7 days — something may still use this key", calls(week)),
        _ => "No calls in the last 7 days".to_owned(),
    }
}

/// The last 7 days of allowed calls of one key (store plus this node's unflushed counts), today last.
pub async fn last_week(s: &DashState, id: CredentialId, now: Millis) -> DashResult<Vec<i64>> {
    let mut by_key = timeline::daily_allowed(s.app.store.as_ref(), Some(s.app.verifier.usage()), &[id], 7, now).await?;
    Ok(by_key.remove(&id).unwrap_or_else(|| vec![0; 7]))
}

#[derive(Template)]
#[template(path = "key_page.html")]
struct KeyPage {
    c: Chrome,
    row: KeyRow,
    ranges: Vec<(&'static str, &'static str, bool)>,
    range_label: &'static str,
    granularity: &'static str,
    /// The rendered [`Chart`].
    chart: String,
}

#[derive(Deserialize)]
pub struct KeyPageQuery {
    #[serde(default)]
    range: String,
}

/// `GET /keys/{id}`: one key's facts and its usage over the chosen range.
pub async fn key_page(
    State(s): State<DashState>,
    si: SignedIn,
    Path(id): Path<String>,
    DashQuery(q): DashQuery<KeyPageQuery>,
) -> DashResult {
    let rec = own_key(&s, si.user.id, &id).await?;
    let now = clock::now();
    let range = Range::parse(&q.range);
    let (g, n) = range.buckets();
    let to = g.floor(now) + g.millis();
    let from = to - n * g.millis();
    let buckets = timeline::series(s.app.store.as_ref(), Some(s.app.verifier.usage()), &rec.id, g, from, to).await?;
    let ranges =
        [Range::Day, Range::Week, Range::Quarter].into_iter().map(|r| (r.slug(), r.label(), r == range)).collect();
    let page = KeyPage {
        c: Chrome::signed_in(&si, "keys", rec.name.to_string()),
        row: KeyRow::new(&rec, now, &s.app.settings.policy),
        ranges,
        range_label: range.label(),
        granularity: g.as_str(),
        chart: Chart::new(&buckets, g).render().map_err(|_| super::pages::DashError::internal())?,
    };
    Ok(render(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round_numbers() {
        assert_eq!([nice(1), nice(3), nice(7), nice(10), nice(11), nice(312)], [1, 5, 10, 10, 20, 500]);
    }

    #[test]
    fn the_danger_note_counts_allowed_calls_only() {
        assert_eq!(recent_use(&[0, 0, 0, 0, 0, 312, 4]), "312 calls yesterday — something still uses this key");
        assert_eq!(recent_use(&[0, 0, 0, 0, 0, 0, 1]), "1 call today — something still uses this key");
        assert_eq!(recent_use(&[2, 0, 0, 0, 0, 0, 0]), "2 calls in the last 7 days — something may still use this key");
        assert_eq!(recent_use(&[0; 7]), "No calls in the last 7 days");
    }

    #[test]
    fn bars_stack_refused_on_allowed_and_say_their_numbers() {
        let b = |start, allowed, refused: &[(&str, i64)]| Bucket {
            start,
            allowed,
            refused: refused.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        };
        let c = Chart::new(&[b(0, 6, &[("invalid_secret", 4)]), b(3_600_000, 0, &[])], Granularity::Hour);
        assert_eq!(c.top, 10);
        assert_eq!(c.bars[0].title, "1 Jan 00:00 UTC: 6 allowed, 4 refused (invalid_secret 4)");
        let (ay, ah, ry, rh): (f64, f64, f64, f64) = (
            c.bars[0].allowed_y.parse().unwrap(),
            c.bars[0].allowed_h.parse().unwrap(),
            c.bars[0].refused_y.parse().unwrap(),
            c.bars[0].refused_h.parse().unwrap(),
        );
        assert!((ry + rh - ay).abs() < 0.2 && ah > rh, "refused sits on allowed: {ay} {ah} {ry} {rh}");
        assert_eq!(c.rows.len(), 1, "the table leaves out empty buckets");
        assert_eq!((c.total_allowed, c.total_refused), (6, 4));
    }
}
