//! Admin authentication: Ed25519 admin keys, the signed login message and
//! session tokens (docs/admin.md).
//!
//! - Keys are newtypes over ed25519-dalek's, with one text form each:
//!   base64url without padding of the raw bytes (32 for a public key, 64 for
//!   a signature). A private key lives in a PKCS#8 PEM file (what
//!   `openssl genpkey -algorithm ed25519` writes, and what the gateway writes
//!   to `admin.key_file` on first start).
//! - A key's fingerprint is `SHA256:` and standard base64 without padding of
//!   SHA-256 of the 32 raw public-key bytes (OpenSSH's notation; OpenSSH
//!   hashes its own wire encoding, so the values differ from `ssh-keygen -l`).
//! - Signatures are checked with `verify_strict` (no small-order keys or R,
//!   canonical S) over [`login_message`], which binds the deployment, the key,
//!   the nonce and the challenge's expiry, behind a version tag.
//! - Session tokens are `sya-` and 43 base64url characters (256 random bits);
//!   only their SHA-256 is stored.

pub mod bootstrap;
pub mod role;
pub mod session;

pub use role::Role;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// First line of every signed login message; a new format gets a new tag.
pub const LOGIN_MESSAGE_TAG: &str = "switchyard-admin-login-v1";
/// Prefix of admin session tokens (gateway tokens start with `sy-`).
pub const SESSION_TOKEN_PREFIX: &str = "sya-";
/// Characters of a session token kept in clear for display.
const SESSION_DISPLAY_CHARS: usize = 12;

/// Why a key, signature or nonce was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("`public_key` must be base64url of a 32-byte Ed25519 public key")]
    PublicKey,
    #[error("`public_key` is a weak (small-order) Ed25519 point")]
    WeakPublicKey,
    #[error("`signature` must be base64url of a 64-byte Ed25519 signature")]
    Signature,
    #[error("`nonce` must be the base64url nonce of a challenge")]
    Nonce,
    #[error("not an Ed25519 private key in PKCS#8 PEM form")]
    PrivateKeyFile,
    #[error("not an Ed25519 public key (base64url of 32 bytes, or a PEM public key)")]
    PublicKeyFile,
}

/// base64url, tolerating padding (some tools add it).
fn decode_b64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

/// An admin's Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminPublicKey(VerifyingKey);

impl AdminPublicKey {
    /// Parses the API's text form (base64url of 32 bytes). Small-order keys,
    /// which `verify_strict` would refuse anyway, are refused here.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_b64url(text).ok_or(KeyError::PublicKey)?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::PublicKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::PublicKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(Self(key))
    }

    /// Parses either the text form or a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn parse_text_or_pem(text: &str) -> Result<Self, KeyError> {
        if text.contains("-----BEGIN") {
            let key = VerifyingKey::from_public_key_pem(text.trim())
                .map_err(|_| KeyError::PublicKeyFile)?;
            return Self::parse(&URL_SAFE_NO_PAD.encode(key.as_bytes()));
        }
        Self::parse(text)
    }

    /// The canonical text form: base64url without padding.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// `SHA256:` and base64 (no padding) of SHA-256 of the raw key.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(self.0.as_bytes()))
        )
    }

    /// Strict Ed25519 verification of `signature` over `message`.
    pub fn verify(&self, message: &str, signature: &AdminSignature) -> bool {
        self.0
            .verify_strict(message.as_bytes(), &signature.0)
            .is_ok()
    }
}

/// An Ed25519 signature in the API's text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSignature(Signature);

impl AdminSignature {
    /// Parses base64url of 64 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_b64url(text).ok_or(KeyError::Signature)?;
        Signature::from_slice(&bytes)
            .map(Self)
            .map_err(|_| KeyError::Signature)
    }

    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_bytes())
    }
}

/// An admin's private key (the CLI's `--key FILE`, the bootstrap key).
pub struct AdminSigningKey(SigningKey);

impl std::fmt::Debug for AdminSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminSigningKey({})", self.public_key().fingerprint())
    }
}

impl AdminSigningKey {
    /// A new key from 32 bytes of the OS-seeded CSPRNG.
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(Self)
            .map_err(|_| KeyError::PrivateKeyFile)
    }

    /// The PKCS#8 v1 PEM form (RFC 8410 `OneAsymmetricKey` without the
    /// public key): what `openssl genpkey` writes and what OpenSSL 3 and
    /// Python's `cryptography` read. ed25519-dalek's own encoding is v2
    /// (public key embedded), which those tools refuse; v2 files are still
    /// read by [`AdminSigningKey::from_pem`].
    pub fn to_pem(&self) -> Result<String, KeyError> {
        KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.as_str().to_owned())
        .map_err(|_| KeyError::PrivateKeyFile)
    }

    pub fn public_key(&self) -> AdminPublicKey {
        AdminPublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &str) -> AdminSignature {
        AdminSignature(self.0.sign(message.as_bytes()))
    }
}

/// The exact bytes an admin signs to answer a challenge: the version tag,
/// then the deployment's id, the public key (text form), the nonce and the
/// challenge's expiry in unix milliseconds, one per line, no trailing newline.
pub fn login_message(server_id: &str, public_key: &str, nonce: &str, expires_at_ms: i64) -> String {
    format!("{LOGIN_MESSAGE_TAG}\n{server_id}\n{public_key}\n{nonce}\n{expires_at_ms}")
}

/// 32 random bytes, base64url (43 characters).
pub fn generate_nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Checks the shape of a nonce (what [`generate_nonce`] makes).
pub fn parse_nonce(text: &str) -> Result<String, KeyError> {
    let text = text.trim();
    match URL_SAFE_NO_PAD.decode(text) {
        Ok(bytes) if bytes.len() == 32 => Ok(text.to_owned()),
        _ => Err(KeyError::Nonce),
    }
}

/// A fresh session token and what is stored of it.
pub struct NewSessionToken {
    pub token: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub display_prefix: String,
}

pub fn generate_session_token() -> NewSessionToken {
    let token = format!(
        "{SESSION_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    NewSessionToken {
        hash: crate::tokens::hash(&token),
        display_prefix: token.chars().take(SESSION_DISPLAY_CHARS).collect(),
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() -> Result<(), KeyError> {
        let key = AdminSigningKey::generate();
        let public = key.public_key();
        assert_eq!(AdminPublicKey::parse(&public.to_text())?, public);
        assert_eq!(public.to_text().len(), 43);
        let pem = key.to_pem()?;
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(AdminSigningKey::from_pem(&pem)?.public_key(), public);
        let fingerprint = public.fingerprint();
        assert!(fingerprint.starts_with("SHA256:") && fingerprint.len() == 7 + 43);
        Ok(())
    }

    #[test]
    fn an_openssl_key_file_is_read() -> Result<(), KeyError> {
        // `openssl genpkey -algorithm ed25519` (RFC 8410's test key).
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let key = AdminSigningKey::from_pem(pem)?;
        assert_eq!(key.to_pem()?, pem, "written as openssl writes it (v1)");
        let spki = "-----BEGIN PUBLIC KEY-----\n\
                    MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
                    -----END PUBLIC KEY-----\n";
        assert_eq!(AdminPublicKey::parse_text_or_pem(spki)?, key.public_key());
        Ok(())
    }

    /// Files written before the v1 fix (v2, public key embedded) still load.
    #[test]
    fn a_pkcs8_v2_key_file_is_still_read() -> Result<(), KeyError> {
        let key = AdminSigningKey::generate();
        let v2 = key
            .0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::PrivateKeyFile)?;
        assert_ne!(v2.as_str(), key.to_pem()?);
        assert_eq!(
            AdminSigningKey::from_pem(&v2)?.public_key(),
            key.public_key()
        );
        Ok(())
    }

    #[test]
    fn signatures_verify_only_over_the_exact_message() -> Result<(), KeyError> {
        let key = AdminSigningKey::generate();
        let public = key.public_key();
        let nonce = generate_nonce();
        let message = login_message("server-a", &public.to_text(), &nonce, 1_000);
        let signature = AdminSignature::parse(&key.sign(&message).to_text())?;
        assert!(public.verify(&message, &signature));
        for other in [
            login_message("server-b", &public.to_text(), &nonce, 1_000),
            login_message("server-a", &public.to_text(), &generate_nonce(), 1_000),
            login_message("server-a", &public.to_text(), &nonce, 1_001),
        ] {
            assert!(!public.verify(&other, &signature), "{other}");
        }
        let stranger = AdminSigningKey::generate().public_key();
        assert!(!stranger.verify(&message, &signature));
        Ok(())
    }

    #[test]
    fn malformed_inputs_are_refused() {
        assert_eq!(AdminPublicKey::parse("!!"), Err(KeyError::PublicKey));
        assert_eq!(AdminPublicKey::parse("AAAA"), Err(KeyError::PublicKey));
        // The identity point: valid encoding, small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            AdminPublicKey::parse(&URL_SAFE_NO_PAD.encode(identity)),
            Err(KeyError::WeakPublicKey)
        );
        assert_eq!(AdminSignature::parse("AAAA"), Err(KeyError::Signature));
        assert_eq!(parse_nonce("short"), Err(KeyError::Nonce));
        assert!(parse_nonce(&generate_nonce()).is_ok());
        assert!(AdminSigningKey::from_pem("not a key").is_err());
    }

    #[test]
    fn session_tokens_are_prefixed_and_hashed() {
        let token = generate_session_token();
        assert!(token.token.starts_with("sya-") && token.token.len() == 4 + 43);
        assert_eq!(token.hash, crate::tokens::hash(&token.token));
        assert!(token.token.starts_with(&token.display_prefix));
    }
}
