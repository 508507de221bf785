//! Session-store benchmarks: sustained append rate and restore time for a 100k-update
//! session, each beside a baseline measured in the same run (recorded in docs/BENCHMARKS.md).
//!
//! * `append/*` — one transaction per batch of 1000 usage updates. Baseline: raw SQLite
//!   inserts of the same JSON into the same WAL table shape, no encryption, no replay.
//! * `pipeline/*` — finished requests through the real hub; with the store, until the writer
//!   thread has committed every update. Baseline: the same hub without a store.
//! * `restore/*` — the state at a point of a 100k-update session: latest snapshot + replay,
//!   a point in the middle, and a full replay of all 100k updates (no snapshots). Baseline: a
//!   raw SQLite scan of the same 100k rows, without decrypting or parsing.
//!
//! Run: `cargo bench --bench store` (add `-- --quick` for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::RwLock;
use serde_json::json;
use sidepanel::gateway::record::{CostSource, Outcome, RequestRecord};
use sidepanel::gateway::usage::{Cost, Usage};
use sidepanel::hub::{Hub, HubEvent, StateUpdate, UpdateSource, UpdateType};
use sidepanel::metrics::Metrics;
use sidepanel::pricing::PriceTable;
use sidepanel::store::{Reader, RestoreTarget, Store, StoreConfig};

const BATCH: u64 = 1000;
const SESSION: u64 = 100_000;

fn record(i: u64) -> RequestRecord {
    RequestRecord {
        started_at: std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + i * 100),
        method: "POST".into(),
        path: "/chat/completions".into(),
        model: Some(["kimi-k2-5", "qwen3-235b", "llama-3.3-70b"][(i % 3) as usize].into()),
        session_id: Some("ses_bench".into()),
        status: Some(200),
        outcome: Outcome::Ok,
        streamed: true,
        usage: Some(Usage {
            prompt_tokens: 1200 + i % 500,
            completion_tokens: 300 + i % 200,
            total_tokens: 1500 + i % 700,
            cached_tokens: 800,
            cache_creation_tokens: 0,
            reasoning_tokens: 120,
        }),
        cost: Some(Cost {
            usd: 0.00123 + (i % 7) as f64 * 1e-5,
            diem: 0.0,
        }),
        cost_source: CostSource::Upstream,
        error: None,
        latency_ms: 812.5,
        ttfb_ms: Some(143.2),
        response_bytes: 18_432,
        usage_requested: true,
        unscanned: false,
        attempts: 1,
        retries: Vec::new(),
        queue_wait_ms: 0.0,
        limited: None,
    }
}

fn update(seq: u64) -> Arc<StateUpdate> {
    Arc::new(StateUpdate::new(
        UpdateType::Usage,
        1_700_000_000_000 + seq * 100,
        seq,
        json!({"request": record(seq)}),
        UpdateSource::Venice,
    ))
}

fn config(dir: &std::path::Path, snapshot_every: u64) -> StoreConfig {
    let mut c = StoreConfig::in_dir(dir);
    c.snapshot_every = snapshot_every;
    c.retention_days = None;
    c.max_bytes = None;
    c
}

fn raw_db(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (sequence INTEGER PRIMARY KEY, timestamp INTEGER, \
         type TEXT, session_id TEXT, payload BLOB)",
    )
    .expect("table");
    conn
}

fn raw_insert(conn: &mut rusqlite::Connection, batch: &[Arc<StateUpdate>]) {
    let tx = conn.transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare_cached("INSERT INTO events VALUES (?1, ?2, 'usage', 'ses_bench', ?3)")
            .expect("stmt");
        for u in batch {
            let json = serde_json::to_vec(u.as_ref()).expect("json");
            stmt.execute(rusqlite::params![
                u.sequence as i64,
                u.timestamp as i64,
                json
            ])
            .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = raw_db(&dir.path().join("raw.db"));
    let mut next = 1;
    g.bench_function("raw_sqlite_plain_json", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<_>> = (0..iters)
                .map(|_| {
                    let batch = (next..next + BATCH).map(update).collect();
                    next += BATCH;
                    batch
                })
                .collect();
            let start = Instant::now();
            for batch in &batches {
                raw_insert(&mut conn, batch);
            }
            start.elapsed()
        })
    });
    let (mut store, _) = Store::open(&config(dir.path(), 500)).expect("store");
    let mut next = 1;
    g.bench_function("store_encrypted", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<_>> = (0..iters)
                .map(|_| {
                    let batch = (next..next + BATCH).map(update).collect();
                    next += BATCH;
                    batch
                })
                .collect();
            let start = Instant::now();
            for batch in &batches {
                store.append(batch).expect("append");
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn hub() -> (Hub, sidepanel::hub::HubHandle) {
    Hub::new(
        Arc::new(Metrics::new()),
        Arc::new(RwLock::new(PriceTable::venice_defaults())),
    )
}

fn pipeline(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("hub_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (hub, _handle) = hub();
                let start = Instant::now();
                for i in 0..N {
                    hub.apply(HubEvent::Request(Box::new(record(i))));
                }
                total += start.elapsed();
            }
            total
        })
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    g.bench_function("hub_with_store_until_committed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let (store, _) = Store::open(&config(dir.path(), 500)).expect("store");
                let (hub, handle) = hub();
                let (_task, store, sink) = store.start();
                hub.set_sink(sink);
                let start = Instant::now();
                for i in 0..N {
                    hub.apply(HubEvent::Request(Box::new(record(i))));
                }
                let last = handle.with_state(|s| s.sequence);
                rt.block_on(store.wait_committed(last, Duration::from_secs(600)))
                    .expect("committed");
                total += start.elapsed();
                store.close(Duration::from_secs(60));
            }
            total
        })
    });
    g.finish();
}

fn restore(c: &mut Criterion) {
    let mut g = c.benchmark_group("restore");
    g.sample_size(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let batches: Vec<Vec<_>> = (0..SESSION / BATCH)
        .map(|b| (b * BATCH + 1..=(b + 1) * BATCH).map(update).collect())
        .collect();
    let mut conn = raw_db(&dir.path().join("raw.db"));
    for batch in &batches {
        raw_insert(&mut conn, batch);
    }
    let mut stores = Vec::new();
    for (name, every) in [("snapshots", 500), ("no_snapshots", u64::MAX / 4)] {
        let cfg = config(&dir.path().join(name), every);
        let (mut store, _) = Store::open(&cfg).expect("store");
        for batch in &batches {
            store.append(batch).expect("append");
        }
        drop(store);
        stores.push(Reader::open(&cfg).expect("reader"));
    }
    g.bench_function(BenchmarkId::new("raw_sqlite_scan", SESSION), |b| {
        b.iter(|| {
            let mut stmt = conn
                .prepare_cached("SELECT sequence, payload FROM events ORDER BY sequence")
                .expect("stmt");
            let mut rows = stmt.query([]).expect("query");
            let mut bytes = 0usize;
            while let Some(row) = rows.next().expect("row") {
                bytes += row.get_ref(1).expect("blob").as_blob().expect("blob").len();
            }
            bytes
        })
    });
    let at = |reader: &Reader, seq| {
        reader
            .state_at(RestoreTarget::Sequence(seq))
            .expect("state")
    };
    g.bench_function(
        BenchmarkId::new("latest_snapshot_plus_replay", SESSION),
        |b| b.iter(|| at(&stores[0], SESSION)),
    );
    g.bench_function(BenchmarkId::new("mid_session_point", SESSION), |b| {
        b.iter(|| at(&stores[0], SESSION / 2 + 250))
    });
    g.bench_function(BenchmarkId::new("full_replay_no_snapshot", SESSION), |b| {
        b.iter(|| at(&stores[1], SESSION))
    });
    g.finish();
}

criterion_group!(benches, append, pipeline, restore);
criterion_main!(benches);
