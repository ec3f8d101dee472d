//! `switchyard install` / `switchyard uninstall` (issue 13, item 2): the
//! gateway as a hardened systemd service (docs/install.md).
//!
//! Install makes, under `--root` (default `/`; tests install into a
//! temporary directory without root):
//!
//! - the system user and group `switchyard` (`useradd --system`), only when
//!   run as root on the real root and the user does not exist yet;
//! - `/var/lib/switchyard`, the data directory (database, generated keys,
//!   usage journal): mode 0750, owned by the user;
//! - `/etc/switchyard/switchyard.toml`, a settings file pointing every path
//!   into the data directory: mode 0640, owner root, group `switchyard` (it
//!   may hold secrets the service reads but must not change); an existing
//!   one is kept, and uninstall removes it only while it is unchanged;
//! - `/usr/local/bin/switchyard`, a copy of the running binary (or, with
//!   `--link-binary`, the unit points at the running binary instead);
//! - `/etc/systemd/system/switchyard.service` (see [`unit`]: a dedicated
//!   user, `StateDirectory`, `ConfigurationDirectory`, the sandboxing
//!   options), mode 0644;
//! - `/etc/switchyard/.install-manifest`: what it made, read by uninstall;
//!
//! then `systemctl daemon-reload` and `systemctl enable` when systemd runs
//! the machine (it is not started: the operator edits the settings first).
//!
//! Uninstall stops and disables the service and removes what the manifest
//! lists. It never removes the data directory (the database and the keys)
//! nor the user that owns it, and says so. `--dry-run` prints every action
//! of either and changes nothing.
//!
//! Plain `std::fs` and the distribution's `useradd`/`systemctl`: creating a
//! system user portably is what `useradd` is for, and a handful of file
//! writes needs no crate.

use anyhow::{Context as _, bail};
use clap::Args;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The service's name (unit, user, group, directories).
pub const NAME: &str = "switchyard";
/// The data directory, as seen by the running service.
pub const DATA_DIR: &str = "/var/lib/switchyard";
/// The settings directory.
pub const CONFIG_DIR: &str = "/etc/switchyard";
/// The settings file.
pub const CONFIG_FILE: &str = "/etc/switchyard/switchyard.toml";
/// The unit file.
pub const UNIT_FILE: &str = "/etc/systemd/system/switchyard.service";
/// Where the binary is copied.
pub const BINARY: &str = "/usr/local/bin/switchyard";
/// What install made, one path a line.
pub const MANIFEST: &str = "/etc/switchyard/.install-manifest";

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Print every action and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Install under this directory instead of `/` (packaging, tests); the
    /// files still name the real paths. No user is created and systemctl
    /// is not run.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The service's user and group (created when missing, as root on `/`).
    #[arg(long, default_value = NAME)]
    user: String,
    /// Do not create the user, even as root.
    #[arg(long)]
    no_create_user: bool,
    /// Do not run systemctl (daemon-reload, enable).
    #[arg(long)]
    no_systemctl: bool,
    /// Point the unit at this binary where it is instead of copying it to
    /// /usr/local/bin.
    #[arg(long)]
    link_binary: bool,
    /// The address the gateway listens on, written into the new settings file.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Print every action and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The `--root` install used.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Do not run systemctl (stop, disable, daemon-reload).
    #[arg(long)]
    no_systemctl: bool,
}

/// The unit file for `binary` run as `user`.
pub fn unit(binary: &str, user: &str) -> String {
    format!(
        "# Written by `switchyard install`; `switchyard uninstall` removes it.\n\
         # Settings: {CONFIG_FILE}; data: {DATA_DIR} (docs/install.md).\n\
         [Unit]\n\
         Description=Switchyard AI API gateway\n\
         After=network-online.target postgresql.service\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={user}\n\
         Group={user}\n\
         ExecStart={binary} --config {CONFIG_FILE} serve\n\
         WorkingDirectory={DATA_DIR}\n\
         StateDirectory={NAME}\n\
         StateDirectoryMode=0750\n\
         ConfigurationDirectory={NAME}\n\
         ConfigurationDirectoryMode=0755\n\
         ReadWritePaths={DATA_DIR}\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         # SIGTERM drains in-flight requests (server.shutdown_timeout).\n\
         TimeoutStopSec=60s\n\
         LimitNOFILE=65536\n\
         UMask=0027\n\
         # Hardening: nothing but its data directory is writable, no new\n\
         # privileges or capabilities, no devices, kernel knobs or other\n\
         # users' homes, IP and Unix sockets only.\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// The settings file a new install gets.
pub fn settings_file(listen: &str) -> String {
    format!(
        "# Written by `switchyard install`: settings layered over the built-in\n\
         # defaults (settings/default.toml documents every key). `switchyard\n\
         # uninstall` removes this file only while it is unchanged.\n\
         [server]\n\
         listen = \"{listen}\"\n\
         \n\
         [database]\n\
         # Or postgres://user@host/db (then keep secrets in the environment:\n\
         # SWITCHYARD__DATABASE__URL in a systemd drop-in).\n\
         url = \"sqlite://{DATA_DIR}/switchyard.db\"\n\
         \n\
         [admin]\n\
         # Generated at the first start, readable by the service user only.\n\
         master_key_file = \"{DATA_DIR}/master.key\"\n\
         key_file = \"{DATA_DIR}/admin_ed25519.key\"\n\
         \n\
         [security]\n\
         secret_key_file = \"{DATA_DIR}/secret.key\"\n\
         \n\
         [usage]\n\
         journal_dir = \"{DATA_DIR}/usage-journal\"\n\
         spill_file = \"{DATA_DIR}/usage-spill.jsonl\"\n\
         retention = \"30d\"\n\
         \n\
         [logging]\n\
         format = \"json\"\n\
         \n\
         # Providers: see settings/example.toml.\n"
    )
}

/// `DIR` + an absolute path.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn is_superuser() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The uid and gid of `user` (via `id`, which reads NSS like everything else).
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .arg(flag)
            .arg(user)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// systemd runs this machine (not a container without it).
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// One step, printed before it runs (or instead, on a dry run).
struct Steps {
    dry_run: bool,
}

impl Steps {
    fn run(&self, what: &str, action: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        if self.dry_run {
            println!("would {what}");
            return Ok(());
        }
        println!("{what}");
        action().with_context(|| format!("cannot {what}"))
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn command(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} exited with {status}", args.join(" "));
    }
    Ok(())
}

pub fn install(args: InstallArgs) -> anyhow::Result<()> {
    let steps = Steps {
        dry_run: args.dry_run,
    };
    let root = &args.root;
    let real_root = root == Path::new("/");
    let superuser = is_superuser();
    if real_root && !superuser && !args.dry_run {
        bail!("installing into / needs root: run it with sudo, or use --root DIR or --dry-run");
    }
    if args.listen.parse::<std::net::SocketAddr>().is_err() {
        bail!(
            "--listen {:?} is not a socket address; expected host:port such as 127.0.0.1:8080",
            args.listen
        );
    }
    let user = args.user.as_str();
    let mut made: Vec<String> = Vec::new();

    // The user.
    let mut ids = ids_of(user);
    if ids.is_none() {
        if real_root && superuser && !args.no_create_user {
            steps.run(&format!("create the system user {user}"), || {
                command(
                    "useradd",
                    &[
                        "--system",
                        "--user-group",
                        "--home-dir",
                        DATA_DIR,
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        "--comment",
                        "Switchyard AI API gateway",
                        user,
                    ],
                )
            })?;
            ids = ids_of(user);
        } else {
            println!(
                "the user {user} does not exist and is not created here (not root on /, or \
                 --no-create-user): owners are left as they are"
            );
        }
    }
    // Owners only as root (a plain user cannot give files away).
    let owner = if superuser { ids } else { None };

    // The data directory: never in the manifest, never removed.
    let data = under(root, DATA_DIR);
    steps.run(
        &format!(
            "create the data directory {} (0750, owner {user})",
            data.display()
        ),
        || {
            fs::create_dir_all(&data)?;
            set_mode(&data, 0o750)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
            }
            Ok(())
        },
    )?;

    // The settings.
    let config_dir = under(root, CONFIG_DIR);
    let config = under(root, CONFIG_FILE);
    if !config_dir.exists() {
        made.push(CONFIG_DIR.to_owned());
    }
    steps.run(&format!("create {} (0755)", config_dir.display()), || {
        fs::create_dir_all(&config_dir)?;
        set_mode(&config_dir, 0o755)
    })?;
    let settings_text = settings_file(&args.listen);
    if config.exists() {
        println!("keep the existing settings file {}", config.display());
    } else {
        // With its digest: uninstall removes it only while unchanged.
        made.push(format!(
            "{CONFIG_FILE} sha256={}",
            digest(settings_text.as_bytes())
        ));
        steps.run(
            &format!(
                "write the settings file {} (0640, group {user})",
                config.display()
            ),
            || {
                fs::write(&config, &settings_text)?;
                set_mode(&config, 0o640)?;
                if let Some((_, gid)) = owner {
                    std::os::unix::fs::chown(&config, Some(0), Some(gid))?;
                }
                Ok(())
            },
        )?;
    }

    // The binary.
    let current = std::env::current_exe().context("cannot find this binary")?;
    let exec = if args.link_binary {
        let path = current
            .to_str()
            .context("this binary's path is not UTF-8")?
            .to_owned();
        println!("point the unit at {path} (--link-binary: not copied)");
        path
    } else {
        let target = under(root, BINARY);
        made.push(BINARY.to_owned());
        steps.run(
            &format!("copy {} to {} (0755)", current.display(), target.display()),
            || {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                // Through a temporary name: replacing a running binary in
                // place fails with "text file busy".
                let partial = target.with_extension("new");
                fs::copy(&current, &partial)?;
                set_mode(&partial, 0o755)?;
                fs::rename(&partial, &target)?;
                Ok(())
            },
        )?;
        BINARY.to_owned()
    };
    if exec.chars().any(char::is_whitespace) {
        bail!("the binary's path {exec:?} has a space; copy it (drop --link-binary)");
    }

    // The unit.
    let unit_path = under(root, UNIT_FILE);
    made.push(UNIT_FILE.to_owned());
    steps.run(
        &format!("write the unit {} (0644)", unit_path.display()),
        || {
            if let Some(parent) = unit_path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&unit_path, unit(&exec, user))?;
            set_mode(&unit_path, 0o644)
        },
    )?;

    // The manifest, for uninstall (merged with an earlier one).
    let manifest = under(root, MANIFEST);
    let mut listed: Vec<String> = fs::read_to_string(&manifest)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    for line in made {
        let path = line.split(' ').next().unwrap_or_default();
        if !listed.iter().any(|l| l.split(' ').next() == Some(path)) {
            listed.push(line);
        }
    }
    steps.run(
        &format!("record what was installed in {}", manifest.display()),
        || {
            fs::write(&manifest, listed.join("\n") + "\n")?;
            set_mode(&manifest, 0o644)
        },
    )?;

    if real_root && superuser && !args.no_systemctl && systemd_runs() {
        steps.run("run systemctl daemon-reload", || {
            command("systemctl", &["daemon-reload"])
        })?;
        steps.run("enable switchyard.service (not started)", || {
            command("systemctl", &["enable", "switchyard.service"])
        })?;
    } else {
        println!("systemctl not run (--root, --no-systemctl, not root, or no systemd here)");
    }
    if !args.dry_run {
        println!(
            "installed. Next: edit {CONFIG_FILE} (providers: settings/example.toml), then \
             `systemctl start switchyard` and `journalctl -u switchyard`"
        );
    }
    Ok(())
}

pub fn uninstall(args: UninstallArgs) -> anyhow::Result<()> {
    let steps = Steps {
        dry_run: args.dry_run,
    };
    let root = &args.root;
    let real_root = root == Path::new("/");
    let superuser = is_superuser();
    if real_root && !superuser && !args.dry_run {
        bail!("uninstalling from / needs root: run it with sudo, or use --dry-run");
    }
    let manifest = under(root, MANIFEST);
    let text = fs::read_to_string(&manifest).with_context(|| {
        format!(
            "nothing to uninstall: no {} (written by switchyard install)",
            manifest.display()
        )
    })?;
    let listed: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let systemctl = real_root && superuser && !args.no_systemctl && systemd_runs();
    if systemctl {
        steps.run("stop and disable switchyard.service", || {
            command("systemctl", &["disable", "--now", "switchyard.service"])
        })?;
    }
    // Files first, then directories (newest first), the data never.
    for line in listed.iter().rev() {
        let mut parts = line.split(' ');
        let path = parts.next().unwrap_or_default();
        if path.starts_with(DATA_DIR) || !path.starts_with('/') {
            continue;
        }
        let target = under(root, path);
        if target.is_dir() {
            continue;
        }
        let expected = parts.find_map(|part| part.strip_prefix("sha256="));
        if let (Some(expected), Ok(bytes)) = (expected, fs::read(&target))
            && digest(&bytes) != expected
        {
            println!(
                "keep {} (changed since install; remove it yourself)",
                target.display()
            );
            continue;
        }
        if target.exists() {
            steps.run(&format!("remove {}", target.display()), || {
                Ok(fs::remove_file(&target)?)
            })?;
        }
    }
    steps.run(&format!("remove {}", manifest.display()), || {
        Ok(fs::remove_file(&manifest)?)
    })?;
    for line in listed.iter().rev() {
        let path = line.split(' ').next().unwrap_or_default();
        let target = under(root, path);
        if path.starts_with(DATA_DIR) || !path.starts_with('/') || !target.is_dir() {
            continue;
        }
        let empty = fs::read_dir(&target)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if args.dry_run {
            println!(
                "would remove the directory {} if nothing else is left in it",
                target.display()
            );
        } else if empty {
            steps.run(
                &format!("remove the directory {}", target.display()),
                || Ok(fs::remove_dir(&target)?),
            )?;
        } else {
            println!(
                "keep {} (it holds files install did not make)",
                target.display()
            );
        }
    }
    if systemctl {
        steps.run("run systemctl daemon-reload", || {
            command("systemctl", &["daemon-reload"])
        })?;
    }
    println!(
        "kept the data directory {} (database, keys, usage journal) and the user that owns \
         it: remove them yourself (rm -r, userdel) only if you mean to lose the data",
        under(root, DATA_DIR).display()
    );
    Ok(())
}
