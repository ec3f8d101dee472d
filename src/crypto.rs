//! Encryption of secrets at rest (provider API keys, provider headers).
//!
//! Envelope encryption (docs/admin.md, "Secrets at rest"):
//! - A random 256-bit **data key** encrypts the secrets. It is stored in the
//!   database (`system_values.data_key`) wrapped with AES-256-GCM under the
//!   **key-encryption key**, SHA-256 of a domain tag and the master secret
//!   (`security.secret_key`). The wrapped form is `k1:` and base64url (no
//!   padding) of `nonce ‖ ciphertext ‖ tag`.
//! - A secret is stored as `v3:` and base64url of `nonce ‖ ciphertext ‖ tag`
//!   under the data key (AES-256-GCM, random 96-bit nonce). The associated
//!   data names the row the secret belongs to ([`SecretRow`]: a provider's
//!   headers, or one key of a provider), so a ciphertext copied into another
//!   row does not decrypt there.
//! - `v2:` (the same under a fixed AAD) and `v1:` (under SHA-256 of the
//!   master secret itself, no data key) are what earlier releases wrote.
//!   Both are still read, and rewritten as `v3:` at start (`crate::secrets`).
//! - A provider key's fingerprint (to refuse the same key twice) is `h1:`
//!   and hex HMAC-SHA-256 of the key under a fingerprint key derived from
//!   the data key, so a database copy does not let anyone confirm a guessed
//!   provider key offline. Earlier releases stored bare hex SHA-256; those
//!   are recomputed at start too. Deriving from the data key (not the master
//!   secret itself) keeps fingerprints stable across secret rotations.
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
const PREFIX_V3: &str = "v3:";
const SECRET_AAD_V3: &[u8] = b"switchyard-secret-v3";
const FINGERPRINT_KEY_TAG: &[u8] = b"switchyard-fingerprint-key-v1";
const PREFIX_FINGERPRINT: &str = "h1:";
const SHA256_BLOCK: usize = 64;

/// The row a stored secret belongs to, bound into its associated data.
/// Provider names cannot change and a key id is unique within its provider,
/// so the binding survives every edit the admin API allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRow<'a> {
    /// `providers.config_json.headers_ciphertext` of this provider.
    ProviderHeaders { provider: &'a str },
    /// `provider_keys.secret_ciphertext` of this key of this provider.
    ProviderKey { provider: &'a str, key_id: &'a str },
}

impl SecretRow<'_> {
    /// The version tag, the row kind and each name length-prefixed, so no
    /// two rows share associated data.
    fn associated_data(&self) -> Vec<u8> {
        let fields: &[&str] = match self {
            SecretRow::ProviderHeaders { provider } => &["provider_headers", provider],
            SecretRow::ProviderKey { provider, key_id } => &["provider_key", provider, key_id],
        };
        let mut aad = SECRET_AAD_V3.to_vec();
        for field in fields {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(field.as_bytes());
        }
        aad
    }
}

/// HMAC-SHA-256 (RFC 2104) over sha2, which the gateway already uses; the
/// `hmac` crate in the lock file is built on another major version of
/// `digest`. Checked against RFC 4231's vectors below.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; SHA256_BLOCK];
    if key.len() > SHA256_BLOCK {
        for (slot, byte) in block.iter_mut().zip(Sha256::digest(key)) {
            *slot = byte;
        }
    } else {
        for (slot, byte) in block.iter_mut().zip(key) {
            *slot = *byte;
        }
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|byte| byte ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|byte| byte ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

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
    /// The data key: encrypts (`v3:`) and decrypts `v3:` and `v2:`. `None`
    /// for a v1-only cipher.
    data: Option<Aes256Gcm>,
    /// SHA-256 of the master secret: decrypts `v1:` (and encrypts it when
    /// there is no data key).
    legacy: Aes256Gcm,
    /// Keys provider-key fingerprints.
    fingerprint_key: [u8; 32],
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
        let legacy_key = Sha256::digest(master.as_bytes());
        SecretCipher {
            data: None,
            legacy: aes_key(legacy_key.as_slice()),
            fingerprint_key: hmac_sha256(legacy_key.as_slice(), FINGERPRINT_KEY_TAG),
        }
    }

    /// The gateway's cipher: writes `v3:` under `data_key`, reads `v3:`,
    /// `v2:` and the `v1:` of `master`.
    pub fn with_data_key(data_key: &DataKey, master: &str) -> Self {
        SecretCipher {
            data: Some(aes_key(&data_key.0)),
            fingerprint_key: hmac_sha256(&data_key.0, FINGERPRINT_KEY_TAG),
            ..Self::new(master)
        }
    }

    /// Encrypts `plaintext` for `row` (`v3:`, a fresh random nonce); a
    /// v1-only cipher writes `v1:`.
    pub fn encrypt_for(&self, row: SecretRow<'_>, plaintext: &str) -> Result<String, CryptoError> {
        match &self.data {
            Some(data) => Ok(format!(
                "{PREFIX_V3}{}",
                seal(data, &row.associated_data(), plaintext.as_bytes())?
            )),
            None => self.encrypt(plaintext),
        }
    }

    /// Decrypts the secret stored in `row`, in any version; a `v3:` value
    /// moved from another row fails as [`CryptoError::Decrypt`].
    pub fn decrypt_for(&self, row: SecretRow<'_>, stored: &str) -> Result<String, CryptoError> {
        let Some(encoded) = stored.strip_prefix(PREFIX_V3) else {
            return self.decrypt(stored);
        };
        let data = self.data.as_ref().ok_or(CryptoError::Decrypt)?;
        String::from_utf8(open(data, &row.associated_data(), encoded)?)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Encrypts `plaintext` unbound to a row, as earlier releases did (`v2:`
    /// under the data key, `v1:` without one): for tools and tests that
    /// write rows the way those releases did. The gateway uses
    /// [`SecretCipher::encrypt_for`].
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

    /// Decrypts what [`SecretCipher::encrypt`] produced, in either version
    /// (not `v3:`, which needs its row: [`SecretCipher::decrypt_for`]).
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
            Some(_) => stored.starts_with(PREFIX_V3),
            None => stored.starts_with(PREFIX_V1),
        }
    }

    /// `h1:` and hex HMAC-SHA-256 of `secret` under this deployment's
    /// fingerprint key: recognises the same provider key without letting a
    /// database copy confirm guesses.
    pub fn fingerprint(&self, secret: &str) -> String {
        format!(
            "{PREFIX_FINGERPRINT}{}",
            hex::encode(hmac_sha256(&self.fingerprint_key, secret.as_bytes()))
        )
    }
}

/// Whether `fingerprint` is keyed (`h1:`), not an earlier release's bare
/// SHA-256.
pub fn is_keyed_fingerprint(fingerprint: &str) -> bool {
    fingerprint.starts_with(PREFIX_FINGERPRINT)
}

/// The hex digits of a fingerprint, without its version prefix (default key
/// ids take their first eight).
pub fn fingerprint_digits(fingerprint: &str) -> &str {
    fingerprint
        .strip_prefix(PREFIX_FINGERPRINT)
        .unwrap_or(fingerprint)
}

/// Unkeyed hex SHA-256 of a secret: the provider-key fingerprint earlier
/// releases stored (recomputed as [`SecretCipher::fingerprint`] at start),
/// kept for tests and tools that write rows as those releases did.
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

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn fingerprints_are_keyed_by_the_data_key() {
        let data_key = DataKey::generate();
        let cipher = SecretCipher::with_data_key(&data_key, "master");
        let print = cipher.fingerprint("sk-live-1");
        assert!(
            is_keyed_fingerprint(&print) && print.len() == 3 + 64,
            "{print}"
        );
        assert_ne!(fingerprint_digits(&print), fingerprint("sk-live-1"));
        assert_eq!(print, cipher.fingerprint("sk-live-1"), "stable");
        assert_ne!(print, cipher.fingerprint("sk-live-2"));
        // Same data key under a rotated master secret: same fingerprints.
        let rotated = SecretCipher::with_data_key(&data_key, "rotated");
        assert_eq!(rotated.fingerprint("sk-live-1"), print);
        // Another deployment's data key: unrelated fingerprints.
        let other = SecretCipher::with_data_key(&DataKey::generate(), "master");
        assert_ne!(other.fingerprint("sk-live-1"), print);
    }

    #[test]
    fn a_secret_is_bound_to_its_row() -> Result<(), CryptoError> {
        let cipher = SecretCipher::with_data_key(&DataKey::generate(), "master");
        let row = SecretRow::ProviderKey {
            provider: "openai",
            key_id: "a",
        };
        let stored = cipher.encrypt_for(row, "sk-a")?;
        assert!(stored.starts_with("v3:") && cipher.is_current(&stored));
        assert_eq!(cipher.decrypt_for(row, &stored)?, "sk-a");
        for elsewhere in [
            SecretRow::ProviderKey {
                provider: "openai",
                key_id: "b",
            },
            SecretRow::ProviderKey {
                provider: "openai2",
                key_id: "a",
            },
            // Length prefixes: "opena" + "ia" is not "openai" + "a".
            SecretRow::ProviderKey {
                provider: "opena",
                key_id: "ia",
            },
            SecretRow::ProviderHeaders { provider: "openai" },
        ] {
            assert_eq!(
                cipher.decrypt_for(elsewhere, &stored),
                Err(CryptoError::Decrypt),
                "{elsewhere:?}"
            );
        }
        // Unbound forms of earlier releases still read through any row.
        let v2 = cipher.encrypt("sk-v2")?;
        assert!(v2.starts_with("v2:") && !cipher.is_current(&v2));
        assert_eq!(cipher.decrypt_for(row, &v2)?, "sk-v2");
        let v1 = SecretCipher::new("master").encrypt("sk-v1")?;
        assert_eq!(cipher.decrypt_for(row, &v1)?, "sk-v1");
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
        // v2 (unbound) is read, and rewritten as v3 at start.
        assert!(stored.starts_with("v2:") && !cipher.is_current(&stored));
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
