//! The `[lean]` section of the configuration: defaults (built-in and in the shipped file), every
//! key read, and errors that name the key.

use std::path::PathBuf;
use std::time::Duration;

use sidepanel::config::{load, ConfigError, LeanConfig, Overrides};

fn load_text(text: &str) -> Result<sidepanel::config::Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidepanel.toml");
    std::fs::write(&path, text).expect("write config");
    load(&Overrides {
        config: Some(path),
        api_key: Some("test-key".into()),
        ..Overrides::default()
    })
}

fn key_of(text: &str) -> String {
    match load_text(text) {
        Ok(_) => panic!("config {text:?} should be refused"),
        Err(e) => {
            let shown = e.to_string();
            let key = e.key().unwrap_or_default().to_owned();
            assert!(shown.contains(&key), "the message names the key: {shown}");
            key
        }
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = load_text("").expect("empty file loads");
    assert_eq!(c.lean, LeanConfig::default());
    assert!(c.lean.enabled);
    assert_eq!(c.lean.command, "lean-lsp-mcp");
    assert!(c.lean.args.is_empty());
    assert_eq!(c.lean.project_path, None);
    assert_eq!(c.lean.debounce, Duration::from_millis(300));
    assert_eq!(c.lean.call_timeout, Duration::from_secs(20));
    assert_eq!(c.lean.restart_backoff_max, Duration::from_secs(30));

    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/sidepanel.toml");
    let c = load(&Overrides {
        config: Some(shipped),
        api_key: Some("test-key".into()),
        ..Overrides::default()
    })
    .expect("the shipped file loads");
    assert_eq!(
        c.lean,
        LeanConfig::default(),
        "the shipped file shows the defaults"
    );
}

#[test]
fn every_key_is_read() {
    let project = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[lean]\nenabled = false\ncommand = \"/opt/lean/bin/lean-lsp-mcp\"\nargs = [\"--disable-tools\", \"lean_build\"]\nproject_path = {:?}\ndebounce = \"0s\"\ncall_timeout = \"90s\"\nrestart_backoff_max = \"1m\"\n",
        project.path().display().to_string()
    );
    let c = load_text(&text).expect("loads");
    assert_eq!(
        c.lean,
        LeanConfig {
            enabled: false,
            command: "/opt/lean/bin/lean-lsp-mcp".into(),
            args: vec!["--disable-tools".into(), "lean_build".into()],
            project_path: Some(project.path().to_owned()),
            debounce: Duration::ZERO,
            call_timeout: Duration::from_secs(90),
            restart_backoff_max: Duration::from_secs(60),
        }
    );
}

#[test]
fn errors_name_their_key() {
    assert_eq!(
        key_of("[lean]\nprojekt_path = \"x\"\n"),
        "lean.projekt_path"
    );
    assert_eq!(
        key_of("[lean]\ncall_timeout = \"soon\"\n"),
        "lean.call_timeout"
    );
    assert_eq!(
        key_of("[lean]\ncall_timeout = \"0s\"\n"),
        "lean.call_timeout"
    );
    assert_eq!(
        key_of("[lean]\nrestart_backoff_max = \"0s\"\n"),
        "lean.restart_backoff_max"
    );
    assert_eq!(key_of("[lean]\ndebounce = \"-1s\"\n"), "lean.debounce");
    assert_eq!(key_of("[lean]\ncommand = \"  \"\n"), "lean.command");
    assert_eq!(key_of("[lean]\nargs = \"--x\"\n"), "lean.args");
    assert_eq!(
        key_of("[lean]\nproject_path = \"/nonexistent/sidepanel-lean-project\"\n"),
        "lean.project_path"
    );
    // A missing project does not matter while Lean is disabled.
    assert!(load_text("[lean]\nenabled = false\nproject_path = \"/nonexistent/p\"\n").is_ok());
}
