//! `sidepanel install`: wires an OpenCode setup to the gateway.
//!
//! Owns the plan of file changes and applying it. Into the OpenCode config directory
//! (`<project>/.opencode` or the global `~/.config/opencode`) it writes `plugins/sidepanel.js`
//! (the plugin, embedded in this binary from `plugin/dist/sidepanel.js`) and
//! `plugins/sidepanel.json` (gateway URL, install token and how to start `sidepanel serve`;
//! mode 0600; git-ignored in a project). In `opencode.jsonc` / `opencode.json` it sets only
//! `provider.venice.options.baseURL` to the gateway ([`jsonc`] keeps comments and everything
//! else), after writing a backup of the old file. Running it again changes nothing; a dry run
//! prints the diff (token redacted) and writes nothing. `run` turns the command line into an
//! [`InstallOptions`].

pub mod jsonc;
mod run;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use run::{backup_path, gateway_url, run};

/// The plugin as OpenCode loads it (`tsc` output of `plugin/src/sidepanel.ts`).
pub const PLUGIN_JS: &str = include_str!("../../plugin/dist/sidepanel.js");
/// File names inside `<config dir>/plugins/`.
pub const PLUGIN_FILE: &str = "sidepanel.js";
pub const SETTINGS_FILE: &str = "sidepanel.json";
/// Appended to the config file's name for the backup of its previous content.
pub const BACKUP_SUFFIX: &str = ".sidepanel-backup";
/// What a dry run shows instead of the token.
const REDACTED: &str = "<install token>";

/// Why install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        source: jsonc::JsoncError,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where OpenCode should load the plugin from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A project directory: `<dir>/.opencode/plugins/` and `<dir>/opencode.json(c)`.
    Project(PathBuf),
    /// The global OpenCode config directory (`$XDG_CONFIG_HOME/opencode` or
    /// `~/.config/opencode`).
    Global(PathBuf),
}

/// Everything install needs to know.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub scope: Scope,
    /// The gateway's base URL, e.g. `http://127.0.0.1:8765`.
    pub gateway: String,
    pub token: String,
    /// How the plugin starts the gateway when it is not running.
    pub command: String,
    pub serve_args: Vec<String>,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    /// Current content (`None`: the file does not exist yet).
    pub old: Option<String>,
    pub new: String,
    /// Holds the token: mode 0600, redacted in diffs.
    pub secret: bool,
    /// Back up the old content first.
    pub backup: bool,
}

/// The files install would change (unchanged files are left out).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    token: String,
}

impl InstallOptions {
    fn config_dir(&self) -> PathBuf {
        match &self.scope {
            Scope::Project(p) => p.join(".opencode"),
            Scope::Global(d) => d.clone(),
        }
    }

    /// The OpenCode config file to edit: an existing `opencode.jsonc`, else `opencode.json`
    /// (globally also `config.json`), else a new `opencode.json`.
    pub fn config_file(&self) -> PathBuf {
        let (dir, names): (PathBuf, &[&str]) = match &self.scope {
            Scope::Project(p) => (p.clone(), &["opencode.jsonc", "opencode.json"]),
            Scope::Global(d) => (
                d.clone(),
                &["opencode.jsonc", "opencode.json", "config.json"],
            ),
        };
        names
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .unwrap_or_else(|| dir.join("opencode.json"))
    }

    fn settings_json(&self) -> String {
        let v = serde_json::json!({
            "url": self.gateway,
            "token": self.token,
            "command": self.command,
            "args": self.serve_args,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Works out what install would write.
pub fn plan(opts: &InstallOptions) -> Result<Plan, InstallError> {
    if opts.token.trim().is_empty() {
        return Err(InstallError::Invalid("the install token is empty".into()));
    }
    let plugins = opts.config_dir().join("plugins");
    let mut changes = vec![
        change(
            plugins.join(PLUGIN_FILE),
            PLUGIN_JS.to_owned(),
            false,
            false,
        )?,
        change(
            plugins.join(SETTINGS_FILE),
            opts.settings_json(),
            true,
            false,
        )?,
    ];
    if let Scope::Project(_) = opts.scope {
        let ignore = plugins.join(".gitignore");
        let old = read(&ignore)?.unwrap_or_default();
        let new = if old.lines().any(|l| l.trim() == SETTINGS_FILE) {
            old
        } else {
            let sep = if old.is_empty() || old.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{old}{sep}# holds the sidepanel install token\n{SETTINGS_FILE}\n")
        };
        changes.push(change(ignore, new, false, false)?);
    }
    let file = opts.config_file();
    let old = read(&file)?;
    let base = old
        .clone()
        .unwrap_or_else(|| "{\n  \"$schema\": \"https://opencode.ai/config.json\"\n}\n".into());
    let url = format!("{}/api/v1", opts.gateway.trim_end_matches('/'));
    let new = jsonc::set_venice_base_url(&base, &url).map_err(|source| InstallError::Config {
        path: file.clone(),
        source,
    })?;
    changes.push(Change {
        path: file,
        backup: old.is_some(),
        old,
        new,
        secret: false,
    });
    changes.retain(|c| c.old.as_deref() != Some(c.new.as_str()));
    Ok(Plan {
        changes,
        token: opts.token.clone(),
    })
}

fn change(path: PathBuf, new: String, secret: bool, backup: bool) -> Result<Change, InstallError> {
    Ok(Change {
        old: read(&path)?,
        path,
        new,
        secret,
        backup,
    })
}

fn read(path: &Path) -> Result<Option<String>, InstallError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

impl Plan {
    /// Nothing to change: OpenCode is already wired.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// A unified diff of every change, with the token redacted.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let hide = |s: &str| {
                if c.secret && !self.token.is_empty() {
                    s.replace(&self.token, REDACTED)
                } else {
                    s.to_owned()
                }
            };
            let old = hide(c.old.as_deref().unwrap_or(""));
            let new = hide(&c.new);
            let path = c.path.display().to_string();
            let from = if c.old.is_some() {
                path.clone()
            } else {
                "/dev/null".into()
            };
            if c.path.ends_with(PLUGIN_FILE) {
                // The plugin is this binary's own file: name it, do not print it.
                let what = if c.old.is_some() { "replace" } else { "create" };
                let lines = c.new.lines().count();
                out.push_str(&format!("{what} {path} (the plugin, {lines} lines)\n"));
                continue;
            }
            let diff = similar::TextDiff::from_lines(&old, &new);
            let text = diff
                .unified_diff()
                .context_radius(3)
                .header(&from, &path)
                .to_string();
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Writes the changes; returns the backups written.
    pub fn apply(&self) -> Result<Vec<PathBuf>, InstallError> {
        let mut backups = Vec::new();
        for c in &self.changes {
            if let Some(dir) = c.path.parent() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            if let (true, Some(old)) = (c.backup, &c.old) {
                let backup = backup_path(&c.path);
                write_atomic(&backup, old, false)?;
                backups.push(backup);
            }
            write_atomic(&c.path, &c.new, c.secret)?;
        }
        Ok(backups)
    }
}

/// Writes through a temporary file in the same directory and renames it into place.
fn write_atomic(path: &Path, content: &str, secret: bool) -> Result<(), InstallError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".sidepanel-tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mode = match (secret, fs::metadata(path)) {
        (true, _) => 0o600,
        (false, Ok(meta)) => std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        (false, Err(_)) => 0o644,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(content.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}
