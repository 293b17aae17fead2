//! A small chat-style agent on the mio driver (no async runtime). Run it in two terminals:
//!
//! ```text
//! cargo run -p rookery-mio --example mio-chat -- --name alice --bind 127.0.0.1:7001
//! cargo run -p rookery-mio --example mio-chat -- --name bob --bind 127.0.0.1:7002 --join 127.0.0.1:7001
//! ```
//!
//! Then type a line to chat (it travels as a user event, so every member prints it, the
//! sender included), `/msg NAME TEXT` for a direct message, or `/members`, `/join ADDR`,
//! `/stats`, `/leave` or `/quit`. Membership events print as they happen.

use std::io::BufRead;
use std::net::SocketAddr;

use clap::Parser;
use rookery_mio::{Agent, Config, Event, Identity, Options, ShutdownMode};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let identity = Identity::new(args.name, args.bind);
    let (agent, events) = Agent::start(Config::local(), identity, Options::default())?;
    println!("{} listening on {}", agent.name(), agent.local_addr());
    std::thread::spawn(move || {
        for event in events {
            println!("{}", describe(&event));
        }
    });
    if !args.join.is_empty() {
        match agent.join(&args.join) {
            Ok(n) => println!("joined through {n} seed(s)"),
            Err(e) => println!("join failed: {e}"),
        }
    }
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "" => {}
            "/members" => {
                for m in agent.members()? {
                    println!("  {:<16} {:<22} {:?}", m.name, m.addr, m.status);
                }
            }
            "/join" => match rest.parse::<SocketAddr>() {
                Ok(addr) => match agent.join(&[addr]) {
                    Ok(n) => println!("joined through {n} seed(s)"),
                    Err(e) => println!("join failed: {e}"),
                },
                Err(e) => println!("bad address: {e}"),
            },
            "/stats" => println!("{:#?}", agent.stats()?),
            "/leave" => {
                agent.shutdown(ShutdownMode::Leave);
                println!("left the cluster");
                return Ok(());
            }
            "/quit" => break,
            "/msg" => match rest.split_once(' ') {
                Some((to, text)) => {
                    if let Err(e) = agent.send(to, text.to_string()) {
                        println!("message not sent: {e}");
                    }
                }
                None => println!("usage: /msg NAME TEXT"),
            },
            _ if cmd.starts_with('/') => println!("unknown command {cmd}"),
            _ => {
                let text = format!("<{}> {line}", agent.name());
                if let Err(e) = agent.user_event("chat", text, false) {
                    println!("chat line not sent: {e}");
                }
            }
        }
    }
    agent.shutdown(ShutdownMode::Now);
    Ok(())
}

/// Chat lines as they are; everything else as the core describes it.
fn describe(event: &Event) -> String {
    match event {
        Event::User(u) if &*u.name == "chat" => String::from_utf8_lossy(&u.payload).into_owned(),
        other => format!("* {other}"),
    }
}
