//! A small chat-style agent on async-std. Run it in two terminals:
//!
//! ```text
//! cargo run -p rookery-async-std --example async-std-chat -- --name alice --bind 127.0.0.1:7001
//! cargo run -p rookery-async-std --example async-std-chat -- --name bob --bind 127.0.0.1:7002 --join 127.0.0.1:7001
//! ```
//!
//! Then type a line to chat (it travels as a user event, so every member prints it, the
//! sender included), `/msg NAME TEXT` for a direct message, or `/members`, `/join ADDR`,
//! `/stats`, `/leave` or `/quit`. Membership events print as they happen.

use std::net::SocketAddr;

use async_std::io::prelude::BufReadExt;
use async_std::stream::StreamExt;
use clap::Parser;
use rookery_async_std::{Agent, Config, Event, Identity, Options, ShutdownMode};

#[derive(Parser, Debug)]
struct Args {
    /// Member name.
    #[arg(long)]
    name: String,
    /// Address to bind (UDP and TCP); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Seed to join at start.
    #[arg(long)]
    join: Vec<SocketAddr>,
}

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let identity = Identity::new(args.name, args.bind);
    let (agent, mut events) = Agent::start(Config::local(), identity, Options::default()).await?;
    println!("{} listening on {}", agent.name(), agent.local_addr());
    async_std::task::spawn(async move {
        while let Some(event) = events.recv().await {
            println!("{}", describe(&event));
        }
    });
    if !args.join.is_empty() {
        match agent.join(&args.join).await {
            Ok(n) => println!("joined through {n} seed(s)"),
            Err(e) => println!("join failed: {e}"),
        }
    }
    let mut lines = async_std::io::BufReader::new(async_std::io::stdin()).lines();
    while let Some(line) = lines.next().await {
        let line = line?;
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "" => {}
            "/members" => {
                for m in agent.members().await? {
                    println!("  {:<16} {:<22} {:?}", m.name, m.addr, m.status);
                }
            }
            "/join" => match rest.parse::<SocketAddr>() {
                Ok(addr) => match agent.join(&[addr]).await {
                    Ok(n) => println!("joined through {n} seed(s)"),
                    Err(e) => println!("join failed: {e}"),
                },
                Err(e) => println!("bad address: {e}"),
            },
            "/stats" => println!("{:#?}", agent.stats().await?),
            "/leave" => {
                agent.shutdown(ShutdownMode::Leave).await;
                println!("left the cluster");
                return Ok(());
            }
            "/quit" => break,
            "/msg" => match rest.split_once(' ') {
                Some((to, text)) => {
                    if let Err(e) = agent.send(to, text.to_string()).await {
                        println!("message not sent: {e}");
                    }
                }
                None => println!("usage: /msg NAME TEXT"),
            },
            _ if cmd.starts_with('/') => println!("unknown command {cmd}"),
            _ => {
                let text = format!("<{}> {line}", agent.name());
                if let Err(e) = agent.user_event("chat", text, false).await {
                    println!("chat line not sent: {e}");
                }
            }
        }
    }
    agent.shutdown(ShutdownMode::Now).await;
    Ok(())
}

/// Chat lines as they are; everything else as the core describes it.
fn describe(event: &Event) -> String {
    match event {
        Event::User(u) if &*u.name == "chat" => String::from_utf8_lossy(&u.payload).into_owned(),
        other => format!("* {other}"),
    }
}
