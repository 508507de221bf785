//! The fuzz targets on the stable toolchain: every committed seed in `tests/fuzz/corpus/<target>/`
//! plus a few thousand deterministic mutations of them, through the same entry points and
//! assertions as the cargo-fuzz binaries (`tests/fuzz/checks.rs`). Not coverage-guided — the
//! longer `cargo fuzz` runs are (docs/RELIABILITY.md) — but it runs in every `cargo test`, and
//! it replays the regression inputs the fuzzer found.

#[path = "fuzz/checks.rs"]
mod checks;

use std::path::PathBuf;

/// Mutations per target (each a fresh input derived from the seeds).
const MUTATIONS: usize = 3000;

/// Tokens the mutator splices in: the syntax the parsers care about.
const DICTIONARY: &[&[u8]] = &[
    b"data:",
    b"data: [DONE]",
    b"\"usage\"",
    b"\"cost\"",
    b"\"error\"",
    b"\r\n",
    b"\n\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"jsonrpc\":\"2.0\"",
    b"\"id\":",
    b"\"params\":",
    b"null",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"1e308",
    b"-0.0",
    b"\"\\u0000\"",
    b"\xff\xfe",
    b"\"tokens\":{\"input\":1e30,\"output\":1e30}",
    b"=",
    b"\"",
    b"[upstream]",
    b"0x7fffffff",
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "{target} has seeds");
    seeds
}

/// One random edit of `input`.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let pos = |rng: &mut fastrand::Rng, v: &Vec<u8>| rng.usize(..=v.len());
    match rng.u8(..7) {
        0 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            input[i] ^= 1 << rng.u8(..8);
        }
        1 if !input.is_empty() => {
            let i = rng.usize(..input.len());
            let n = rng.usize(..=16.min(input.len() - i));
            input.drain(i..i + n);
        }
        2 => {
            let i = pos(rng, input);
            input.insert(i, rng.u8(..));
        }
        3 => {
            let i = pos(rng, input);
            let word = DICTIONARY[rng.usize(..DICTIONARY.len())];
            input.splice(i..i, word.iter().copied());
        }
        4 => {
            // Splice a piece of another seed.
            let other = &seeds[rng.usize(..seeds.len())];
            let a = rng.usize(..=other.len());
            let b = rng.usize(a..=other.len());
            let i = pos(rng, input);
            input.splice(i..i, other[a..b].iter().copied());
        }
        5 if !input.is_empty() => {
            // Repeat a slice (long lines, deep nesting).
            let a = rng.usize(..input.len());
            let b = rng.usize(a..=input.len().min(a + 64));
            let piece = input[a..b].repeat(rng.usize(1..64));
            input.splice(b..b, piece);
        }
        _ => {
            let i = pos(rng, input);
            input.truncate(i);
        }
    }
}

fn run(target: &str, check: fn(&[u8])) {
    run_n(target, check, MUTATIONS);
}

fn run_n(target: &str, check: fn(&[u8]), mutations: usize) {
    let seeds = seeds(target);
    for seed in &seeds {
        check(seed);
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_0010);
    for n in 0..mutations {
        let mut input = seeds[n % seeds.len()].clone();
        for _ in 0..rng.usize(1..8) {
            mutate(&mut rng, &mut input, &seeds);
        }
        let outcome = std::panic::catch_unwind(|| check(&input));
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("fuzz-corpus-{target}-{n}"));
            std::fs::write(&path, &input).expect("write failing input");
            panic!(
                "{target}: mutation {n} failed; input saved to {} (add it to tests/fuzz/corpus/{target}/ once fixed)",
                path.display()
            );
        }
    }
}

#[test]
fn venice_headers_corpus_and_mutations() {
    run("venice_headers", checks::venice_headers);
}

#[test]
fn sse_scanner_corpus_and_mutations() {
    // Fewer: a fifth of the inputs carry a 1 MiB line (slow without optimisations).
    run_n("sse_scanner", checks::sse_scanner, MUTATIONS / 4);
}

#[test]
fn jsonrpc_corpus_and_mutations() {
    run("jsonrpc", checks::jsonrpc);
}

#[test]
fn plugin_event_corpus_and_mutations() {
    run("plugin_event", checks::plugin_event);
}

#[test]
fn config_corpus_and_mutations() {
    run("config", checks::config);
}
