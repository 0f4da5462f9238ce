//! Encryption of the secrets the control plane stores (cluster passwords,
//! API keys, TLS client keys).
//!
//! Secrets are sealed with XChaCha20-Poly1305 under one 32-byte key given at
//! start-up (`--secret-key-file` or `TANDEM_SECRET_KEY`, see
//! [`crate::config`]). A sealed value is
//!
//! ```text
//! [format version: 1 byte = 1][nonce: 24 random bytes][ciphertext + 16-byte tag]
//! ```
//!
//! and is bound, as associated data, to a context naming where it is stored
//! (for example `cluster/<id>/credentials`), so a sealed value copied into
//! another row or column fails to open instead of being used there.
//!
//! Plain-text secrets travel through the code as [`SecretString`], whose
//! `Debug` never shows the value, so a stray `{:?}` cannot log one.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// A plain-text secret. Its `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself; call only where it is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The 32-byte key secrets are sealed under.
#[derive(Clone)]
pub struct SecretKey(Key);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Parses a key written as 64 hex digits or as base64 (standard or
    /// URL-safe, padded or not) of exactly 32 bytes. Surrounding whitespace
    /// is ignored. Errors never echo the text.
    pub fn parse(text: &str) -> anyhow::Result<SecretKey> {
        let text = text.trim();
        if text.is_empty() {
            anyhow::bail!("the key is empty; expected 32 bytes as base64 or 64 hex digits");
        }
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text)
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .context("the key is neither 64 hex digits nor base64")?
        };
        if bytes.len() != 32 {
            anyhow::bail!(
                "the key decodes to {} bytes; expected exactly 32 (generate one with `openssl rand -base64 32`)",
                bytes.len()
            );
        }
        Ok(SecretKey(*Key::from_slice(&bytes)))
    }

    /// A new random key.
    pub fn generate() -> SecretKey {
        SecretKey(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// The key as standard base64, the form [`SecretKey::parse`] reads.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.as_slice())
    }

    /// Reads a key file. When it does not exist and `create` is set, writes a
    /// new random key there first (mode 0600, never overwriting a file).
    pub fn load_file(path: &Path, create: bool) -> anyhow::Result<SecretKey> {
        if create && !path.exists() {
            let key = SecretKey::generate();
            write_new_private_file(path, format!("{}\n", key.to_base64()).as_bytes())
                .with_context(|| format!("creating the secret key file {}", path.display()))?;
            tracing::warn!(
                path = %path.display(),
                "created a new secret key file; back it up: stored cluster secrets cannot be read without it"
            );
            return Ok(key);
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret key file {}", path.display()))?;
        SecretKey::parse(&text).with_context(|| format!("secret key file {}", path.display()))
    }
}

fn decode_hex(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            digit(pair[0]) << 4 | digit(pair[1])
        })
        .collect()
}

fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Too short or of an unknown format version.
    #[error("stored secret is malformed")]
    Malformed,
    /// Authentication failed: another key, another context, or tampering.
    #[error(
        "stored secret cannot be decrypted: the control plane runs with another secret key than the one it was stored with, or the value was altered"
    )]
    WrongKeyOrTampered,
}

/// Seals and opens secrets under the control plane's key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    /// A box using `key`.
    pub fn new(key: &SecretKey) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key.0),
        }
    }

    /// Encrypts `secret` for storage at `context`.
    pub fn seal(&self, secret: &SecretString, context: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption only fails for messages larger than the cipher's
            // limit (256 GiB); secrets are bounded far below that.
            .expect("XChaCha20-Poly1305 encryption of a bounded secret");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value sealed for `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<SecretString, OpenError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::WrongKeyOrTampered)?;
        String::from_utf8(plain)
            .map(SecretString)
            .map_err(|_| OpenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_base64_and_hex_only_at_32_bytes() {
        let key = SecretKey::generate();
        let b64 = key.to_base64();
        SecretKey::parse(&b64).unwrap();
        SecretKey::parse(&format!("  {}\n", b64.trim_end_matches('='))).unwrap();
        SecretKey::parse(&"ab".repeat(32)).unwrap();

        let short = SecretKey::parse("c2hvcnQ=").unwrap_err().to_string();
        assert!(short.contains("expected exactly 32"), "{short}");
        let junk = SecretKey::parse("not a key!").unwrap_err().to_string();
        assert!(!junk.contains("not a key"), "error echoes the key: {junk}");
        assert!(SecretKey::parse("").is_err());
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_context() {
        let secret = SecretString::new("hunter2");
        let sealed_box = SecretBox::new(&SecretKey::generate());
        let sealed = sealed_box.seal(&secret, "cluster/a/credentials");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_ne!(sealed, sealed_box.seal(&secret, "cluster/a/credentials"));
        assert_eq!(
            sealed_box.open(&sealed, "cluster/a/credentials").unwrap(),
            secret
        );
        assert!(matches!(
            sealed_box.open(&sealed, "cluster/b/credentials"),
            Err(OpenError::WrongKeyOrTampered)
        ));
        let other = SecretBox::new(&SecretKey::generate());
        assert!(other.open(&sealed, "cluster/a/credentials").is_err());
        assert!(matches!(
            sealed_box.open(&sealed[..10], "cluster/a/credentials"),
            Err(OpenError::Malformed)
        ));
    }

    #[test]
    fn secrets_never_print() {
        let secret = SecretString::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        let key = SecretKey::generate();
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn key_file_is_created_once_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let path = dir.join("nested/secret.key");
        assert!(SecretKey::load_file(&path, false).is_err());
        let created = SecretKey::load_file(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = SecretKey::load_file(&path, true).unwrap();
        assert_eq!(created.to_base64(), again.to_base64());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tandem-secrets-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
