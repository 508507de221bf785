//! Validation of the `[opencode]` section (the link to `opencode serve`) into
//! [`OpencodeConfig`]. Errors name the key. The URL may come from `--opencode-url`, the user
//! name from `OPENCODE_SERVER_USERNAME`, the password only from `OPENCODE_SERVER_PASSWORD`.

use super::values::{pick, positive_duration};
use super::Overrides;
use crate::config::error::{ConfigError, Origin};
use crate::config::raw::RawOpencode;
use crate::opencode::config::{defaults, parse_url, OpencodeConfig, Password};

/// Largest `opencode.gone_after`.
const MAX_GONE_AFTER: u64 = 1000;

pub(super) fn opencode(
    raw: &RawOpencode,
    file: &Origin,
    ov: &Overrides,
) -> Result<OpencodeConfig, ConfigError> {
    let (url_text, origin) = pick(
        ov.opencode_url.as_deref(),
        raw.url.as_deref(),
        defaults::URL,
        file,
    );
    let url = match url_text.trim() {
        "" => None,
        text => {
            Some(parse_url(text).map_err(|e| ConfigError::invalid(&origin, "opencode.url", e))?)
        }
    };
    let (username, origin) = match (&ov.opencode_username, &raw.username) {
        (Some(u), _) => (u.as_str(), Origin::Environment),
        (None, Some(u)) => (u.as_str(), file.clone()),
        (None, None) => (defaults::USERNAME, file.clone()),
    };
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            &origin,
            "opencode.username",
            "must be non-empty, without ':' or control characters",
        ));
    }
    let duration = |key: &str, value: &Option<String>, default: &str| {
        positive_duration(file, key, value.as_deref(), default)
    };
    let reconnect_min = duration(
        "opencode.reconnect_min",
        &raw.reconnect_min,
        defaults::RECONNECT_MIN,
    )?;
    let reconnect_max = duration(
        "opencode.reconnect_max",
        &raw.reconnect_max,
        defaults::RECONNECT_MAX,
    )?;
    if reconnect_max < reconnect_min {
        return Err(ConfigError::invalid(
            file,
            "opencode.reconnect_max",
            "must be at least opencode.reconnect_min",
        ));
    }
    let gone_after = raw.gone_after.unwrap_or(u64::from(defaults::GONE_AFTER));
    if !(1..=MAX_GONE_AFTER).contains(&gone_after) {
        return Err(ConfigError::invalid(
            file,
            "opencode.gone_after",
            format!("{gone_after} is out of range (1..={MAX_GONE_AFTER})"),
        ));
    }
    Ok(OpencodeConfig {
        url,
        username: username.to_owned(),
        password: ov.opencode_password.as_deref().and_then(Password::new),
        request_timeout: duration(
            "opencode.request_timeout",
            &raw.request_timeout,
            defaults::REQUEST_TIMEOUT,
        )?,
        reconnect_min,
        reconnect_max,
        idle_timeout: duration(
            "opencode.idle_timeout",
            &raw.idle_timeout,
            defaults::IDLE_TIMEOUT,
        )?,
        gone_after: u32::try_from(gone_after).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(raw: RawOpencode, ov: Overrides) -> Result<OpencodeConfig, ConfigError> {
        opencode(&raw, &Origin::File("s.toml".into()), &ov)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load(RawOpencode::default(), Overrides::default()).expect("defaults");
        assert_eq!(c, OpencodeConfig::default());
        let raw = RawOpencode {
            url: Some("http://127.0.0.1:4096".into()),
            username: Some("me".into()),
            ..RawOpencode::default()
        };
        let ov = Overrides {
            opencode_url: Some("http://127.0.0.1:5000/".into()),
            opencode_password: Some("pw".into()),
            ..Overrides::default()
        };
        let c = load(raw, ov).expect("loads");
        assert_eq!(c.url.expect("url").port(), Some(5000));
        assert_eq!(c.username, "me");
        assert_eq!(c.password.expect("password").expose(), "pw");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                RawOpencode {
                    url: Some("https://x:1".into()),
                    ..RawOpencode::default()
                },
                "opencode.url",
            ),
            (
                RawOpencode {
                    username: Some("a:b".into()),
                    ..RawOpencode::default()
                },
                "opencode.username",
            ),
            (
                RawOpencode {
                    reconnect_min: Some("10s".into()),
                    reconnect_max: Some("1s".into()),
                    ..RawOpencode::default()
                },
                "opencode.reconnect_max",
            ),
            (
                RawOpencode {
                    idle_timeout: Some("0s".into()),
                    ..RawOpencode::default()
                },
                "opencode.idle_timeout",
            ),
            (
                RawOpencode {
                    gone_after: Some(0),
                    ..RawOpencode::default()
                },
                "opencode.gone_after",
            ),
        ];
        for (raw, key) in cases {
            let e = load(raw, Overrides::default()).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
    }
}
