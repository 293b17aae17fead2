//! Print a fuzz input as the script it parses to: `cargo run -p rookery-fuzz-targets --example
//! show -- <node|cluster> <file>`.

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: show <node|cluster> <file>");
    let data = std::fs::read(args.next().expect("a file")).expect("read input");
    match target.as_str() {
        "node" => {
            let s = rookery_fuzz_targets::node::Script::parse(&data);
            println!("{:?}", s.header);
            for op in &s.ops {
                let mut line = format!("{op:?}");
                line.truncate(160);
                println!("{line}");
            }
        }
        "cluster" => {
            let s = rookery_fuzz_targets::cluster::ClusterScript::parse(&data);
            println!("seed {} nodes {}", s.seed, s.nodes);
            for f in &s.faults {
                println!("{f:?}");
            }
        }
        _ => panic!("unknown target {target}"),
    }
}
