//! The real `switchyard` binary as a child process, for what only a process
//! can show: signals, exit codes, the CLI.

use super::admin::AdminClient;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// A free loopback port for a child process to listen on.
///
/// The port is checked free, then released for the child to bind. A port
/// from the kernel's ephemeral range (what binding port 0 gives) could be
/// taken in between by any test's outgoing connection, and the gateway then
/// exits with "Address already in use" (seen in full runs). So the port is
/// picked at random below that range, where the kernel never picks ports
/// itself: only another test's `free_port` could take it, and a random
/// pick among thousands makes that unlikely.
pub fn free_port() -> anyhow::Result<u16> {
    use rand::Rng as _;
    let first_ephemeral = first_ephemeral_port();
    // Below 10000: well-known services (PostgreSQL, Redis, ...) that tests
    // reach; the bind check below skips any other listener.
    let range = 10_000..first_ephemeral.max(10_001);
    let mut rng = rand::rng();
    for _ in 0..100 {
        let port = rng.random_range(range.clone());
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {range:?} after 100 tries")
}

/// The first port of the kernel's ephemeral range (Linux's default where it
/// cannot be read).
pub fn first_ephemeral_port() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Runs `switchyard ARGS` to completion in `dir`. The admin session lives
/// in `dir/.config` (`XDG_CONFIG_HOME`) unless `env` says otherwise, never
/// in the developer's own config directory.
pub fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env_remove("SWITCHYARD_URL")
        .env_remove("SWITCHYARD_NEW_SECRET_KEY")
        .env("XDG_CONFIG_HOME", dir.join(".config"));
    for (name, value) in env {
        command.env(name, value);
    }
    Ok(command.output()?)
}

pub struct GatewayProcess {
    pub child: Child,
    pub url: String,
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Starts `switchyard serve --config CONFIG` in `dir` and waits until
    /// `/healthz` answers (or the process dies, or 30 s pass).
    pub async fn start(dir: &Path, config: &Path, port: u16) -> anyhow::Result<Self> {
        let child = Command::new(BINARY)
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("SWITCHYARD_CONFIG")
            // Appended, so that a test can read what each start printed.
            .stdout(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("gateway.out"))?,
            ))
            .stderr(Stdio::from(std::fs::File::create(dir.join("gateway.log"))?))
            .spawn()?;
        let mut process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            config: config.to_owned(),
        };
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(2))
            .finish();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
                bail!("gateway exited during start ({status}):\n{log}");
            }
            if let Ok(response) = client.get(format!("{}/healthz", process.url)).send().await
                && response.status().is_success()
            {
                return Ok(process);
            }
            if Instant::now() > deadline {
                bail!("gateway did not become healthy within 30 s");
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The admin API of this process with `bearer` (its master key or a
    /// session token).
    pub fn admin_client(&self, bearer: &str) -> AdminClient {
        AdminClient::new(self.url.clone(), bearer)
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// Waits for the process to exit on its own (bounded).
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("gateway still running {limit:?} after the signal");
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
