//! Encryption of secrets at rest (provider API keys).
//!
//! AES-256-GCM with a random 96-bit nonce per secret. The stored form is
//! `v1:` followed by base64url (no padding) of `nonce ‖ ciphertext ‖ tag`; the
//! version prefix leaves room for a wrapped data key later. The key is, for
//! now, SHA-256 of the configured master secret.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const PREFIX_V1: &str = "v1:";
const NONCE_LEN: usize = 12;

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
}

/// Encrypts and decrypts secrets with a key derived from the master secret.
#[derive(Clone)]
pub struct SecretCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher(..)")
    }
}

impl SecretCipher {
    /// A cipher keyed by SHA-256 of `master`.
    pub fn new(master: &str) -> Self {
        let digest = Sha256::digest(master.as_bytes());
        let key = Key::<Aes256Gcm>::from_slice(digest.as_slice());
        SecretCipher {
            cipher: Aes256Gcm::new(key),
        }
    }

    /// Encrypts `plaintext` with a fresh random nonce.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
            .map_err(|_| CryptoError::Encrypt)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX_V1}{}", URL_SAFE_NO_PAD.encode(blob)))
    }

    /// Decrypts what [`SecretCipher::encrypt`] produced.
    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let encoded = stored
            .strip_prefix(PREFIX_V1)
            .ok_or(CryptoError::Malformed)?;
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Decrypt)
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
        assert_eq!(cipher.decrypt("v2:abc"), Err(CryptoError::Malformed));
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
}
