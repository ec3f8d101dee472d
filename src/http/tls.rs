//! Inbound TLS (`server.tls`): the listener's rustls configuration and the
//! certificate reloader.
//!
//! Policy:
//! - rustls (the copy awc already brings, on ring): no OpenSSL to install.
//!   HTTP/2 and HTTP/1.1 are offered by ALPN (actix-web adds both).
//! - The certificate is not fixed in the `ServerConfig`: a [`CertResolver`]
//!   hands every handshake the current pair, behind a `RwLock` that is only
//!   written on a reload (a read per handshake costs nanoseconds; `arc-swap`
//!   would save nothing measurable and is not in the tree).
//! - At start a missing, unreadable, empty or mismatched pair (the key is
//!   not the certificate's) is a one-line error and the gateway does not
//!   start. Later, on SIGHUP or when either file's modification time or
//!   size changes (polled every second: two `stat` calls, no watcher
//!   thread, works on every filesystem and with editors that replace files),
//!   the pair is read again; a bad new pair keeps the old one and logs one
//!   warning line saying why, once per change.
//! - Key material is never logged; only file names and the certificate's
//!   SHA-256 fingerprint are.

use crate::config::TlsSettings;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use slog::{Logger, info, warn};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the files' modification times are compared.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The `Strict-Transport-Security` value sent on every answer over TLS:
/// one year, this host only (subdomains may be served by something else).
pub const HSTS: &str = "max-age=31536000";

/// Reads and checks the pair named by `tls`. The error is one line naming
/// the setting, the file and what is wrong with it.
pub fn load_pair(tls: &TlsSettings) -> Result<CertifiedKey, String> {
    let cert_pem = read("server.tls.cert_file", &tls.cert_file)?;
    let key_pem = read("server.tls.key_file", &tls.key_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            format!(
                "server.tls.cert_file {}: not a valid PEM certificate file ({error})",
                tls.cert_file
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls.cert_file {}: contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
            tls.cert_file
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| {
        format!(
            "server.tls.key_file {}: no PEM private key found ({error})",
            tls.key_file
        )
    })?;
    let provider = provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| {
            format!(
                "server.tls.key_file {}: unusable private key ({error})",
                tls.key_file
            )
        })?;
    let pair = CertifiedKey::new(chain, signing_key);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(format!(
                "server.tls.key_file {} does not match the certificate in server.tls.cert_file {}",
                tls.key_file, tls.cert_file
            ))
        }
        Err(error) => Err(format!(
            "server.tls.cert_file {}: unusable certificate ({error})",
            tls.cert_file
        )),
    }
}

fn read(setting: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("{setting} {path}: cannot read it: {error}"))
}

/// The process-wide rustls provider (ring; awc's build selects it too).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The SHA-256 of the leaf certificate, hex: what the logs name a pair by.
pub fn fingerprint(pair: &CertifiedKey) -> String {
    pair.cert
        .first()
        .map(|leaf| hex::encode(Sha256::digest(leaf.as_ref())))
        .unwrap_or_default()
}

/// Hands each handshake the current pair; [`CertResolver::replace`] swaps it.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    pub fn new(pair: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(pair)),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            // Only `replace` writes, and it cannot panic while holding the
            // lock; the value is whole either way.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, pair: CertifiedKey) {
        let pair = Arc::new(pair);
        match self.current.write() {
            Ok(mut guard) => *guard = pair,
            Err(poisoned) => *poisoned.into_inner() = pair,
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The listener's rustls configuration, serving whatever `resolver` holds.
/// actix-web adds the ALPN protocols (`h2`, `http/1.1`) when it binds.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, String> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("server.tls: {error}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}

/// What a change of either file looks like: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &str) -> Stamp {
    let meta = std::fs::metadata(Path::new(path)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reloads the pair on SIGHUP (when `on_sighup`) and when either file
/// changes, for the life of the process. Run it on the actix system.
pub async fn reload(tls: TlsSettings, resolver: Arc<CertResolver>, on_sighup: bool, log: Logger) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = if on_sighup {
        match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                warn!(log, "tls.sighup_unavailable"; "error" => %error);
                None
            }
        }
    } else {
        None
    };
    let mut seen = (stamp(&tls.cert_file), stamp(&tls.key_file));
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cause = match hangup.as_mut() {
            Some(hangup) => tokio::select! {
                _ = hangup.recv() => "sighup",
                _ = tick.tick() => "file_changed",
            },
            None => {
                tick.tick().await;
                "file_changed"
            }
        };
        let now = (stamp(&tls.cert_file), stamp(&tls.key_file));
        if cause == "file_changed" && now == seen {
            continue;
        }
        seen = now;
        match load_pair(&tls) {
            Ok(pair) => {
                let fingerprint = fingerprint(&pair);
                resolver.replace(pair);
                info!(log, "tls.reloaded"; "cause" => cause, "sha256" => fingerprint);
            }
            Err(why) => {
                warn!(log, "tls.reload_refused"; "cause" => cause,
                    "error" => format!("{why}; still serving the previous certificate"));
            }
        }
    }
}
