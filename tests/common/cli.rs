//! Reading the real binary's answers (`switchyard admin ...` and the rest):
//! its output as text or JSON, and the CLI's error policy, one line on
//! stderr that says what went wrong.

use super::process::run_cli;
use anyhow::{Context, ensure};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The output of a command that must have succeeded.
pub fn succeeds(output: Output) -> anyhow::Result<Output> {
    ensure!(output.status.success(), "failed: {}", stderr(&output));
    Ok(output)
}

/// The JSON stdout of a command that must have succeeded.
pub fn json_out(output: Output) -> anyhow::Result<Value> {
    let output = succeeds(output)?;
    serde_json::from_slice(&output.stdout).with_context(|| format!("not JSON: {}", stdout(&output)))
}

/// A failure with one line on stderr that contains every one of `says`.
pub fn fails_saying(output: &Output, says: &[&str]) -> anyhow::Result<()> {
    let message = stderr(output);
    ensure!(!output.status.success(), "succeeded: {}", stdout(output));
    ensure!(
        message.trim_end().lines().count() == 1,
        "not one line: {message}"
    );
    for part in says {
        ensure!(message.contains(part), "{message:?} does not say {part:?}");
    }
    Ok(())
}

/// `switchyard --config CONFIG admin ARGS`, run in `dir`, against the
/// gateway that config starts; every output is checked for `secrets`.
pub struct AdminCli {
    pub dir: PathBuf,
    pub config: String,
    /// Strings no command may ever print (keys, header values).
    pub secrets: Vec<String>,
}

impl AdminCli {
    pub fn new(dir: &Path, config: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            config: config.to_str().context("config path")?.to_owned(),
            secrets: Vec::new(),
        })
    }

    /// The same, failing any command that prints one of `secrets`.
    pub fn never_printing(mut self, secrets: &[&str]) -> Self {
        self.secrets = secrets.iter().map(|secret| (*secret).to_owned()).collect();
        self
    }

    /// Runs `admin ARGS`; returns the whole output, whatever the status.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["--config", self.config.as_str(), "admin"];
        all.extend_from_slice(args);
        let output = run_cli(&self.dir, &all, &[])?;
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            ensure!(
                !self.secrets.iter().any(|secret| text.contains(secret)),
                "{args:?} printed a secret: {text}"
            );
        }
        Ok(output)
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.run(args)?;
        ensure!(
            output.status.success(),
            "{args:?} failed: {}",
            stderr(&output)
        );
        Ok(stdout(&output))
    }

    /// Runs `--json ARGS`, which must succeed; returns the parsed answer.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all)?;
        serde_json::from_str(&out).with_context(|| format!("{args:?}: not JSON: {out}"))
    }

    /// Runs a command that must fail with one line on stderr containing
    /// every one of `needles`.
    pub fn fails(&self, args: &[&str], needles: &[&str]) -> anyhow::Result<()> {
        let output = self.run(args)?;
        fails_saying(&output, needles).with_context(|| format!("{args:?}"))
    }
}
