//! The Venice API key kept in the session store: `sidepanel key set | clear | status`, and the
//! key `serve` falls back to.
//!
//! The key is a row of the `secrets` table, sealed with the store key exactly like event
//! payloads (XChaCha20-Poly1305; the store key from Argon2id over `SIDEPANEL_PASSPHRASE` or
//! from the key file; associated data `secret:venice_api_key`), so it is never on disk in
//! clear. `key set` reads it from standard input only — never from the command line, where
//! `ps` and shell history would see it — with echo off on a terminal. Setting or clearing takes
//! the store's writer lock, so a running server must be stopped first (it reads the key when
//! it starts).
//!
//! Precedence for `serve` and `check-config` ([`load_config`]): `VENICE_API_KEY`, else
//! `upstream.api_key_file`, else the stored key.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

use rusqlite::{params, Connection};
use zeroize::Zeroizing;

pub use super::cli::CliError;
use super::crypto::Crypto;
use super::error::SqlContext;
use super::{Reader, StoreConfig, StoreError};
use crate::cli::KeyCommand;
use crate::config::{self, ApiKey, Config, ConfigError, Overrides};

/// The `secrets` row holding the Venice key.
pub const SECRET: &str = "venice_api_key";
/// Longest key accepted on standard input.
const MAX_KEY: usize = 4096;

/// Where the Venice key `serve` uses comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `VENICE_API_KEY`.
    Env,
    /// `upstream.api_key_file`.
    File,
    /// `sidepanel key set`.
    Stored,
    /// None (a loopback upstream or `pass_client_key`).
    None,
}

/// Seals `value` into the `secrets` row `name` (replacing it).
pub(super) fn put_secret(
    conn: &Connection,
    crypto: &Crypto,
    path: &Path,
    name: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    let sealed = crypto.seal(format!("secret:{name}").as_bytes(), value)?;
    conn.execute(
        "INSERT INTO secrets (name, sealed) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed",
        params![name, sealed],
    )
    .on(path)?;
    Ok(())
}

/// Stores `key` sealed in the database (created if needed). Takes the writer lock.
pub fn store_key(store: &StoreConfig, key: &ApiKey) -> Result<(), StoreError> {
    let (conn, crypto, _lock) = super::open_db(store)?;
    put_secret(&conn, &crypto, &store.path, SECRET, key.expose().as_bytes())
}

/// Removes the stored key; false when there was none. Takes the writer lock.
pub fn clear_key(store: &StoreConfig) -> Result<bool, StoreError> {
    if !store.path.exists() {
        return Ok(false);
    }
    let (conn, _crypto, _lock) = super::open_db(store)?;
    let n = conn
        .execute("DELETE FROM secrets WHERE name = ?1", [SECRET])
        .on(&store.path)?;
    Ok(n > 0)
}

/// The stored key, if any (none when there is no database yet). Read-only, no lock.
pub fn stored_key(store: &StoreConfig) -> Result<Option<ApiKey>, StoreError> {
    if !store.path.exists() {
        return Ok(None);
    }
    let Some(bytes) = Reader::open(store)?.secret(SECRET)? else {
        return Ok(None);
    };
    let bytes = Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| StoreError::decode("the stored Venice key", "it is not UTF-8"))?;
    Ok(ApiKey::new(text))
}

/// The `[store]` settings of `overrides` (the upstream and its key play no part).
fn store_config(overrides: &Overrides) -> Result<StoreConfig, ConfigError> {
    let mut ov = overrides.clone();
    ov.upstream = Some("http://127.0.0.1:9/api/v1".into());
    Ok(config::load(&ov)?.store)
}

/// The configuration for `serve` and `check-config`, with the Venice key from
/// `VENICE_API_KEY`, else `upstream.api_key_file`, else the stored key — and where it came from.
pub fn load_config(overrides: &Overrides) -> Result<(Config, KeySource), CliError> {
    let first = match config::load(overrides) {
        Ok(c) if c.upstream.api_key.is_some() => {
            let source = if overrides.api_key.is_some() {
                KeySource::Env
            } else {
                KeySource::File
            };
            return Ok((c, source));
        }
        Ok(c) => Ok(c),
        Err(e @ ConfigError::MissingApiKey { .. }) => Err(e),
        Err(e) => return Err(e.into()),
    };
    match stored_key(&store_config(overrides)?)? {
        Some(key) => {
            let mut ov = overrides.clone();
            ov.api_key = Some(key.expose().to_owned());
            Ok((config::load(&ov)?, KeySource::Stored))
        }
        None => Ok((first?, KeySource::None)),
    }
}

/// Turns echo off on the terminal on standard input while it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios struct we own; failures are
        // checked and leave the terminal as it was.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Self(None);
            }
            let old = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return Self(None);
            }
            Self(Some(old))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: restores the attributes read in `new` on the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, old);
            }
        }
    }
}

/// Reads the key: one line from a terminal (echo off), else everything up to end of input.
fn read_key(input: &mut impl BufRead, terminal: bool) -> Result<ApiKey, CliError> {
    let io = |source| CliError::Io {
        what: "read the key from standard input".into(),
        source,
    };
    let mut text = Zeroizing::new(String::new());
    if terminal {
        eprint!("Venice API key (input hidden): ");
        let _ = std::io::stderr().flush();
        let _echo = EchoOff::new();
        input.read_line(&mut text).map_err(io)?;
        eprintln!();
    } else {
        input
            .take(MAX_KEY as u64 + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
    }
    let key = text.trim();
    if key.len() > MAX_KEY {
        return Err(CliError::Usage(format!(
            "the key is longer than {MAX_KEY} bytes"
        )));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::Usage(
            "the key must be one word of printable characters (pipe just the key)".into(),
        ));
    }
    ApiKey::new(key).ok_or_else(|| {
        CliError::Usage(
            "no key on standard input; e.g. `printf %s \"$KEY\" | sidepanel key set`".into(),
        )
    })
}

fn scheme(store: &StoreConfig) -> String {
    match &store.passphrase {
        Some(_) => format!("sealed with a key derived from {}", super::PASSPHRASE_ENV),
        None => format!("sealed with the key file {}", store.key_file.display()),
    }
}

/// Runs one `key` subcommand; the key is read from `input` (standard input).
pub fn run(
    cmd: &KeyCommand,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let stdout = |source| CliError::Io {
        what: "write to standard output".into(),
        source,
    };
    match cmd {
        KeyCommand::Set { serve } => {
            let store = store_config(&serve.overrides())?;
            let key = read_key(input, std::io::stdin().is_terminal())?;
            store_key(&store, &key)?;
            writeln!(
                out,
                "stored the Venice key in {} ({}); `serve` uses it when neither VENICE_API_KEY \
                 nor upstream.api_key_file gives one",
                store.path.display(),
                scheme(&store)
            )
            .map_err(stdout)?;
        }
        KeyCommand::Clear { serve } => {
            let store = store_config(&serve.overrides())?;
            let text = if clear_key(&store)? {
                format!(
                    "removed the stored Venice key from {}",
                    store.path.display()
                )
            } else {
                format!("no Venice key stored in {}", store.path.display())
            };
            writeln!(out, "{text}").map_err(stdout)?;
        }
        KeyCommand::Status { serve } => {
            let overrides = serve.overrides();
            let store = store_config(&overrides)?;
            let stored = match stored_key(&store)? {
                Some(_) => format!("yes, in {} ({})", store.path.display(), scheme(&store)),
                None => format!("no (none in {})", store.path.display()),
            };
            writeln!(out, "{:<16} {stored}", "stored key:").map_err(stdout)?;
            let used = match load_config(&overrides) {
                Ok((_, KeySource::Env)) => "the key from VENICE_API_KEY".to_owned(),
                Ok((_, KeySource::File)) => "the key from upstream.api_key_file".to_owned(),
                Ok((_, KeySource::Stored)) => "the stored key".to_owned(),
                Ok((c, KeySource::None)) if c.upstream.pass_client_key => {
                    "no key (clients' own keys are passed through)".to_owned()
                }
                Ok((_, KeySource::None)) => "no key (loopback upstream)".to_owned(),
                Err(e) => format!("nothing: it would not start ({e})"),
            };
            writeln!(out, "{:<16} {used}", "serve uses:").map_err(stdout)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_one_trimmed_word_from_input() {
        let key = read_key(&mut &b"  sk-abc123\n"[..], false).expect("key");
        assert_eq!(key.expose(), "sk-abc123");
        for bad in [&b""[..], b"\n  \n", b"two words", b"a\nb"] {
            assert!(
                matches!(read_key(&mut &bad[..], false), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
        let long = vec![b'k'; MAX_KEY + 10];
        assert!(matches!(
            read_key(&mut &long[..], false),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn a_stored_key_is_sealed_and_can_be_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StoreConfig::in_dir(dir.path());
        assert_eq!(stored_key(&store).expect("no db yet"), None);
        assert!(!clear_key(&store).expect("nothing to clear"));
        let key = ApiKey::new("sk-unit-test-key-31337").expect("key");
        store_key(&store, &key).expect("stored");
        assert_eq!(stored_key(&store).expect("read"), Some(key.clone()));
        let db = std::fs::read(&store.path).expect("db");
        assert!(!db.windows(22).any(|w| w == key.expose().as_bytes()));
        assert!(clear_key(&store).expect("cleared"));
        assert_eq!(stored_key(&store).expect("read"), None);
    }
}
