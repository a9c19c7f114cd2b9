//! The `volley` command line: `volley demo` runs everything on loopback; further
//! subcommands come with the transports.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// volley: brokerless pub/sub for low-latency telemetry.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demonstration on this machine (no server needed) and check what it shows.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("volley: {message}");
            ExitCode::FAILURE
        }
    }
}
