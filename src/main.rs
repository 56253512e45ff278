#![forbid(unsafe_code)]

use clap::Parser;
use flashback_operator::cli::Cli;

fn main() -> std::process::ExitCode {
    flashback_operator::cli::main(Cli::parse())
}
