//! Encryption of secrets at rest (provider API keys, provider headers).
//!
//! Envelope encryption (docs/admin.md, "Secrets at rest"):
//! - A random 256-bit **data key** encrypts the secrets. It is stored in the
//!   database (`system_values.data_key`) wrapped with AES-256-GCM under the
//!   **key-encryption key**, SHA-256 of a domain tag and the master secret
//!   (`security.secret_key`). The wrapped form is `k1:` and base64url (no
//!   padding) of `nonce ‖ ciphertext ‖ tag`.
//! - A secret is stored as `v2:` and base64url of `nonce ‖ ciphertext ‖ tag`
//!   under the data key (AES-256-GCM, random 96-bit nonce, a fixed AAD).
//! - `v1:` is what earlier releases wrote: the same layout under SHA-256 of
//!   the master secret itself. It is still read, and rewritten as `v2:` at
//!   start (`crate::secrets`).
//!
//! Rotating the master secret re-wraps the data key only; no secret is
//! re-encrypted, and running servers, which hold the data key, never notice.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const PREFIX_V1: &str = "v1:";
const PREFIX_V2: &str = "v2:";
const PREFIX_WRAPPED: &str = "k1:";
const NONCE_LEN: usize = 12;
const DATA_KEY_LEN: usize = 32;
/// Domain separation: the key-encryption key is not the v1 key, and a
/// wrapped data key cannot pass for a secret or the reverse.
const KEK_TAG: &[u8] = b"switchyard-key-encryption-key-v1\0";
const WRAP_AAD: &[u8] = b"switchyard-data-key-v1";
const SECRET_AAD: &[u8] = b"switchyard-secret-v2";

/// Why a secret could not be encrypted or decrypted. Deliberately without
/// detail: a failed decryption says nothing about the key or the plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Not a stored secret of a known version (bad prefix, base64 or length).
    #[error("malformed encrypted secret")]
    Malformed,
    /// Wrong key, or the stored secret was altered.
    #[error("secret cannot be decrypted (wrong master key or altered data)")]
    Decrypt,
    /// The cipher refused to encrypt (only on absurd input sizes).
    #[error("secret cannot be encrypted")]
    Encrypt,
    /// The master secret does not unwrap the stored data key.
    #[error(
        "security.secret_key does not unlock the stored data key: it is not the current master \
         secret (was it rotated with `switchyard admin rotate-secret`?)"
    )]
    WrongMasterSecret,
}

fn seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Result<String, CryptoError> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce_bytes),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    blob.extend_from_slice(&nonce_bytes);
    blob.extend_from_slice(&ciphertext);
    Ok(URL_SAFE_NO_PAD.encode(blob))
}

fn open(cipher: &Aes256Gcm, aad: &[u8], encoded: &str) -> Result<Vec<u8>, CryptoError> {
    let blob = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| CryptoError::Malformed)?;
    if blob.len() < NONCE_LEN {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

fn aes_key(bytes: &[u8]) -> Aes256Gcm {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes))
}

/// The key-encryption key of a master secret.
fn key_encryption_key(master: &str) -> Aes256Gcm {
    let mut hasher = Sha256::new();
    hasher.update(KEK_TAG);
    hasher.update(master.as_bytes());
    aes_key(hasher.finalize().as_slice())
}

/// The 256-bit key that encrypts secrets (`v2:`). Never stored unwrapped.
#[derive(Clone)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key (the OS-seeded CSPRNG).
    pub fn generate() -> Self {
        DataKey(rand::random())
    }

    /// The stored form: this key encrypted under the master secret.
    pub fn wrap(&self, master: &str) -> Result<String, CryptoError> {
        Ok(format!(
            "{PREFIX_WRAPPED}{}",
            seal(&key_encryption_key(master), WRAP_AAD, &self.0)?
        ))
    }

    /// Recovers the key from its stored form; a wrong master secret is
    /// [`CryptoError::WrongMasterSecret`].
    pub fn unwrap(wrapped: &str, master: &str) -> Result<Self, CryptoError> {
        let encoded = wrapped
            .strip_prefix(PREFIX_WRAPPED)
            .ok_or(CryptoError::Malformed)?;
        let bytes = match open(&key_encryption_key(master), WRAP_AAD, encoded) {
            Err(CryptoError::Decrypt) => return Err(CryptoError::WrongMasterSecret),
            other => other?,
        };
        <[u8; DATA_KEY_LEN]>::try_from(bytes.as_slice())
            .map(DataKey)
            .map_err(|_| CryptoError::Malformed)
    }
}

/// Encrypts and decrypts stored secrets.
#[derive(Clone)]
pub struct SecretCipher {
    /// The data key: encrypts (`v2:`) and decrypts `v2:`. `None` for a
    /// v1-only cipher.
    data: Option<Aes256Gcm>,
    /// SHA-256 of the master secret: decrypts `v1:` (and encrypts it when
    /// there is no data key).
    legacy: Aes256Gcm,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher(..)")
    }
}

impl SecretCipher {
    /// A v1-only cipher, keyed by SHA-256 of `master`: what earlier releases
    /// used. It writes `v1:`, which the gateway still reads and upgrades at
    /// start; tooling and tests use it to write rows as those releases did.
    pub fn new(master: &str) -> Self {
        SecretCipher {
            data: None,
            legacy: aes_key(Sha256::digest(master.as_bytes()).as_slice()),
        }
    }

    /// The gateway's cipher: writes `v2:` under `data_key`, reads `v2:` and
    /// the `v1:` of `master`.
    pub fn with_data_key(data_key: &DataKey, master: &str) -> Self {
        SecretCipher {
            data: Some(aes_key(&data_key.0)),
            ..Self::new(master)
        }
    }

    /// Encrypts `plaintext` with a fresh random nonce.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        match &self.data {
            Some(data) => Ok(format!(
                "{PREFIX_V2}{}",
                seal(data, SECRET_AAD, plaintext.as_bytes())?
            )),
            None => Ok(format!(
                "{PREFIX_V1}{}",
                seal(&self.legacy, b"", plaintext.as_bytes())?
            )),
        }
    }

    /// Decrypts what [`SecretCipher::encrypt`] produced, in either version.
    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let plaintext = if let Some(encoded) = stored.strip_prefix(PREFIX_V2) {
            let data = self.data.as_ref().ok_or(CryptoError::Decrypt)?;
            open(data, SECRET_AAD, encoded)?
        } else if let Some(encoded) = stored.strip_prefix(PREFIX_V1) {
            open(&self.legacy, b"", encoded)?
        } else {
            return Err(CryptoError::Malformed);
        };
        String::from_utf8(plaintext).map_err(|_| CryptoError::Decrypt)
    }

    /// Whether `stored` is in the form this cipher writes (else it is worth
    /// re-encrypting).
    pub fn is_current(&self, stored: &str) -> bool {
        match self.data {
            Some(_) => stored.starts_with(PREFIX_V2),
            None => stored.starts_with(PREFIX_V1),
        }
    }
}

/// Hex SHA-256 of a secret, to recognise the same secret without storing it.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() -> Result<(), CryptoError> {
        let cipher = SecretCipher::new("master secret");
        let stored = cipher.encrypt("sk-live-1234567890")?;
        assert!(stored.starts_with("v1:"));
        assert!(!stored.contains("sk-live"));
        assert_eq!(cipher.decrypt(&stored)?, "sk-live-1234567890");
        assert_eq!(cipher.decrypt(&cipher.encrypt("")?)?, "");
        Ok(())
    }

    #[test]
    fn wrong_key_fails() -> Result<(), CryptoError> {
        let stored = SecretCipher::new("one").encrypt("secret")?;
        assert_eq!(
            SecretCipher::new("two").decrypt(&stored),
            Err(CryptoError::Decrypt)
        );
        Ok(())
    }

    #[test]
    fn tampered_fails() -> Result<(), CryptoError> {
        let cipher = SecretCipher::new("master");
        let stored = cipher.encrypt("secret")?;
        let mut blob = URL_SAFE_NO_PAD
            .decode(stored.trim_start_matches(PREFIX_V1))
            .map_err(|_| CryptoError::Malformed)?;
        if let Some(byte) = blob.last_mut() {
            *byte ^= 1;
        }
        let tampered = format!("{PREFIX_V1}{}", URL_SAFE_NO_PAD.encode(blob));
        assert_eq!(cipher.decrypt(&tampered), Err(CryptoError::Decrypt));
        assert_eq!(cipher.decrypt("v3:abc"), Err(CryptoError::Malformed));
        assert_eq!(cipher.decrypt("v1:!!"), Err(CryptoError::Malformed));
        assert_eq!(cipher.decrypt("v1:AAAA"), Err(CryptoError::Malformed));
        Ok(())
    }

    #[test]
    fn encryptions_differ() -> Result<(), CryptoError> {
        let cipher = SecretCipher::new("master");
        assert_ne!(cipher.encrypt("secret")?, cipher.encrypt("secret")?);
        Ok(())
    }

    #[test]
    fn fingerprint_is_hex_sha256() {
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn envelope_roundtrip_and_v1_still_reads() -> Result<(), CryptoError> {
        let data_key = DataKey::generate();
        let cipher = SecretCipher::with_data_key(&data_key, "master");
        let stored = cipher.encrypt("sk-live-1234567890")?;
        assert!(stored.starts_with("v2:") && cipher.is_current(&stored));
        assert_eq!(cipher.decrypt(&stored)?, "sk-live-1234567890");
        // Rows written by the v1 cipher of the same master secret.
        let old = SecretCipher::new("master").encrypt("sk-old")?;
        assert!(!cipher.is_current(&old));
        assert_eq!(cipher.decrypt(&old)?, "sk-old");
        // A v1-only cipher cannot read v2.
        assert_eq!(
            SecretCipher::new("master").decrypt(&stored),
            Err(CryptoError::Decrypt)
        );
        // Another data key cannot either, whatever the master secret.
        let other = SecretCipher::with_data_key(&DataKey::generate(), "master");
        assert_eq!(other.decrypt(&stored), Err(CryptoError::Decrypt));
        Ok(())
    }

    #[test]
    fn rewrapping_keeps_the_data_key() -> Result<(), CryptoError> {
        let data_key = DataKey::generate();
        let stored = SecretCipher::with_data_key(&data_key, "old").encrypt("sk-1")?;
        let wrapped_old = data_key.wrap("old")?;
        assert!(wrapped_old.starts_with("k1:"));
        let rewrapped = DataKey::unwrap(&wrapped_old, "old")?.wrap("new")?;
        assert_eq!(
            DataKey::unwrap(&rewrapped, "old").map(|_| ()),
            Err(CryptoError::WrongMasterSecret)
        );
        let unwrapped = DataKey::unwrap(&rewrapped, "new")?;
        assert_eq!(
            SecretCipher::with_data_key(&unwrapped, "new").decrypt(&stored)?,
            "sk-1"
        );
        assert_eq!(
            DataKey::unwrap("k1:!!", "new").map(|_| ()),
            Err(CryptoError::Malformed)
        );
        assert_eq!(
            DataKey::unwrap("v2:AAAA", "new").map(|_| ()),
            Err(CryptoError::Malformed)
        );
        // A secret is not a wrapped key, even under the same key material.
        let secret_as_key = stored.replacen("v2:", "k1:", 1);
        assert!(DataKey::unwrap(&secret_as_key, "old").is_err());
        Ok(())
    }
}
