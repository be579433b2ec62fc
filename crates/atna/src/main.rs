//! The `atna` binary: `atna serve`, `atna migrate`, `atna user …`, `atna key …`.

mod backup;
mod cli;
mod commands;
mod config;
mod files;
mod output;
mod scan;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Before anything is created: the database (and SQLite's -wal and -shm files, which SQLite creates itself) and
    // the data directory hold password and key hashes, so they are for this user only, whatever the shell's umask.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = cli::parse();
    if let Err(e) = config::init_logging() {
        eprintln!("error: {}", output::describe(&e));
        return std::process::ExitCode::FAILURE;
    }
    if let cli::Command::Scan(args) = cli.command {
        // Its own exit statuses: 1 means "a key was found", so errors are 2.
        return scan::run(&cli.global, args).await;
    }
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
