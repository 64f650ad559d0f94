//! tmctl: wires the process (arguments, environment, stdio, exit code) to [`tmctl::run`].

use std::io::IsTerminal;

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tmctl: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let env: tmctl::config::Env = std::env::vars().collect();
    let (mut out, mut err, mut stdin) = (std::io::stdout(), std::io::stderr(), std::io::stdin());
    let err_is_tty = err.is_terminal();
    let mut io = tmctl::Io {
        out: &mut out,
        err: &mut err,
        err_is_tty,
        stdin: &mut stdin,
    };
    let status = runtime.block_on(tmctl::run(std::env::args().collect(), &env, &mut io));
    std::process::ExitCode::from(u8::try_from(status).unwrap_or(1))
}
