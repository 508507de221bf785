//! Builds the browser dashboard (`dashboards/web`, TypeScript + Vite) and embeds it in the
//! binary.
//!
//! Cargo runs this only when a web source, `package.json`, the lockfile, the Vite/TypeScript
//! config or this file changed (`rerun-if-changed`), so an ordinary `cargo build` of Rust changes
//! never reaches Node at all. When it does run:
//!
//! 1. `npm ci` — only when `node_modules` is missing or the lockfile differs from the copy left in
//!    `node_modules/.sidepanel-lockfile` by the last install (no network otherwise);
//! 2. `vite build` into `$OUT_DIR/web` (~2 s);
//! 3. writes `$OUT_DIR/dashboard_assets.rs`, a table of `(path, content type, include_bytes!)`
//!    that `src/gateway/routes.rs` includes and serves at `/` and `/assets/*`.
//!
//! Concurrent builds (several engineers, `cargo build` beside `cargo clippy`) take a file lock
//! around steps 1–2. Without Node.js and npm the build stops with a message saying what to
//! install. Nothing here is written into the source tree except `node_modules/` and the lock
//! file, both ignored by git.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The dashboard's source folder, relative to the package root.
const WEB: &str = "dashboards/web";
/// What a change to re-bundles.
const INPUTS: &[&str] = &[
    "src",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];
/// Copy of the lockfile `node_modules` was installed from.
const STAMP: &str = "node_modules/.sidepanel-lockfile";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for input in INPUTS {
        println!("cargo:rerun-if-changed={WEB}/{input}");
    }
    println!("cargo:rerun-if-env-changed=SIDEPANEL_NPM");

    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let web = root.join(WEB);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dist = out.join("web");

    if let Err(e) = bundle(&web, &dist) {
        // A panic would print a backtrace hint; a plain message and exit code read better.
        eprintln!("\nerror: building the browser dashboard ({WEB}) failed:\n{e}\n");
        std::process::exit(1);
    }
    let table = asset_table(&dist).unwrap_or_else(|e| {
        eprintln!(
            "error: reading the dashboard bundle in {}: {e}",
            dist.display()
        );
        std::process::exit(1);
    });
    fs::write(out.join("dashboard_assets.rs"), table).expect("write dashboard_assets.rs");
}

/// Steps 1 and 2, under the lock.
fn bundle(web: &Path, dist: &Path) -> Result<(), String> {
    let npm = env::var("SIDEPANEL_NPM").unwrap_or_else(|_| "npm".to_owned());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let npm_ok = Command::new(&npm)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !npm_ok {
        return Err(format!(
            "Node.js (20.19 or later) and npm are needed to build the dashboard that the binary \
             serves at /, and `{}` was not found on PATH.\n\
             Install Node.js 20+ with npm and build again. `bash .ci/test` then installs the \
             rest (the npm packages, and Debian's chromium for the browser tests). SIDEPANEL_NPM \
             names another npm.",
            if node_ok { npm.as_str() } else { "node" }
        ));
    }

    let lock = fs::File::create(web.join(".build-lock"))
        .map_err(|e| format!("cannot create {}/.build-lock: {e}", web.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}/.build-lock: {e}", web.display()))?;

    let lockfile = fs::read(web.join("package-lock.json"))
        .map_err(|e| format!("cannot read {}/package-lock.json: {e}", web.display()))?;
    let installed = fs::read(web.join(STAMP)).ok();
    if !web.join("node_modules").is_dir() || installed.as_deref() != Some(&lockfile[..]) {
        run(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(web),
            "npm ci",
        )?;
        fs::write(web.join(STAMP), &lockfile).map_err(|e| format!("cannot write {STAMP}: {e}"))?;
    }

    let vite = web.join("node_modules/vite/bin/vite.js");
    run(
        Command::new("node")
            .arg(&vite)
            .args(["build", "--emptyOutDir", "--logLevel", "warn", "--outDir"])
            .arg(dist)
            .current_dir(web),
        "vite build",
    )?;
    if !dist.join("index.html").is_file() {
        return Err(format!("vite wrote no index.html into {}", dist.display()));
    }
    Ok(())
}

/// Runs a command with its output captured (build-script stdout is for cargo), showing it on
/// failure.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Step 3: the Rust table of every file in the bundle.
fn asset_table(dist: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    walk(dist, dist, &mut files)?;
    files.sort();
    let mut s = String::from(
        "// Generated by build.rs from dashboards/web: the dashboard bundle, embedded.\n\
         /// Every file of the dashboard bundle: (URL path, content type, bytes).\n\
         static DASHBOARD_ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for rel in &files {
        let _ = writeln!(
            s,
            "    ({:?}, {:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), {:?}))),",
            format!("/{rel}"),
            content_type(rel),
            format!("/web/{rel}"),
        );
    }
    s.push_str("];\n");
    Ok(s)
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(base, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
