//! `tm-local`: every Traffic Manager function in one process behind one HTTP port.
//! See `tm_local` (lib.rs) for where each part lives.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match tm_local::cli::parse(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("tm-local: {msg}\n\n{}", tm_local::cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tm-local: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tm_local::run(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tm-local: {e:#}");
            ExitCode::FAILURE
        }
    }
}
