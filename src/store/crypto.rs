//! Encryption at rest: the store key and sealing payloads with XChaCha20-Poly1305.
//!
//! The 256-bit key comes either from Argon2id over `SIDEPANEL_PASSPHRASE` (salt and cost
//! parameters kept in the `meta` table) or from a random key file created 0600 with a new
//! database. The `meta` table also keeps a *key check*: a known constant sealed with the key,
//! so a wrong passphrase or key file is refused at open, before anything is written.
//!
//! A sealed value is `nonce (24 random bytes) || ciphertext+tag`; the associated data binds it
//! to its row (e.g. `event:<sequence>`), so ciphertexts cannot be swapped between rows.

use std::io::Write;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rusqlite::{params, Connection, OptionalExtension};
use zeroize::Zeroizing;

use super::config::StoreConfig;
use super::error::{SqlContext, StoreError};

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
const SALT_LEN: usize = 16;
const KEY_CHECK: &[u8] = b"opencode-sidepanel store key check v1";
const KEY_CHECK_AAD: &[u8] = b"meta:key_check";
/// Argon2id cost: 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation).
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;

/// Seals and opens payloads with the store key.
#[derive(Clone)]
pub struct Crypto {
    cipher: XChaCha20Poly1305,
}

impl Crypto {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Encrypts `plain`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Crypto(format!("no randomness for a nonce: {e}")))?;
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| StoreError::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value sealed with `aad`; `None` when it is damaged or the key is wrong.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .ok()
    }

    /// Decrypts or names what could not be decrypted.
    pub fn open_or(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>, StoreError> {
        self.open(aad, sealed).ok_or_else(|| StoreError::Decrypt {
            what: what.to_owned(),
        })
    }
}

fn meta(conn: &Connection, path: &Path, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
        .on(path)
}

fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))?;
    Ok(out)
}

fn argon2(passphrase: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<Crypto, StoreError> {
    let params = Params::new(m, t, p, Some(KEY_LEN))
        .map_err(|e| StoreError::Crypto(format!("bad Argon2 parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut())
        .map_err(|e| StoreError::Crypto(format!("key derivation failed: {e}")))?;
    Ok(Crypto::new(&key))
}

fn parse_params(text: &str) -> Option<(u32, u32, u32)> {
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for part in text.split(',') {
        let (k, v) = part.split_once('=')?;
        let v: u32 = v.trim().parse().ok()?;
        match k.trim() {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    Some((m?, t?, p?))
}

fn key_error(cfg: &StoreConfig, reason: impl std::fmt::Display) -> StoreError {
    StoreError::KeyFile {
        path: cfg.path.clone(),
        key_file: cfg.key_file.clone(),
        reason: reason.to_string(),
    }
}

fn read_key_file(cfg: &StoreConfig) -> Result<Crypto, StoreError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(&cfg.key_file).map_err(|e| key_error(cfg, e))?);
    let hex = text.trim();
    if hex.len() != KEY_LEN * 2 {
        return Err(key_error(cfg, "expected 64 hexadecimal digits"));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16)
            .map_err(|_| key_error(cfg, "expected 64 hexadecimal digits"))?;
    }
    warn_if_readable_by_others(&cfg.key_file);
    Ok(Crypto::new(&key))
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(key_file = %path.display(), "the store key file is readable by other users; chmod 600 it");
        }
    }
}

/// Creates a new random key file (0600), or reads the one already there.
fn create_key_file(cfg: &StoreConfig) -> Result<Crypto, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if cfg.key_file.exists() {
        return read_key_file(cfg);
    }
    if let Some(dir) = cfg.key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| key_error(cfg, e))?;
    }
    let key = Zeroizing::new(random::<KEY_LEN>()?);
    let hex = Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&cfg.key_file)
        .map_err(|e| key_error(cfg, e))?;
    file.write_all(format!("{}\n", hex.as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(cfg, e))?;
    tracing::info!(key_file = %cfg.key_file.display(), "created the session store key file; back it up with the database");
    Ok(Crypto::new(&key))
}

/// Unlocks the database's key, or — for a new database (`create`) — sets one up and records
/// how in `meta`. Never writes anything unless `create`.
pub fn unlock(conn: &Connection, cfg: &StoreConfig, create: bool) -> Result<Crypto, StoreError> {
    let path = cfg.path.as_path();
    let kdf = meta(conn, path, "kdf")?;
    let crypto = match kdf.as_deref() {
        None if create => return set_up(conn, cfg),
        None => {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
                reason: "it has no key metadata".into(),
            })
        }
        Some(b"argon2id") => {
            let Some(pass) = &cfg.passphrase else {
                return Err(StoreError::PassphraseRequired {
                    path: path.to_owned(),
                });
            };
            let salt = meta(conn, path, "salt")?.unwrap_or_default();
            let params = meta(conn, path, "argon2")?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|t| parse_params(&t))
                .ok_or_else(|| StoreError::Corrupt {
                    path: path.to_owned(),
                    detail: "the Argon2 parameters in meta are unreadable".into(),
                })?;
            argon2(pass.expose(), &salt, params.0, params.1, params.2)?
        }
        Some(b"key-file") => {
            if cfg.passphrase.is_some() {
                return Err(StoreError::PassphraseNotUsed {
                    path: path.to_owned(),
                    key_file: cfg.key_file.clone(),
                });
            }
            read_key_file(cfg)?
        }
        Some(other) => {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
                reason: format!("unknown key scheme {:?}", String::from_utf8_lossy(other)),
            })
        }
    };
    let check = meta(conn, path, "key_check")?.unwrap_or_default();
    match crypto.open(KEY_CHECK_AAD, &check) {
        Some(plain) if plain == KEY_CHECK => Ok(crypto),
        _ => Err(StoreError::WrongKey {
            path: path.to_owned(),
            hint: if cfg.passphrase.is_some() {
                "SIDEPANEL_PASSPHRASE is not the passphrase this database was created with".into()
            } else {
                format!(
                    "the key file {} is not the one this database was created with",
                    cfg.key_file.display()
                )
            },
        }),
    }
}

fn set_up(conn: &Connection, cfg: &StoreConfig) -> Result<Crypto, StoreError> {
    let path = cfg.path.as_path();
    let put = |key: &str, value: &[u8]| {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )
        .on(path)
    };
    let crypto = match &cfg.passphrase {
        Some(pass) => {
            let salt = random::<SALT_LEN>()?;
            let crypto = argon2(pass.expose(), &salt, ARGON2_M_KIB, ARGON2_T, ARGON2_P)?;
            put("kdf", b"argon2id")?;
            put("salt", &salt)?;
            let params = format!("m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}");
            put("argon2", params.as_bytes())?;
            crypto
        }
        None => {
            let crypto = create_key_file(cfg)?;
            put("kdf", b"key-file")?;
            crypto
        }
    };
    put("key_check", &crypto.seal(KEY_CHECK_AAD, KEY_CHECK)?)?;
    Ok(crypto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let a = Crypto::new(&[7; KEY_LEN]);
        let b = Crypto::new(&[8; KEY_LEN]);
        let sealed = a.seal(b"event:1", b"hello").expect("seals");
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(a.open(b"event:1", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(a.open(b"event:2", &sealed), None);
        assert_eq!(b.open(b"event:1", &sealed), None);
        assert_eq!(a.open(b"event:1", &sealed[..10]), None);
        assert_ne!(sealed, a.seal(b"event:1", b"hello").expect("seals"));
    }

    #[test]
    fn argon2_parameters_parse() {
        assert_eq!(parse_params("m=19456,t=2,p=1"), Some((19456, 2, 1)));
        assert_eq!(parse_params("m=1,t=2"), None);
        assert_eq!(parse_params("m=x,t=2,p=1"), None);
    }
}
