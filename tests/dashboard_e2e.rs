//! The browser dashboard end to end: `dashboards/web/e2e/run.mjs` starts this build's
//! `sidepanel demo` on a free loopback port and drives the page in headless Debian Chromium with
//! playwright-core (balance and tokens against `/api/sidepanel/state`, setAlert, keyboard,
//! restore, kill/restart recovery, first paint, 100 updates/s). This test runs it and asserts
//! its exit code. Chromium comes from `.ci/test` (apt-get); without `/usr/bin/chromium` the test
//! is skipped with a message — unless `CI` is set, where a missing browser is a failure.

use std::path::Path;
use std::process::Command;

#[test]
fn dashboard_end_to_end_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {chromium} is missing: .ci/test installs Debian's chromium"
        );
        eprintln!("SKIPPED dashboard e2e: {chromium} not found (apt-get install chromium, or run .ci/test)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("dashboards/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "dashboards/web/node_modules lacks playwright-core; build.rs runs npm ci (or run `npm ci` there)"
    );
    let output = Command::new("node")
        .arg(web.join("e2e/run.mjs"))
        .current_dir(&web)
        .env("SIDEPANEL_BIN", env!("CARGO_BIN_EXE_sidepanel"))
        .env("LEAN_REPLAY_BIN", env!("CARGO_BIN_EXE_lean-replay"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node (Node.js 20+ is needed to build and test the dashboard)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "dashboard e2e failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
