//! Runs a command in a container built from a root filesystem directory, with no cgroups:
//! `cargo run -p ns-core --example run -- ROOTFS CMD [ARGS...]` (as root).

use ns_core::{ContainerSpec, spawn};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(rootfs), command) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: run ROOTFS CMD [ARGS...]");
        std::process::exit(2);
    };
    let state = std::env::temp_dir().join(format!("ns-core-example-{}", std::process::id()));
    let mut spec = ContainerSpec::new("example", rootfs, command);
    spec.state_dir = state.clone();
    let result = spawn(&spec, None, |_pid| Ok(())).and_then(|running| running.wait());
    let _ = std::fs::remove_dir_all(&state);
    match result {
        Ok(status) => std::process::exit(status.code()),
        Err(e) => {
            eprintln!("run: {e}");
            std::process::exit(125);
        }
    }
}
