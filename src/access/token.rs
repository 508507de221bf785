//! The per-install token: `<data_dir>/token`, created on first run.
//!
//! Owns [`load_or_create_token`]: 32 random bytes as hex, mode 0600, in a 0700 directory. The
//! plugin gets it from `sidepanel install`, the dashboard from the page the gateway serves.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Name of the token file inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// Random bytes in a new token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;

/// Reads `<data_dir>/token`, creating it (and the directory, mode 0700) on first run with 32
/// random bytes as hex, mode 0600. An existing file readable by others is narrowed to 0600.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    if !data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)?;
    }
    let path = data_dir.join(TOKEN_FILE);
    match read_token(&path) {
        Ok(t) => return Ok(t),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let token = random_hex(TOKEN_BYTES)?;
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut f) => {
            f.write_all(format!("{token}\n").as_bytes())?;
            f.sync_all()?;
            Ok(token)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(&path),
        Err(e) => Err(e),
    }
}

fn read_token(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    let token = fs::read_to_string(path)?.trim().to_owned();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold a token (16+ printable characters); delete it to create a new one",
                path.display()
            ),
        ));
    }
    Ok(token)
}

fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(io::Error::other)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
