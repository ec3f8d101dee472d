//! Inbound TLS (`server.tls`, `http::tls`) on the real server, with
//! certificates made here (a CA and leaves from `rcgen`) and clients that
//! verify them against that CA: HTTPS with HTTP/1.1 and HTTP/2 by ALPN, HSTS
//! and the `Secure` session cookie, a certificate replaced on disk or
//! announced by SIGHUP served without a restart (told apart by the served
//! leaf's bytes), a bad new pair keeping the old one, and the one-line start
//! errors for a missing, unreadable or mismatched pair.

pub mod common;

use anyhow::{Context, bail, ensure};
use awc::http::{Method, StatusCode, Version};
use common::process::{BINARY, free_port};
use common::{MASTER_KEY, TestGateway};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::config::{Backend, TlsSettings};

/// Generous: the machine is shared and debug builds are slow.
const DEADLINE: Duration = Duration::from_secs(30);

/// A test certificate authority.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

impl Ca {
    fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "switchyard test CA");
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// A leaf for `localhost` and 127.0.0.1 with `serial`, signed with `key`.
    fn leaf(&self, key: &KeyPair, serial: u64) -> anyhow::Result<Leaf> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(key, &self.issuer)?;
        Ok(Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    fn client_config(&self, alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone())?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(config)
    }

    /// An HTTPS client trusting only this CA, offering `alpn`.
    fn client(&self, alpn: &[&[u8]]) -> anyhow::Result<awc::Client> {
        let connector = awc::Connector::new().rustls_0_23(Arc::new(self.client_config(alpn)?));
        Ok(awc::Client::builder()
            .connector(connector)
            .timeout(DEADLINE)
            .finish())
    }

    /// Completes a verified handshake with `addr` as `localhost`; returns
    /// the leaf the server sent and the ALPN protocol it chose.
    async fn handshake(&self, addr: SocketAddr) -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
        let config = Arc::new(self.client_config(&[b"h2", b"http/1.1"])?);
        // A blocking socket, off the test's thread (which also runs the
        // gateway's reloader).
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut connection =
                rustls::ClientConnection::new(config, ServerName::try_from("localhost")?)?;
            let mut socket = std::net::TcpStream::connect(addr)?;
            socket.set_read_timeout(Some(DEADLINE))?;
            socket.set_write_timeout(Some(DEADLINE))?;
            while connection.is_handshaking() {
                connection.complete_io(&mut socket)?;
            }
            let leaf = connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .context("the server sent no certificate")?
                .to_vec();
            Ok((leaf, connection.alpn_protocol().map(<[u8]>::to_vec)))
        })
        .await?
    }

    /// Waits until `addr` serves `leaf` (bounded).
    async fn wait_for_leaf(&self, addr: SocketAddr, leaf: &Leaf) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok((served, _)) = self.handshake(addr).await
                && served == leaf.der
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the new certificate was not served within {DEADLINE:?}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Leaf {
    pem: String,
    der: Vec<u8>,
    key_pem: String,
}

/// Where a test keeps its pair.
struct PairFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl PairFiles {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        })
    }

    fn write(&self, leaf: &Leaf) -> anyhow::Result<()> {
        std::fs::write(&self.cert, &leaf.pem)?;
        std::fs::write(&self.key, &leaf.key_pem)?;
        Ok(())
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert_file: self.cert.display().to_string(),
            key_file: self.key.display().to_string(),
        }
    }
}

/// A TLS gateway (SQLite: nothing here is about storage) whose `client`
/// and `url` speak HTTPS to it, offering `alpn`.
async fn tls_gateway(
    ca: &Ca,
    files: &PairFiles,
    alpn: &[&[u8]],
) -> anyhow::Result<(TestGateway, SocketAddr)> {
    let tls = files.settings();
    let mut gw = TestGateway::start(Backend::Sqlite, move |settings, _| {
        settings.server.tls = Some(tls);
    })
    .await?;
    let addr = gw.gateway()?.addr;
    gw.url = format!("https://localhost:{}", addr.port());
    gw.client = ca.client(alpn)?;
    Ok((gw, addr))
}

#[actix_rt::test]
async fn https_answers_over_http1_and_http2_with_hsts_and_a_secure_cookie() -> anyhow::Result<()> {
    let ca = Ca::new()?;
    let files = PairFiles::new()?;
    let leaf = ca.leaf(&KeyPair::generate()?, 1)?;
    files.write(&leaf)?;
    let (mut gw, addr) = tls_gateway(&ca, &files, &[b"h2", b"http/1.1"]).await?;

    // HTTP/2, chosen by ALPN, for the health check and a real completion.
    let (served, alpn) = ca.handshake(addr).await?;
    ensure!(
        served == leaf.der,
        "the configured leaf is not the one served"
    );
    ensure!(
        alpn.as_deref() == Some(b"h2".as_slice()),
        "ALPN chose {alpn:?}"
    );
    let response = gw
        .client
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("GET /healthz over h2: {error}"))?;
    ensure!(response.status() == StatusCode::OK);
    ensure!(
        response.version() == Version::HTTP_2,
        "{:?}",
        response.version()
    );
    ensure!(
        response
            .headers()
            .get("strict-transport-security")
            .and_then(|value| value.to_str().ok())
            == Some("max-age=31536000"),
        "no HSTS over TLS: {:?}",
        response.headers()
    );
    let token = {
        // The admin client speaks plain HTTP; create the token over HTTPS.
        let answer = gw
            .send(
                Method::POST,
                "/admin/tokens",
                &[
                    ("authorization", &format!("Bearer {MASTER_KEY}")),
                    ("content-type", "application/json"),
                ],
                Some(serde_json::to_vec(&json!({ "name": "tls" }))?),
            )
            .await?;
        ensure!(answer.status == StatusCode::CREATED || answer.status == StatusCode::OK);
        let body: serde_json::Value = serde_json::from_slice(&answer.body)?;
        body["token"].as_str().context("no token")?.to_owned()
    };
    let chat = gw
        .chat(
            &token,
            json!({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await?;
    ensure!(
        chat.status == StatusCode::OK,
        "chat over h2: {} {}",
        chat.status,
        String::from_utf8_lossy(&chat.body)
    );

    // The dashboard's session cookie is `Secure` when served over real TLS.
    let login = gw
        .send(
            Method::POST,
            "/auth/master",
            &[("content-type", "application/json")],
            Some(serde_json::to_vec(&json!({ "master_key": MASTER_KEY }))?),
        )
        .await?;
    ensure!(login.status == StatusCode::OK, "{}", login.status);
    let cookie = login
        .headers
        .get_all("set-cookie")
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("switchyard_session="))
        .context("no session cookie")?;
    ensure!(
        cookie
            .split(';')
            .any(|part| part.trim().eq_ignore_ascii_case("secure")),
        "{cookie}"
    );

    // HTTP/1.1 when the client offers only that.
    gw.client = ca.client(&[b"http/1.1"])?;
    let response = gw.get("/healthz", None).await?;
    ensure!(response.status == StatusCode::OK);
    let response = gw
        .client
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("GET /healthz over h1: {error}"))?;
    ensure!(
        response.version() == Version::HTTP_11,
        "{:?}",
        response.version()
    );

    // Plain HTTP on the TLS port is not served.
    let plain = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish()
        .get(format!("http://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await;
    ensure!(
        !plain.is_ok_and(|response| response.status() == StatusCode::OK),
        "plain HTTP was answered on the TLS listener"
    );
    gw.stop().await
}

#[actix_rt::test]
async fn a_replaced_certificate_is_served_without_a_restart() -> anyhow::Result<()> {
    let ca = Ca::new()?;
    let files = PairFiles::new()?;
    let first = ca.leaf(&KeyPair::generate()?, 1)?;
    files.write(&first)?;
    let (gw, addr) = tls_gateway(&ca, &files, &[b"h2", b"http/1.1"]).await?;
    ensure!(ca.handshake(addr).await?.0 == first.der);

    // A renewal: new key, new serial, written over the old files.
    let second = ca.leaf(&KeyPair::generate()?, 2)?;
    files.write(&second)?;
    ca.wait_for_leaf(addr, &second).await?;
    // Requests keep working on the new pair.
    let response = gw.get("/healthz", None).await?;
    ensure!(response.status == StatusCode::OK);
    gw.stop().await
}

/// The real binary in `dir` with `config`, its stderr in `dir/gateway.log`.
struct TlsProcess {
    child: Child,
    log: PathBuf,
}

impl TlsProcess {
    async fn start(dir: &Path, config: &Path, ca: &Ca, port: u16) -> anyhow::Result<Self> {
        let log = dir.join("gateway.log");
        let child = Command::new(BINARY)
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("SWITCHYARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()?;
        let mut process = Self { child, log };
        let client = ca.client(&[b"http/1.1"])?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "gateway exited during start ({status}):\n{}",
                    process.log()?
                );
            }
            if let Ok(response) = client
                .get(format!("https://localhost:{port}/healthz"))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(process);
            }
            if Instant::now() > deadline {
                bail!("gateway did not answer over HTTPS within {DEADLINE:?}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.log)?)
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    async fn wait_for_log(&self, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.log()?;
            if log.contains(needle) {
                return Ok(log);
            }
            if Instant::now() > deadline {
                bail!("no {needle:?} in the log within {DEADLINE:?}:\n{log}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TlsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_config(dir: &Path, port: u16, files: &PairFiles) -> anyhow::Result<PathBuf> {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n[logging]\nlevel = \"info\"\n",
            files.cert.display().to_string(),
            files.key.display().to_string(),
        ),
    )?;
    Ok(config)
}

#[actix_rt::test]
async fn sighup_reloads_the_pair_and_a_bad_new_pair_keeps_the_old_one() -> anyhow::Result<()> {
    let ca = Ca::new()?;
    let files = PairFiles::new()?;
    let key = KeyPair::generate()?;
    let first = ca.leaf(&key, 1)?;
    files.write(&first)?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = tls_config(dir.path(), port, &files)?;
    let gateway = TlsProcess::start(dir.path(), &config, &ca, port).await?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    ensure!(ca.handshake(addr).await?.0 == first.der);

    // A certificate whose key is not in the key file: refused, in one line,
    // and the old pair stays.
    let stranger = ca.leaf(&KeyPair::generate()?, 2)?;
    std::fs::write(&files.cert, &stranger.pem)?;
    let log = gateway.wait_for_log("tls.reload_refused").await?;
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("tls.reload_refused"))
        .collect();
    ensure!(refused.len() == 1, "{log}");
    ensure!(
        refused.iter().all(|line| line.contains("does not match")
            && line.contains("still serving the previous certificate")),
        "{log}"
    );
    ensure!(
        !log.contains("PRIVATE KEY"),
        "key material in the log: {log}"
    );
    ensure!(
        ca.handshake(addr).await?.0 == first.der,
        "the old pair was dropped"
    );

    // A good pair written so that the file watch cannot see it (same size,
    // same modification time): only SIGHUP makes it live.
    let stamp = std::fs::metadata(&files.cert)?;
    let mut serial = 3;
    let third = loop {
        let candidate = ca.leaf(&key, serial)?;
        if candidate.pem.len() as u64 == stamp.len() {
            break candidate;
        }
        serial += 1;
        ensure!(serial < 1000, "no same-size certificate found");
    };
    std::fs::write(&files.cert, &third.pem)?;
    std::fs::File::options()
        .write(true)
        .open(&files.cert)?
        .set_modified(stamp.modified()?)?;
    // Two poll periods with the watch blind to the change: still the first.
    let blind_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < blind_until {
        ensure!(
            ca.handshake(addr).await?.0 == first.der,
            "the file watch saw a change that kept size and time"
        );
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    gateway.signal("HUP")?;
    ca.wait_for_leaf(addr, &third).await?;
    gateway.wait_for_log("tls.reloaded").await?;
    // Still the same process, still serving.
    ensure!(
        gateway_alive(&gateway)?,
        "the gateway exited on SIGHUP:\n{}",
        gateway.log()?
    );
    Ok(())
}

fn gateway_alive(gateway: &TlsProcess) -> anyhow::Result<bool> {
    Ok(Command::new("kill")
        .args(["-0", &gateway.child.id().to_string()])
        .status()?
        .success())
}

/// Starts a gateway in-process with `tls`; returns the start error.
async fn start_error(tls: TlsSettings) -> anyhow::Result<String> {
    match TestGateway::start(Backend::Sqlite, move |settings, _| {
        settings.server.tls = Some(tls);
    })
    .await
    {
        Ok(gw) => {
            gw.stop().await?;
            bail!("the gateway started with a bad pair")
        }
        Err(error) => Ok(format!("{error:#}")),
    }
}

#[actix_rt::test]
async fn a_missing_unreadable_or_mismatched_pair_fails_the_start_in_one_line() -> anyhow::Result<()>
{
    let ca = Ca::new()?;
    let files = PairFiles::new()?;
    let leaf = ca.leaf(&KeyPair::generate()?, 1)?;
    files.write(&leaf)?;
    let dir = files.cert.parent().context("no parent")?.to_owned();
    let other_key = dir.join("other-key.pem");
    std::fs::write(&other_key, KeyPair::generate()?.serialize_pem())?;
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n")?;
    let missing = dir.join("missing.pem");
    let cases = [
        (
            missing.clone(),
            files.key.clone(),
            vec!["server.tls.cert_file", "missing.pem", "cannot read it"],
        ),
        (
            files.cert.clone(),
            missing.clone(),
            vec!["server.tls.key_file", "missing.pem", "cannot read it"],
        ),
        // A directory cannot be read as a file.
        (
            dir.clone(),
            files.key.clone(),
            vec!["server.tls.cert_file", "cannot read it"],
        ),
        (
            garbage.clone(),
            files.key.clone(),
            vec!["server.tls.cert_file", "contains no PEM certificate"],
        ),
        (
            files.cert.clone(),
            garbage.clone(),
            vec!["server.tls.key_file", "no PEM private key"],
        ),
        (
            files.cert.clone(),
            other_key.clone(),
            vec![
                "server.tls.key_file",
                "other-key.pem",
                "does not match the certificate",
            ],
        ),
    ];
    for (cert, key, says) in cases {
        let error = start_error(TlsSettings {
            cert_file: cert.display().to_string(),
            key_file: key.display().to_string(),
        })
        .await?;
        ensure!(!error.contains('\n'), "more than one line: {error}");
        for needle in says {
            ensure!(error.contains(needle), "{needle:?} not in {error:?}");
        }
    }

    // The binary prints it as its one error line and exits non-zero.
    let work = tempfile::tempdir()?;
    let port = free_port()?;
    let mismatched = PairFiles {
        _dir: tempfile::tempdir()?,
        cert: files.cert.clone(),
        key: other_key,
    };
    let config = tls_config(work.path(), port, &mismatched)?;
    let mut child = Command::new(BINARY)
        .current_dir(work.path())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("SWITCHYARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the binary started with a mismatched pair");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().context("no stderr")?, &mut stderr)?;
    ensure!(!status.success(), "{status}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("server.tls"))
        .collect();
    ensure!(
        lines.len() == 1 && lines[0].contains("does not match the certificate"),
        "{stderr}"
    );
    Ok(())
}
