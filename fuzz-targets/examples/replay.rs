//! Replay one input through a target: `cargo run -p rookery-fuzz-targets --example replay --
//! <target> <file>...` (a crash found by cargo-fuzz, with a readable panic message).

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .expect("usage: replay <decode|node|cluster> <file>...");
    for path in args {
        let data = std::fs::read(&path).expect("read input");
        rookery_fuzz_targets::run_target(&target, &data);
        println!("{path}: ok");
    }
}
