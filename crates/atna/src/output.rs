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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = anyhow::anyhow!("The name is empty.");
        let e = inner.context("The name is empty.");
        assert_eq!(describe(&e), "The name is empty.");
        let e = anyhow::anyhow!("disk full").context("writing out.json");
        assert_eq!(describe(&e), "writing out.json: disk full");
    }
}
