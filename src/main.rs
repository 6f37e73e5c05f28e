//! The `bpc` command line: see `cli` and SPEC §4.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::check_command_word(&std::env::args_os().collect::<Vec<_>>());
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string();
            // Rendered program diagnostics already start with `error:`.
            if text.starts_with("error") {
                eprintln!("{text}")
            } else {
                eprintln!("error: {text}")
            }
            ExitCode::FAILURE
        }
    }
}
