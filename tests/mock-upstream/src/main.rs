//! `mock-upstream --listen 127.0.0.1:PORT [--threads N]`: the mock provider as a process, for the
//! benchmark and for poking at by hand. Prints `listening on ADDR` once bound, then serves until
//! killed. Requests are counted but not recorded (nothing could read them).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use mock_upstream::{MockUpstream, Options};

const USAGE: &str = "usage: mock-upstream [--listen ADDR] [--threads N]\n\
    \n  --listen ADDR   address to bind (default 127.0.0.1:0, a free port)\
    \n  --threads N     tokio worker threads (default: available cores)";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        worker_threads: std::thread::available_parallelism().map_or(2, usize::from),
        record_requests: false,
        ..Options::default()
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--listen" => {
                let value = value()?;
                options.addr = value
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen {value}: {e}"))?;
            }
            "--threads" => {
                let value = value()?;
                options.worker_threads = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads {value}: expected a positive number"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("mock-upstream: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mock = match MockUpstream::start_with(options) {
        Ok(mock) => mock,
        Err(error) => {
            eprintln!("mock-upstream: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "listening on {}", mock.addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    // The server runs on its own thread until the process is killed.
    loop {
        std::thread::park();
    }
}
