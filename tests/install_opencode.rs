//! `sidepanel install` on temporary OpenCode setups: the real binary for the command line
//! (project and global), and the library for plan details. Only `baseURL` changes in an
//! existing `opencode.jsonc` (comments and other providers kept), a second run changes
//! nothing, `--dry-run` writes nothing, and the old file is backed up.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sidepanel::install::{self, InstallOptions, Scope, PLUGIN_JS};

const EXISTING: &str = r#"{
  // OpenCode settings (hand-written)
  "$schema": "https://opencode.ai/config.json",
  "model": "venice/llama-3.3-70b",
  /* two providers */
  "provider": {
    "anthropic": {
      "options": { "apiKey": "{env:ANTHROPIC_API_KEY}" }, // untouched
    },
    "venice": {
      "options": {
        "baseURL": "https://api.venice.ai/api/v1",
        "apiKey": "{env:VENICE_API_KEY}"
      }
    }
  },
  "plugin": ["opencode-wakatime"],
}
"#;

/// Runs the real `sidepanel install` with a throwaway HOME and data dir.
fn install(home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sidepanel"))
        .arg("install")
        .args(args)
        .arg("--data-dir")
        .arg(home.join("data"))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("SIDEPANEL_CONFIG")
        .env_remove("SIDEPANEL_LISTEN")
        .env_remove("VENICE_API_KEY")
        .output()
        .expect("run sidepanel install");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn project_install_changes_only_the_base_url_and_is_idempotent() {
    let home = tempfile::tempdir().expect("home");
    let proj = tempfile::tempdir().expect("project");
    let cfg = proj.path().join("opencode.jsonc");
    fs::write(&cfg, EXISTING).expect("write config");
    let p = proj.path().to_str().expect("utf-8 path");

    let (ok, dry) = install(
        home.path(),
        &["--project", p, "--dry-run", "--port", "9911"],
    );
    assert!(ok, "{dry}");
    assert!(
        dry.contains("+        \"baseURL\": \"http://127.0.0.1:9911/api/v1\","),
        "{dry}"
    );
    assert!(
        dry.contains("-        \"baseURL\": \"https://api.venice.ai/api/v1\","),
        "{dry}"
    );
    assert!(
        dry.contains("sidepanel.js") && dry.contains("\"token\": \"<install token>\""),
        "{dry}"
    );
    assert_eq!(
        fs::read_to_string(&cfg).expect("read"),
        EXISTING,
        "dry run wrote"
    );
    assert!(
        !proj.path().join(".opencode").exists(),
        "dry run wrote the plugin"
    );
    assert!(
        !home.path().join("data/token").exists(),
        "dry run created the token"
    );

    let (ok, text) = install(home.path(), &["--project", p, "--port", "9911"]);
    assert!(ok, "{text}");
    let after = fs::read_to_string(&cfg).expect("read");
    let expected = EXISTING.replace(
        "https://api.venice.ai/api/v1",
        "http://127.0.0.1:9911/api/v1",
    );
    assert_eq!(after, expected, "only the baseURL may change");
    let backup = install::backup_path(&cfg);
    assert_eq!(fs::read_to_string(&backup).expect("backup"), EXISTING);

    let plugins = proj.path().join(".opencode/plugins");
    assert_eq!(
        fs::read_to_string(plugins.join("sidepanel.js")).expect("plugin"),
        PLUGIN_JS
    );
    let settings_path = plugins.join("sidepanel.json");
    let settings: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&settings_path).expect("settings")).expect("json");
    let token = fs::read_to_string(home.path().join("data/token")).expect("token");
    assert_eq!(settings["token"], token.trim());
    assert_eq!(settings["url"], "http://127.0.0.1:9911");
    assert_eq!(settings["args"][0], "serve");
    assert!(settings["args"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "127.0.0.1:9911")));
    assert_eq!(mode(&settings_path), 0o600);
    assert_eq!(mode(&home.path().join("data/token")), 0o600);
    let ignore = fs::read_to_string(plugins.join(".gitignore")).expect("gitignore");
    assert!(ignore.lines().any(|l| l == "sidepanel.json"), "{ignore}");
    assert!(
        !text.contains(token.trim()),
        "the token was printed: {text}"
    );

    // Again: nothing changes, no new backup content.
    fs::remove_file(&backup).expect("remove backup");
    let (ok, text) = install(home.path(), &["--project", p, "--port", "9911"]);
    assert!(ok, "{text}");
    assert!(text.contains("nothing to change"), "{text}");
    assert_eq!(fs::read_to_string(&cfg).expect("read"), expected);
    assert!(!backup.exists(), "an unchanged file was backed up");
}

#[test]
fn global_install_creates_a_config_when_there_is_none() {
    let home = tempfile::tempdir().expect("home");
    let (ok, text) = install(home.path(), &["--global"]);
    assert!(ok, "{text}");
    let dir = home.path().join(".config/opencode");
    assert!(dir.join("plugins/sidepanel.js").is_file());
    assert!(!dir.join("plugins/.gitignore").exists());
    let cfg = fs::read_to_string(dir.join("opencode.json")).expect("config");
    let v: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(
        v["provider"]["venice"]["options"]["baseURL"],
        "http://127.0.0.1:8765/api/v1"
    );
    assert_eq!(v["$schema"], "https://opencode.ai/config.json");
    let (ok, text) = install(home.path(), &["--global"]);
    assert!(ok && text.contains("nothing to change"), "{text}");
}

#[test]
fn conflicting_or_broken_input_fails_cleanly() {
    let home = tempfile::tempdir().expect("home");
    let proj = tempfile::tempdir().expect("project");
    let p = proj.path().to_str().expect("utf-8");
    let (ok, text) = install(home.path(), &["--project", p, "--global"]);
    assert!(!ok, "{text}");
    fs::write(
        proj.path().join("opencode.json"),
        "{\"provider\": \"venice\"}",
    )
    .expect("write");
    let (ok, text) = install(home.path(), &["--project", p]);
    assert!(!ok && text.contains("provider"), "{text}");
    assert!(!proj.path().join("opencode.json.sidepanel-backup").exists());
}

#[test]
fn plan_prefers_an_existing_jsonc_and_redacts_the_token_in_diffs() {
    let proj = tempfile::tempdir().expect("project");
    fs::write(proj.path().join("opencode.json"), "{}\n").expect("json");
    fs::write(proj.path().join("opencode.jsonc"), "// c\n{}\n").expect("jsonc");
    let opts = InstallOptions {
        scope: Scope::Project(proj.path().to_owned()),
        gateway: "http://127.0.0.1:8765".into(),
        token: "s3cr3t-token-value-0123456789".into(),
        command: "/usr/bin/sidepanel".into(),
        serve_args: vec!["serve".into()],
    };
    assert_eq!(opts.config_file(), proj.path().join("opencode.jsonc"));
    let plan = install::plan(&opts).expect("plan");
    let diff = plan.diff();
    assert!(!diff.contains("s3cr3t"), "{diff}");
    assert!(diff.contains("+// c") || diff.contains(" // c"), "{diff}");
    plan.apply().expect("apply");
    assert!(install::plan(&opts).expect("again").is_empty());
    assert_eq!(
        fs::read_to_string(proj.path().join("opencode.json")).expect("json"),
        "{}\n"
    );
}
