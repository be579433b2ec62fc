//! What the commands print: lines on standard output that end the process quietly when the reader has gone away
//! (`atna key list … | head`), and errors printed once per distinct message.

use std::io::Write;

/// Prints a line on standard output, like `println!`, which would panic once the reader has closed the pipe.
macro_rules! outln {
    () => { $crate::output::write_stdout(b"\n") };
    ($($arg:tt)*) => { $crate::output::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes()) };
}
pub(crate) use outln;

/// Writes to standard output. A closed pipe means the reader has all it wanted: exit at once, quietly and
/// successfully, as `head` expects of the command before it. Any other failure (a full disk) is an error.
pub fn write_stdout(bytes: &[u8]) {
    if let Err(e) = try_write_stdout(bytes) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// Writes to standard output and flushes, for a caller that can carry on without it.
pub fn try_write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush())
}

/// An error and its causes, `: `-separated, leaving out each cause whose message is already shown (a context that
/// repeats its source would otherwise print the same sentence twice).
pub fn describe(e: &anyhow::Error) -> String {
    let mut shown = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        let message = message.trim();
        if message.is_empty() || shown.contains(message) {
            continue;
        }
        if !shown.is_empty() {
            shown.push_str(": ");
        }
        shown.push_str(message);
    }
    shown
}

/// Width of the longest bar of [`usage_chart`], in characters.
const CHART_WIDTH: i64 = 40;

/// One line per bucket: its start, a bar (`█` allowed, `░` refused, scaled to the busiest bucket), the counts, and
/// the refusals by reason.
pub fn usage_chart(buckets: &[atna_server::timeline::Bucket], g: atna_store::Granularity) -> Vec<String> {
    let most = buckets.iter().map(|b| b.allowed + b.refused_total()).max().unwrap_or(0).max(1);
    let cells = |n: i64| if n == 0 { 0 } else { ((n * CHART_WIDTH + most - 1) / most) as usize };
    buckets
        .iter()
        .map(|b| {
            let when = atna_server::clock::to_datetime(b.start);
            let when = match g {
                atna_store::Granularity::Hour => when.format("%Y-%m-%d %H:00").to_string(),
                atna_store::Granularity::Day => when.format("%Y-%m-%d").to_string(),
            };
            let refused = b.refused_total();
            let (a, r) = (cells(b.allowed), cells(refused));
            let bar = format!("{}{}", "█".repeat(a), "░".repeat(r));
            let pad = " ".repeat((CHART_WIDTH as usize + 1).saturating_sub(a + r));
            let mut line = format!("{when}  {bar}{pad}{:>9} allowed {:>9} refused", b.allowed, refused);
            if refused > 0 {
                let why: Vec<String> = b.refused.iter().map(|(k, n)| format!("{k} {n}")).collect();
                line.push_str(&format!(" ({})", why.join(", ")));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_chart_scales_to_the_busiest_bucket() {
        use atna_server::timeline::Bucket;
        let b = |start, allowed, refused: &[(&str, i64)]| Bucket {
            start,
            allowed,
            refused: refused.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        };
        let day = 86_400_000;
        let lines = usage_chart(
            &[b(0, 30, &[("invalid_secret", 10)]), b(day, 0, &[]), b(2 * day, 1, &[])],
            atna_store::Granularity::Day,
        );
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(&format!("1970-01-01  {}{} ", "█".repeat(30), "░".repeat(10))), "{}", lines[0]);
        assert!(lines[0].ends_with("30 allowed        10 refused (invalid_secret 10)"), "{}", lines[0]);
        assert!(lines[1].starts_with("1970-01-02   ") && lines[1].ends_with("0 allowed         0 refused"));
        assert!(lines[2].starts_with("1970-01-03  █ "), "a single request still shows: {}", lines[2]);
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = anyhow::anyhow!("The name is empty.");
        let e = inner.context("The name is empty.");
        assert_eq!(describe(&e), "The name is empty.");
        let e = anyhow::anyhow!("disk full").context("writing out.json");
        assert_eq!(describe(&e), "writing out.json: disk full");
    }
}
