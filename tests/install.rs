//! `switchyard install` / `uninstall` (issue 13, item 2) into a temporary
//! root: the paths, modes and (as root) owners, a unit that
//! `systemd-analyze verify` accepts without warnings (it runs without a
//! running systemd; `--man=no --generators=no` keep it off the host's man
//! pages and generators), and an uninstall that removes what install made
//! and keeps the data directory.

pub mod common;

use anyhow::{Context, ensure};
use common::cli::{fails_saying, stdout};
use common::process::{BINARY, run_cli};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

const UNIT: &str = "etc/systemd/system/switchyard.service";
const SETTINGS: &str = "etc/switchyard/switchyard.toml";
const DATA: &str = "var/lib/switchyard";
const COPIED: &str = "usr/local/bin/switchyard";
const MANIFEST: &str = "etc/switchyard/.install-manifest";

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .permissions()
        .mode()
        & 0o7777)
}

fn superuser() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str, user: &str) -> anyhow::Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Runs `switchyard ARGS`, which must succeed; returns its stdout.
fn ok(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = run_cli(dir, args, &[])?;
    ensure!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout(&output))
}

/// Every file and directory under `root`, relative, sorted.
fn tree(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            out.push(
                path.strip_prefix(root)?
                    .to_str()
                    .context("utf-8")?
                    .to_owned(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn install_writes_a_hardened_unit_and_uninstall_keeps_the_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    std::fs::create_dir(&root)?;
    let root_arg = root.to_str().context("utf-8")?;
    // As root, an existing unprivileged user shows the owners (no user is
    // created: --root never does); otherwise owners are left alone.
    let user = if superuser() { "daemon" } else { "switchyard" };

    // A dry run prints every action and changes nothing.
    let printed = ok(
        dir.path(),
        &["install", "--root", root_arg, "--user", user, "--dry-run"],
    )?;
    for action in [
        "would create the data directory",
        "would write the settings file",
        "would copy",
        "would write the unit",
        "would record what was installed",
    ] {
        ensure!(printed.contains(action), "{action:?} not in {printed}");
    }
    assert!(tree(&root)?.is_empty(), "a dry run wrote files");

    // The install.
    let printed = ok(dir.path(), &["install", "--root", root_arg, "--user", user])?;
    ensure!(printed.contains("systemctl not run"), "{printed}");
    assert_eq!(mode(&root.join(DATA))?, 0o750);
    assert_eq!(mode(&root.join(SETTINGS))?, 0o640);
    assert_eq!(mode(&root.join("etc/switchyard"))?, 0o755);
    assert_eq!(mode(&root.join(UNIT))?, 0o644);
    assert_eq!(mode(&root.join(COPIED))?, 0o755);
    assert_eq!(
        std::fs::read(root.join(COPIED))?,
        std::fs::read(BINARY)?,
        "the binary is copied"
    );
    if superuser() {
        let (uid, gid) = (id_of("-u", user)?, id_of("-g", user)?);
        let data = std::fs::metadata(root.join(DATA))?;
        assert_eq!(
            (data.uid(), data.gid()),
            (uid, gid),
            "the data dir is the user's"
        );
        let settings = std::fs::metadata(root.join(SETTINGS))?;
        assert_eq!(
            (settings.uid(), settings.gid()),
            (0, gid),
            "settings: root's, readable by the group"
        );
    }

    // The unit: the user, the data and settings directories, the hardening.
    let unit = std::fs::read_to_string(root.join(UNIT))?;
    for line in [
        format!("User={user}"),
        format!("Group={user}"),
        "ExecStart=/usr/local/bin/switchyard --config /etc/switchyard/switchyard.toml serve"
            .to_owned(),
        "StateDirectory=switchyard".to_owned(),
        "ConfigurationDirectory=switchyard".to_owned(),
        "ReadWritePaths=/var/lib/switchyard".to_owned(),
        "Restart=on-failure".to_owned(),
        "NoNewPrivileges=yes".to_owned(),
        "ProtectSystem=strict".to_owned(),
        "ProtectHome=yes".to_owned(),
        "PrivateTmp=yes".to_owned(),
        "PrivateDevices=yes".to_owned(),
        "ProtectKernelTunables=yes".to_owned(),
        "ProtectKernelModules=yes".to_owned(),
        "ProtectKernelLogs=yes".to_owned(),
        "ProtectControlGroups=yes".to_owned(),
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX".to_owned(),
        "CapabilityBoundingSet=".to_owned(),
        "LockPersonality=yes".to_owned(),
        "MemoryDenyWriteExecute=yes".to_owned(),
        "WantedBy=multi-user.target".to_owned(),
    ] {
        ensure!(unit.lines().any(|l| l == line), "no {line:?} in\n{unit}");
    }

    // systemd-analyze checks the unit, ExecStart's binary included, so the
    // unit checked is a second install pointing at this binary
    // (--link-binary); it differs from the first in ExecStart only.
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked)?;
    let linked_arg = linked.to_str().context("utf-8")?;
    let printed = ok(
        dir.path(),
        &[
            "install",
            "--root",
            linked_arg,
            "--user",
            user,
            "--link-binary",
        ],
    )?;
    ensure!(printed.contains("not copied"), "{printed}");
    assert!(!linked.join(COPIED).exists());
    let linked_unit = std::fs::read_to_string(linked.join(UNIT))?;
    assert_eq!(
        linked_unit.replace(BINARY, "/usr/local/bin/switchyard"),
        unit
    );
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no"])
        .arg(linked.join(UNIT))
        .output()
        .context("systemd-analyze (Debian package systemd) is required")?;
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned()
        + &String::from_utf8_lossy(&verify.stdout);
    ensure!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {} {complaints}",
        verify.status
    );

    // The settings file is valid and keeps everything in the data directory.
    let settings = switchyard::config::Settings::load(Some(&root.join(SETTINGS)))?;
    assert_eq!(
        settings.database.url,
        "sqlite:///var/lib/switchyard/switchyard.db"
    );
    assert_eq!(
        settings.admin.key_file,
        "/var/lib/switchyard/admin_ed25519.key"
    );
    assert_eq!(
        settings.usage.journal_dir,
        "/var/lib/switchyard/usage-journal"
    );

    // The service's data, made by its first start.
    std::fs::write(root.join(DATA).join("switchyard.db"), b"data")?;

    // Installing again keeps the settings file.
    let printed = ok(dir.path(), &["install", "--root", root_arg, "--user", user])?;
    ensure!(
        printed.contains("keep the existing settings file"),
        "{printed}"
    );

    // A dry uninstall changes nothing.
    let before = tree(&root)?;
    let printed = ok(dir.path(), &["uninstall", "--root", root_arg, "--dry-run"])?;
    ensure!(printed.contains("would remove"), "{printed}");
    assert_eq!(tree(&root)?, before);

    // Uninstall: what install made goes, the data stays, and it says so.
    let printed = ok(dir.path(), &["uninstall", "--root", root_arg])?;
    ensure!(printed.contains("kept the data directory"), "{printed}");
    assert_eq!(
        tree(&root)?,
        [
            "etc",
            "etc/systemd",
            "etc/systemd/system",
            "usr",
            "usr/local",
            "usr/local/bin",
            "var",
            "var/lib",
            "var/lib/switchyard",
            "var/lib/switchyard/switchyard.db",
        ]
    );
    assert_eq!(
        std::fs::read(root.join(DATA).join("switchyard.db"))?,
        b"data"
    );
    assert!(!root.join(MANIFEST).exists());

    // A settings file changed since install is kept.
    let printed = ok(
        dir.path(),
        &["install", "--root", linked_arg, "--user", user],
    )?;
    ensure!(printed.contains("keep the existing"), "{printed}");
    std::fs::write(
        linked.join(SETTINGS),
        "[server]\nlisten = \"0.0.0.0:9000\"\n",
    )?;
    let printed = ok(dir.path(), &["uninstall", "--root", linked_arg])?;
    ensure!(printed.contains("changed since install"), "{printed}");
    assert!(linked.join(SETTINGS).exists());
    assert!(!linked.join(UNIT).exists());

    // Nothing installed, a bad address: one line each.
    let output = run_cli(dir.path(), &["uninstall", "--root", root_arg], &[])?;
    fails_saying(&output, &["nothing to uninstall"])?;
    let output = run_cli(
        dir.path(),
        &["install", "--root", root_arg, "--listen", "localhost"],
        &[],
    )?;
    fails_saying(&output, &["--listen", "host:port"])?;
    Ok(())
}
