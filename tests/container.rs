//! The container (issue 13, item 3). Base images cannot be pulled on the CI
//! machine, so the image itself is not built here; what the image would run
//! is: this test reads `compose.yaml` and the `Dockerfile`, starts the real
//! binary the way the container would (the Dockerfile's ENTRYPOINT and CMD,
//! the compose service's environment with its `${VAR:-default}`s expanded,
//! the settings file its volume mounts, an empty working directory as the
//! data volume) with two changes, the PostgreSQL URL pointed at the local
//! test database and the port at a free one, and sees `/healthz` and
//! `/readyz` answer and the Dockerfile's HEALTHCHECK command pass (and fail
//! once the gateway is gone). docs/container.md says the same.

pub mod common;

use anyhow::{Context, bail, ensure};
use common::db::TestDb;
use common::process::{BINARY, free_port};
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard::config::Backend;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compose's variable expansion: `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}` from `vars` (unset: empty or the default).
fn expand(text: &str, vars: &BTreeMap<&str, &str>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').context("unclosed ${ in compose.yaml")?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-").or_else(|| inner.split_once('-')) {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        out.push_str(vars.get(name).copied().or(default).unwrap_or_default());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A JSON-array instruction of the Dockerfile (`HEALTHCHECK ... CMD [...]`,
/// `ENTRYPOINT [...]`, `CMD [...]`), continuation lines joined.
fn dockerfile_array(dockerfile: &str, instruction: &str) -> anyhow::Result<Vec<String>> {
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .rfind(|line| line.trim_start().starts_with(instruction))
        .with_context(|| format!("no {instruction} in the Dockerfile"))?;
    let array = line
        .get(line.find('[').context("not a JSON array")?..)
        .context("array")?;
    Ok(serde_json::from_str(array)?)
}

/// Kills the gateway when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the binary for `args` (the image's `switchyard ...`) with `env` only.
fn command(args: &[String], env: &BTreeMap<String, String>, dir: &Path) -> anyhow::Result<Command> {
    let (program, args) = args.split_first().context("empty command")?;
    ensure!(
        program == "switchyard",
        "the image runs {program:?}, not switchyard"
    );
    let mut command = Command::new(BINARY);
    command.args(args).current_dir(dir).env_clear();
    command.env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(env);
    Ok(command)
}

#[actix_rt::test]
async fn the_binary_serves_with_the_compose_environment() -> anyhow::Result<()> {
    let compose: Yaml =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join("compose.yaml"))?)?;
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile"))?;
    let service = &compose["services"]["switchyard"];
    let postgres = &compose["services"]["postgres"];

    // The shape compose needs: PostgreSQL healthy before the gateway starts.
    assert_eq!(
        service["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(postgres["healthcheck"]["test"].is_sequence());
    assert!(
        postgres["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:"))
    );
    let healthcheck: Vec<String> =
        serde_yaml_ng::from_value(service["healthcheck"]["test"].clone())?;
    let docker_healthcheck = dockerfile_array(&dockerfile, "HEALTHCHECK")?;
    assert_eq!(healthcheck.get(1..), Some(docker_healthcheck.as_slice()));
    ensure!(dockerfile.contains("VOLUME [\"/var/lib/switchyard\"]"));
    ensure!(dockerfile.lines().any(|l| l.starts_with("USER switchyard")));
    ensure!(dockerfile.contains("cargo build --release --locked"));

    // The environment, as compose would pass it (the operator's shell has
    // OPENAI_API_KEY set, POSTGRES_PASSWORD not).
    let vars = BTreeMap::from([("OPENAI_API_KEY", "sk-container-test-key")]);
    let mut env = BTreeMap::new();
    for (name, value) in service["environment"]
        .as_mapping()
        .context("environment is a map")?
    {
        let name = name.as_str().context("name")?.to_owned();
        let value = match value {
            Yaml::String(text) => expand(text, &vars)?,
            Yaml::Number(n) => n.to_string(),
            other => bail!("{name}: {other:?}"),
        };
        env.insert(name, value);
    }
    let url = env
        .get("SWITCHYARD__DATABASE__URL")
        .context("compose sets the database URL")?;
    assert_eq!(
        url, "postgres://switchyard:switchyard@postgres:5432/switchyard",
        "the default password expanded"
    );
    let db = TestDb::new(Backend::Postgres).await?;
    env.insert(
        "SWITCHYARD__DATABASE__URL".to_owned(),
        db.settings.url.clone(),
    );
    let listen = env
        .get("SWITCHYARD__SERVER__LISTEN")
        .context("compose sets the listen address")?
        .clone();
    let port = free_port()?;
    let (host, _) = listen.rsplit_once(':').context("host:port")?;
    env.insert(
        "SWITCHYARD__SERVER__LISTEN".to_owned(),
        format!("{host}:{port}"),
    );
    // The settings file: the volume that mounts SWITCHYARD_CONFIG.
    let config = env
        .get("SWITCHYARD_CONFIG")
        .context("SWITCHYARD_CONFIG")?
        .clone();
    let volumes: Vec<String> = serde_yaml_ng::from_value(service["volumes"].clone())?;
    let mounted = volumes
        .iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let (host, inside) = (parts.next()?, parts.next()?);
            (inside == config).then(|| repo().join(host))
        })
        .context("no volume mounts the settings file")?;
    ensure!(mounted.is_file(), "{} is missing", mounted.display());
    env.insert(
        "SWITCHYARD_CONFIG".to_owned(),
        mounted.to_str().context("utf-8")?.to_owned(),
    );

    // The image's command, in an empty data directory (the volume).
    let volume = tempfile::tempdir()?;
    let mut args = dockerfile_array(&dockerfile, "ENTRYPOINT")?;
    args.extend(dockerfile_array(&dockerfile, "CMD")?);
    let log = volume.path().join("gateway.log");
    let child = command(&args, &env, volume.path())?
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .spawn()?;
    let mut gateway = Running(child);

    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = gateway.0.try_wait()? {
            bail!(
                "the gateway exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "/healthz did not answer within 60 s"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("/readyz: {e}"))?;
    let body: Value = ready.json().await?;
    assert_eq!(ready.status().as_u16(), 200, "{body}");
    assert_eq!(body["usable_keys"], 1, "{body}");
    // The generated files went into the volume.
    assert!(volume.path().join("data/master.key").is_file());
    assert!(volume.path().join("data/secret.key").is_file());

    // The HEALTHCHECK command passes while the gateway runs...
    let health = dockerfile_array(&dockerfile, "HEALTHCHECK")?;
    let output = command(&health, &env, volume.path())?.output()?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // ...and fails, with one line, once it is gone.
    let _ = gateway.0.kill();
    let _ = gateway.0.wait();
    let output = command(&health, &env, volume.path())?.output()?;
    common::cli::fails_saying(&output, &["/healthz"])?;
    Ok(())
}
