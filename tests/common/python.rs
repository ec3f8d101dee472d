//! Python tools from the checkout's `.venv/` (the official SDKs' compat
//! suite, schemathesis), run as bounded child processes with an environment
//! that cannot redirect them: proxies and Python paths are not passed on.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Variables that would change where a tool sends requests or what Python
/// loads: never passed on.
const SCRUBBED: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "PYTHONPATH",
    "PYTHONHOME",
];

/// The checkout's root (where `tests/compat` and `.venv/` are).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/NAME`, or an error saying how to install it.
pub fn venv_tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = root().join(".venv/bin").join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `make test` (or `make compat-deps`), which installs tests/compat/requirements.txt",
            path.display()
        );
    }
    Ok(path)
}

/// A command for `program` talking to loopback directly (no proxy), without
/// bytecode files, unbuffered, and without [`SCRUBBED`] variables or any
/// variable starting with one of `scrubbed_prefixes` (credentials...).
pub fn command(program: &Path, scrubbed_prefixes: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for (name, _) in std::env::vars_os() {
        let scrub = name.to_str().is_some_and(|name| {
            SCRUBBED.contains(&name)
                || scrubbed_prefixes
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
        });
        if scrub {
            command.env_remove(&name);
        }
    }
    command
}

/// Runs `command` to completion on a blocking thread (the gateway under test
/// serves on this runtime's thread) with stdout and stderr together; returns
/// the exit status, or None when it was killed after `limit`, and the output.
pub async fn run_bounded(
    command: Command,
    limit: Duration,
) -> anyhow::Result<(Option<ExitStatus>, String)> {
    let output = tempfile::NamedTempFile::new()?;
    let output_path = output.path().to_owned();
    let status = actix_rt::task::spawn_blocking(move || run(command, &output_path, limit))
        .await
        .context("the thread waiting for the child panicked")??;
    let report = std::fs::read_to_string(output.path())?;
    Ok((status, report))
}

fn run(mut command: Command, output: &Path, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let file = std::fs::File::create(output)?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start {command:?}"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
