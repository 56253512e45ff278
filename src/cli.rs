//! Command line of the `flashback-operator` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Kubernetes operator for Flashback storage repositories.
#[derive(Debug, Parser)]
#[command(name = "flashback-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run,
}

/// Runs the chosen subcommand and turns its outcome into the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            eprintln!("flashback-operator: the controller is not built yet");
            ExitCode::FAILURE
        }
    }
}
