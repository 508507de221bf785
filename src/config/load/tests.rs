//! Unit tests of [`super::load`]: defaults, the shipped file, errors naming their keys,
//! the key rules and override precedence.

use super::*;
use std::time::Duration;

use crate::pricing::PriceTable;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sidepanel.toml");

fn with_key() -> Overrides {
    Overrides {
        api_key: Some("test-key".into()),
        ..Overrides::default()
    }
}

/// Writes `text` to a temporary config file and loads it with `overrides`.
fn load_text(text: &str, mut overrides: Overrides) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidepanel.toml");
    std::fs::write(&path, text).expect("write config");
    overrides.config = Some(path);
    load(&overrides)
}

fn error_of(text: &str, overrides: Overrides) -> String {
    match load_text(text, overrides) {
        Ok(_) => panic!("config {text:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_load() {
    let c = load(&with_key()).expect("defaults load");
    assert_eq!(c.source, None);
    assert_eq!(
        c.listen,
        "127.0.0.1:8765".parse::<SocketAddr>().expect("addr")
    );
    assert!(c.data_dir.ends_with(".config/opencode-sidepanel"));
    assert!(!c.data_dir.starts_with("~"));
    assert_eq!(c.threads, 2);
    let up = &c.upstream;
    assert_eq!(
        (up.host.as_str(), up.port, up.tls),
        ("api.venice.ai", 443, true)
    );
    assert_eq!(up.base_path, "/api/v1");
    assert_eq!(up.api_key.as_ref().map(ApiKey::expose), Some("test-key"));
    assert_eq!(up.read_timeout, Duration::from_secs(300));
    assert_eq!(up.models_refresh, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(up.ca_file, None);
    assert_eq!(c.limits.max_request_body_bytes, 32 << 20);
    assert_eq!(c.limits.max_scan_body_bytes, 8 << 20);
    assert_eq!((c.log.filter.as_str(), c.log.json), ("info", false));
    assert_eq!(c.demo.latency, Duration::from_millis(150));
    assert_eq!(c.demo.client_interval, Some(Duration::from_secs(3)));
    assert_eq!(c.pricing, PriceTable::venice_defaults());
    assert_eq!(c.metrics.max_models, crate::metrics::DEFAULT_MAX_MODELS);
}

#[test]
fn metrics_max_models_is_read_from_the_file() {
    let c = load_text("[metrics]\nmax_models = 2\n", with_key()).expect("config loads");
    assert_eq!(c.metrics.max_models, 2);
}

#[test]
fn shipped_file_loads_and_equals_defaults() {
    let defaults = load(&with_key()).expect("defaults load");
    let shipped = load(&Overrides {
        config: Some(PathBuf::from(SHIPPED)),
        ..with_key()
    })
    .expect("shipped config loads");
    assert_eq!(shipped.source.as_deref(), Some(Path::new(SHIPPED)));
    assert_eq!(shipped.pricing, defaults.pricing);
    // Config has no PartialEq; its Debug form covers every other field.
    let rest = |c: &Config| {
        let other = Config {
            source: None,
            pricing: PriceTable::default(),
            ..c.clone()
        };
        format!("{other:?}")
    };
    assert_eq!(rest(&shipped), rest(&defaults));
}

#[test]
fn unknown_key_is_refused_by_name() {
    let msg = error_of("[upstream]\nurll = \"http://127.0.0.1:1\"\n", with_key());
    assert!(msg.contains("sidepanel.toml"), "{msg}");
    assert!(msg.contains("unknown key `upstream.urll`"), "{msg}");
    assert!(msg.contains("`url`"), "{msg}");
    let msg = error_of("thread = 2\n", with_key());
    assert!(msg.contains("unknown key `thread`"), "{msg}");
}

#[test]
fn bad_duration_names_the_key() {
    let msg = error_of("[upstream]\nread_timeout = \"5 parsecs\"\n", with_key());
    assert!(
        msg.contains("sidepanel.toml: upstream.read_timeout: invalid duration \"5 parsecs\""),
        "{msg}"
    );
    let msg = error_of("[upstream]\nconnect_timeout = \"0s\"\n", with_key());
    assert!(
        msg.contains("upstream.connect_timeout: must be greater than 0"),
        "{msg}"
    );
}

#[test]
fn bad_type_names_the_key() {
    let msg = error_of("listen = \"127.0.0.1:1\"\nthreads = \"two\"\n", with_key());
    assert!(
        msg.contains("sidepanel.toml:2: threads: invalid type"),
        "{msg}"
    );
    let msg = error_of(
        "[pricing.models.\"llama-3.3-70b\"]\ninput = \"cheap\"\n",
        with_key(),
    );
    assert!(
        msg.contains("pricing.models.\"llama-3.3-70b\".input"),
        "{msg}"
    );
    let msg = error_of("listen = \n", with_key());
    assert!(msg.contains("sidepanel.toml:1:"), "{msg}");
}

#[test]
fn bad_values_name_their_keys() {
    for (text, key) in [
        ("threads = 0", "threads"),
        ("listen = \"localhost\"", "listen"),
        ("[log]\nformat = \"xml\"", "log.format"),
        (
            "[limits]\nmax_scan_body_bytes = 0",
            "limits.max_scan_body_bytes",
        ),
        ("[demo]\nbalance_usd = -1.0", "demo.balance_usd"),
        ("[demo]\nbalance_diem = nan", "demo.balance_diem"),
        ("[metrics]\nmax_models = 0", "metrics.max_models"),
        ("[metrics]\nmax_models = 65", "metrics.max_models"),
        (
            "[pricing.models.new-model]\noutput = 1.0",
            "pricing.models.new-model.input",
        ),
    ] {
        let msg = error_of(text, with_key());
        assert!(msg.contains(&format!(": {key}: ")), "{text:?} -> {msg}");
    }
}

#[test]
fn bad_url_is_refused() {
    for url in [
        "ftp://api.venice.ai/",
        "not a url",
        "https://x.ai/v1?q=1",
        "https://user:pw@api.venice.ai/",
    ] {
        let msg = error_of(&format!("[upstream]\nurl = {url:?}\n"), with_key());
        assert!(msg.contains("upstream.url"), "{url} -> {msg}");
    }
    let msg = match load(&Overrides {
        upstream: Some("file:///x".into()),
        ..with_key()
    }) {
        Ok(_) => panic!("file URL accepted"),
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with("command line: upstream.url:"), "{msg}");
}

#[test]
fn missing_key_with_real_upstream_is_refused() {
    let err = load(&Overrides::default()).expect_err("no key must be refused");
    assert!(matches!(err, ConfigError::MissingApiKey { .. }), "{err}");
    assert!(err.to_string().contains("VENICE_API_KEY"));
    let msg = error_of(
        "[upstream]\napi_key_file = \"/nonexistent/key\"\n",
        Overrides::default(),
    );
    assert!(
        msg.contains("upstream.api_key_file: cannot read /nonexistent/key"),
        "{msg}"
    );
}

#[test]
fn loopback_upstream_needs_no_key() {
    for url in [
        "http://127.0.0.1:9000/api/v1/",
        "http://localhost:9000",
        "http://[::1]:9000",
    ] {
        let c = load(&Overrides {
            upstream: Some(url.into()),
            ..Overrides::default()
        })
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(c.upstream.api_key.is_none());
        assert!(!c.upstream.tls);
        assert_eq!(c.upstream.port, 9000);
    }
    let c = load_text(
        "[upstream]\nurl = \"http://127.0.0.1/\"\n",
        Overrides::default(),
    )
    .expect("loads");
    assert_eq!((c.upstream.port, c.upstream.base_path.as_str()), (80, ""));
    assert!(is_loopback_host("127.3.2.1") && is_loopback_host("LOCALHOST"));
    assert!(!is_loopback_host("api.venice.ai") && !is_loopback_host("10.0.0.1"));
}

#[test]
fn key_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("venice.key");
    std::fs::write(&key, "  secret-key\n").expect("write key");
    let text = format!(
        "[upstream]\napi_key_file = {:?}\n",
        key.display().to_string()
    );
    let c = load_text(&text, Overrides::default()).expect("key file loads");
    assert_eq!(
        c.upstream.api_key.as_ref().map(ApiKey::expose),
        Some("secret-key")
    );
    let c = load_text(&text, with_key()).expect("env key loads");
    assert_eq!(
        c.upstream.api_key.as_ref().map(ApiKey::expose),
        Some("test-key")
    );
    std::fs::write(&key, "\n").expect("write empty key");
    let msg = error_of(&text, Overrides::default());
    assert!(
        msg.contains("upstream.api_key_file:") && msg.contains("is empty"),
        "{msg}"
    );
}

#[test]
fn overrides_win_over_file() {
    let text = "listen = \"127.0.0.1:1111\"\ndata_dir = \"/tmp/a\"\n\
                [upstream]\nurl = \"http://127.0.0.1:2222\"\n[log]\nfilter = \"warn\"\n\
                [upstream.x]\n";
    assert!(error_of(text, with_key()).contains("upstream.x"));
    let text = text.trim_end_matches("[upstream.x]\n");
    let overrides = Overrides {
        listen: Some("127.0.0.1:3333".into()),
        upstream: Some("http://localhost:4444/v1".into()),
        data_dir: Some(PathBuf::from("/tmp/b")),
        log_filter: Some("debug".into()),
        ..Overrides::default()
    };
    let c = load_text(text, overrides).expect("loads");
    assert_eq!(c.listen.port(), 3333);
    assert_eq!(
        (c.upstream.host.as_str(), c.upstream.port),
        ("localhost", 4444)
    );
    assert_eq!(c.data_dir, PathBuf::from("/tmp/b"));
    assert_eq!(c.log.filter, "debug");
    let c = load_text(text, Overrides::default()).expect("file values load");
    assert_eq!((c.listen.port(), c.upstream.port), (1111, 2222));
    assert_eq!(c.log.filter, "warn");
}

#[test]
fn file_prices_merge_over_defaults() {
    let base = PriceTable::venice_defaults().len();
    let text = "[pricing.models.my-model]\ninput = 1.0\noutput = 2.0\n";
    let c = load_text(text, with_key()).expect("pricing loads");
    assert_eq!(c.pricing.len(), base + 1);
    let mine = c.pricing.get("my-model").copied();
    assert_eq!(
        mine.map(|p| (p.input, p.output, p.cache_input)),
        Some((1.0, 2.0, None))
    );
    // A field left out keeps the built-in value of that model.
    let text = "[pricing.models.kimi-k2-5]\ninput = 0.6\n";
    let c = load_text(text, with_key()).expect("partial price loads");
    let builtin = PriceTable::venice_defaults().get("kimi-k2-5").copied();
    let kimi = c.pricing.get("kimi-k2-5").copied();
    assert_eq!(kimi.map(|p| p.input), Some(0.6));
    assert_eq!(
        kimi.map(|p| (p.output, p.cache_input)),
        builtin.map(|p| (p.output, p.cache_input))
    );
    assert_eq!(c.pricing.len(), base);
    let text = "[demo]\nclient_interval = \"off\"\n[upstream]\nmodels_refresh = \"0s\"\n";
    let c = load_text(text, with_key()).expect("off loads");
    assert_eq!(
        (c.demo.client_interval, c.upstream.models_refresh),
        (None, None)
    );
}

#[test]
fn debug_never_prints_the_key() {
    let shown = format!("{:?}", with_key());
    assert!(
        !shown.contains("test-key") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn allowed_hosts_are_host_names_and_include_the_listen_address() {
    let c = load_text(
        r#"allowed_hosts = ["Sidepanel.LAN:8765", "::1"]"#,
        with_key(),
    )
    .unwrap();
    assert_eq!(c.allowed_hosts, ["127.0.0.1", "sidepanel.lan", "::1"]);
    let wildcard = load_text("listen = \"0.0.0.0:9\"\nallowed_hosts = []", with_key()).unwrap();
    assert!(wildcard.allowed_hosts.is_empty(), "0.0.0.0 names no host");
    let e = error_of(r#"allowed_hosts = ["ok.lan", "http://x/y"]"#, with_key());
    assert!(e.contains("allowed_hosts[1]"), "{e}");
    let e = error_of(r#"allowed_hosts = "one""#, with_key());
    assert!(e.contains("allowed_hosts"), "{e}");
}
