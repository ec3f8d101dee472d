//! Where `switchyard admin login` keeps its session:
//! `$XDG_CONFIG_HOME/switchyard/session.json`, else
//! `~/.config/switchyard/session.json`; the directory mode 0700, the file
//! 0600, replaced atomically (written beside it, then renamed).

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSession {
    /// The gateway's base URL, as given to `login`.
    pub server: String,
    /// The session token (`sya-...`).
    pub token: String,
    pub session_id: i64,
    /// The admin key's fingerprint.
    pub fingerprint: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl StoredSession {
    pub fn expired(&self) -> bool {
        // The CLI is its own process: the system clock is its only clock.
        self.expires_at.saturating_mul(1000) <= crate::clock::system_now_ms()
    }
}

/// `$XDG_CONFIG_HOME/switchyard`, else `$HOME/.config/switchyard`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("switchyard"));
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("switchyard")),
        None => bail!("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the session"),
    }
}

pub fn session_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("session.json"))
}

/// The stored session, if there is one.
pub fn load() -> anyhow::Result<Option<StoredSession>> {
    let path = session_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "{} is not a session file; delete it and log in again",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Stores `session`, replacing any previous one; returns the file's path.
pub fn save(session: &StoredSession) -> anyhow::Result<PathBuf> {
    let path = session_path()?;
    let text = serde_json::to_string_pretty(session)?;
    replace_private_file(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Forgets the stored session; returns whether there was one.
pub fn remove() -> anyhow::Result<bool> {
    let path = session_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("removing {}", path.display())),
    }
}

/// Writes `content` to `path` with mode 0600 (its directory 0700 when
/// created), through a temporary file renamed over it, so a reader never
/// sees half a file and the mode never widens.
pub fn replace_private_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(parent)?;
    }
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(
        ".{file_name}.{}.tmp",
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(content.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
