#!/usr/bin/env bash
# The side-by-side load harness (issue 9), in one command:
#
#   bash benches/load/run.sh [--smoke] [--rounds N] [--only a,b,c,d,e,f] [--levels 1,10,1000] [--no-install]
#
# 1. installs the peers unless --no-install (idempotent): nginx from Debian (nginx-light),
#    LiteLLM proxy and TensorZero's wheel from PyPI in venvs under ~/.cache/sidepanel-bench
#    (SIDEPANEL_BENCH_PEERS overrides); a failed install is written to
#    target/load-bench/install/<peer>.txt and reported by the harness, never skipped silently;
# 2. builds `sidepanel` (release) and the harness (`cargo bench --bench load --no-run`);
# 3. runs the harness, inside a private network namespace (`unshare -n`, loopback only) when
#    the machine allows it, else on the host's loopback.
#
# Output: a table on stdout, target/load-bench/results.json (machine-readable, not committed),
# logs of every process in target/load-bench/. A full run takes about 20–30 minutes; --smoke
# about 3–5. See docs/BENCHMARKS.md, "Gateway overhead".
set -euo pipefail
cd "$(dirname "$0")/../.."

install=1
args=()
for a in "$@"; do
    if [ "$a" = "--no-install" ]; then install=0; else args+=("$a"); fi
done

out=target/load-bench
peers="${SIDEPANEL_BENCH_PEERS:-$HOME/.cache/sidepanel-bench}"
mkdir -p "$out/install" "$peers"

note() { printf '%s\n' "$*" >&2; }

# Records why a peer could not be installed (the harness reports it as unavailable).
failed() { # peer logfile
    { echo "install failed ($(date -u +%FT%TZ))"; tail -n 5 "$2" 2>/dev/null; } >"$out/install/$1.txt"
    note "  $1: install failed, see $out/install/$1.txt"
}

if [ "$install" = 1 ]; then
    note "peers: checking installs"
    if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        note "  nginx: apt-get install nginx-light"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; } \
            >"$out/install/nginx.log" 2>&1; then
            failed nginx "$out/install/nginx.log"
        else
            rm -f "$out/install/nginx.txt"
        fi
        # The package's own service is not wanted: the harness runs its own nginx.
        service nginx stop >/dev/null 2>&1 || true
    fi
    if [ ! -x "$peers/litellm-venv/bin/litellm" ]; then
        note "  litellm: pip install 'litellm[proxy]' prometheus_client"
        if ! { python3 -m venv "$peers/litellm-venv" &&
            "$peers/litellm-venv/bin/pip" install -q 'litellm[proxy]' prometheus_client; } \
            >"$out/install/litellm.log" 2>&1; then
            failed litellm "$out/install/litellm.log"
        else
            rm -f "$out/install/litellm.txt"
        fi
    fi
    if ! "$peers/tz-venv/bin/python" -c 'import tensorzero' >/dev/null 2>&1; then
        note "  tensorzero: pip install tensorzero==2026.6.0"
        if ! { python3 -m venv "$peers/tz-venv" &&
            "$peers/tz-venv/bin/pip" install -q 'tensorzero==2026.6.0'; } \
            >"$out/install/tensorzero.log" 2>&1; then
            failed tensorzero "$out/install/tensorzero.log"
        else
            rm -f "$out/install/tensorzero.txt"
        fi
    fi
fi

note "build: cargo build --release --bin sidepanel; cargo bench --bench load --bench pingora_floor --no-run"
cargo build --release --bin sidepanel >&2
# Builds the bench target $1 and prints the path of its executable.
bench_exe() {
    cargo bench --bench "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
exe=$(bench_exe load)
[ -n "$exe" ] || { note "could not build the harness (cargo bench --bench load --no-run)"; exit 1; }
# Target (f); without it the harness reports the floor as not built.
floor=$(bench_exe pingora_floor)
[ -n "$floor" ] && export SIDEPANEL_BENCH_FLOOR="$floor"

export SIDEPANEL_BIN="$PWD/target/release/sidepanel" SIDEPANEL_BENCH_PEERS="$peers"
# A private network and PID namespace: loopback only, and nothing the run started outlives it.
if unshare -n -p -f --mount-proc true 2>/dev/null; then
    note "run: $exe ${args[*]:-} (private network + PID namespace, loopback only)"
    export SIDEPANEL_BENCH_NETNS="unshare -n -p"
    exec unshare -n -p -f --mount-proc bash -c 'ip link set lo up && "$0" "$@"' "$exe" --bench "${args[@]}"
elif unshare -n true 2>/dev/null; then
    note "run: $exe ${args[*]:-} (private network namespace, loopback only)"
    export SIDEPANEL_BENCH_NETNS="unshare -n"
    exec unshare -n bash -c 'ip link set lo up && "$0" "$@"' "$exe" --bench "${args[@]}"
else
    note "run: $exe ${args[*]:-} (host loopback)"
    exec "$exe" --bench "${args[@]}"
fi
