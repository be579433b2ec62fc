//! Times the scan `atna scan` runs, without the rest of atna (a release build of this is much quicker to make):
//! `cargo run --release -p atna-scan --example scan_tree -- [--git] PATH…`. Prints the summary line and the time.

use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let git = args.first().is_some_and(|a| a == "--git");
    if git {
        args.remove(0);
    }
    let paths: Vec<std::path::PathBuf> = args.into_iter().map(Into::into).collect();
    let opts = atna_scan::Options::default();
    let t0 = Instant::now();
    let mut report = atna_scan::files::scan(&paths, &opts).expect("scan");
    if git {
        report.merge(atna_scan::git::scan_all(&paths, &opts).expect("git scan"));
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("{}", atna_scan::report::summary(&report));
    println!("{secs:.2} s, {:.0} MB/s", report.bytes_scanned as f64 / 1e6 / secs);
}
