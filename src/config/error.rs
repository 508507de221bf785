//! Configuration errors: every message names where the value came from, the key and the reason.
//!
//! Owns [`ConfigError`] and [`Origin`], and the translation of `toml` / `serde_path_to_error`
//! failures into one-line messages such as
//! `config/sidepanel.toml:12:16: threads: invalid type: string "two", expected u64`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;

/// Where a configuration value came from, as named at the start of an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file at this path.
    File(PathBuf),
    /// A command-line flag (or its `SIDEPANEL_*` environment variable, resolved by clap).
    CommandLine,
    /// An environment variable read directly (`VENICE_API_KEY`).
    Environment,
    /// The built-in default (no file given).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::CommandLine => f.write_str("command line"),
            Self::Environment => f.write_str("environment"),
            Self::Default => f.write_str("built-in default"),
        }
    }
}

/// Why a configuration could not be loaded. `Display` is one line, fit for a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key the file format does not know (a typo, usually).
    #[error("{}: unknown key `{key}` ({expected})", path.display())]
    UnknownKey {
        path: PathBuf,
        /// Dotted key, e.g. `upstream.urll`.
        key: String,
        /// e.g. "expected one of `url`, `api_key_file`, …".
        expected: String,
    },
    /// A value of the wrong TOML type, e.g. `threads = "two"`.
    #[error("{}: {key}: {message}", at(path, *line))]
    Type {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// A value of the right type that is not acceptable (bad duration, URL, range…).
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        origin: Origin,
        key: String,
        reason: String,
    },
    /// A file named by a key (`upstream.api_key_file`, `upstream.ca_file`) could not be read.
    #[error("{origin}: {key}: cannot read {}: {source}", path.display())]
    ReadFile {
        origin: Origin,
        key: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No key for an upstream that needs one.
    #[error(
        "no Venice API key for {host}: set VENICE_API_KEY or upstream.api_key_file, or save \
         one with `sidepanel key set` (or point upstream.url at a loopback simulator)"
    )]
    MissingApiKey { host: String },
}

impl ConfigError {
    /// An `Invalid` error; `origin` is cloned so callers can pass a borrowed one.
    pub(crate) fn invalid(origin: &Origin, key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// The dotted key the error is about, when it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { key, .. }
            | Self::Type { key, .. }
            | Self::Invalid { key, .. }
            | Self::ReadFile { key, .. } => Some(key),
            Self::Read { .. } | Self::Syntax { .. } | Self::MissingApiKey { .. } => None,
        }
    }

    /// A TOML syntax error raised before any value was deserialized.
    pub(crate) fn from_syntax(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let (line, column) = err
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        Self::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: err.message().trim().to_owned(),
        }
    }

    /// A deserialization error, with the dotted key recovered from the serde path.
    pub(crate) fn from_deserialize(
        path: &Path,
        text: &str,
        err: &serde_path_to_error::Error<toml::de::Error>,
    ) -> Self {
        let inner = err.inner();
        let message = inner.message().trim();
        let key = dotted_key(err.path());
        if let Some((field, expected)) = parse_unknown_field(message) {
            // The path may or may not already end with the unknown key itself.
            let field = quote_key(field);
            let key = if key == field || key.ends_with(&format!(".{field}")) {
                key
            } else if key.is_empty() {
                field
            } else {
                format!("{key}.{field}")
            };
            return Self::UnknownKey {
                path: path.to_owned(),
                key,
                expected: expected.to_owned(),
            };
        }
        Self::Type {
            path: path.to_owned(),
            line: inner.span().map(|span| line_col(text, span.start).0),
            key: if key.is_empty() {
                "(top level)".to_owned()
            } else {
                key
            },
            message: plain_types(message),
        }
    }
}

/// Serde names our structs in type errors ("expected struct RawUpstream"); say "a table".
fn plain_types(message: &str) -> String {
    match message.split_once("expected struct Raw") {
        Some((head, _)) => format!("{head}expected a table"),
        None => message.to_owned(),
    }
}

/// `path` or `path:line` for the start of a message.
fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

/// Splits serde's "unknown field `x`, expected …" into the field and "expected …".
fn parse_unknown_field(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.strip_prefix(", ").unwrap_or(rest).trim();
    Some((field, expected))
}

/// A TOML key as written in a dotted path: bare when it can be, quoted otherwise.
pub(crate) fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// `upstream.read_timeout`, `pricing.models."llama-3.3-70b".input`, … from a serde path.
fn dotted_key(path: &serde_path_to_error::Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key } => parts.push(quote_key(key)),
            Segment::Enum { variant } => parts.push(quote_key(variant)),
            Segment::Seq { index } => match parts.last_mut() {
                Some(last) => last.push_str(&format!("[{index}]")),
                None => parts.push(format!("[{index}]")),
            },
            Segment::Unknown => {}
        }
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 11), (2, 6));
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(quote_key("kimi-k2-5"), "kimi-k2-5");
        assert_eq!(quote_key("llama-3.3-70b"), "\"llama-3.3-70b\"");
    }

    #[test]
    fn unknown_field_message_is_split() {
        let parsed = parse_unknown_field("unknown field `urll`, expected one of `url`, `x`");
        assert_eq!(parsed, Some(("urll", "expected one of `url`, `x`")));
        assert_eq!(parse_unknown_field("invalid type"), None);
    }

    #[test]
    fn missing_key_is_one_line() {
        let msg = ConfigError::MissingApiKey {
            host: "api.venice.ai".into(),
        }
        .to_string();
        assert!(!msg.contains('\n'));
        assert!(msg.contains("VENICE_API_KEY") && msg.contains("upstream.api_key_file"));
        assert!(msg.contains("sidepanel key set"), "{msg}");
    }
}
