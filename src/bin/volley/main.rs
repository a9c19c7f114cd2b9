//! The `volley` command line: `volley demo` runs everything on loopback; further
//! subcommands come with the transports.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod mcast;
mod messages;
mod pubsub;
mod pushpull;
mod statsd;
mod webhook;

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
    /// Publish messages (generated, or one per stdin line) on a topic.
    Pub(pubsub::PubArgs),
    /// Subscribe to topic prefixes and print `TOPIC<TAB>PAYLOAD` per message.
    Sub(pubsub::SubArgs),
    /// Push messages (generated, or one per stdin line), each to one puller in turn.
    Push(pushpull::PushArgs),
    /// Pull messages from pushers and print their frames, tab-separated, one per line.
    Pull(pushpull::PullArgs),
    /// Send metrics to a StatsD daemon (raw lines or --count/--gauge/... flags).
    Statsd(statsd::StatsdArgs),
    /// Send signed webhook events (Standard Webhooks).
    Webhook(webhook::WebhookArgs),
    /// Forward subscribed messages elsewhere (`volley bridge webhook`).
    Bridge(webhook::BridgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Pub(args) => pubsub::publish(&args),
        Command::Sub(args) => pubsub::subscribe(&args),
        Command::Push(args) => pushpull::push(&args),
        Command::Pull(args) => pushpull::pull(&args),
        Command::Statsd(args) => statsd::run(&args),
        Command::Webhook(args) => webhook::run(&args),
        Command::Bridge(args) => webhook::bridge(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("volley: {message}");
            ExitCode::FAILURE
        }
    }
}
