//! `sidepanel simulate` (hidden): the built-in Venice simulator alone, as a process of its own,
//! for the load harness (`benches/load/run.sh`) and manual testing with curl.
//!
//! Owns the flags of that command and serving the simulator's router on the given address with
//! `TCP_NODELAY` on every accepted connection (a small response written after a previous one
//! is not held back by Nagle's algorithm against a delayed ACK: the 40 ms benchmark artefact).
//! Prints `simulator listening on http://ADDR/api/v1` once bound and runs until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Args;

use super::SimConfig;

/// Flags of `sidepanel simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Delay before the response headers, e.g. "0ms" or "150ms".
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0ms")]
    pub latency: Duration,
    /// Pause between streamed content chunks, e.g. "20ms".
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0ms")]
    pub token_interval: Duration,
    /// Requests per rate-limit window per model (default: practically unlimited).
    #[arg(long, value_name = "N", default_value_t = 1_000_000_000)]
    pub rpm: u64,
    /// Tokens per rate-limit window per model (default: practically unlimited).
    #[arg(long, value_name = "N", default_value_t = 1_000_000_000_000)]
    pub tpm: u64,
    /// Starting USD balance.
    #[arg(long, value_name = "USD", default_value_t = 1.0e9)]
    pub balance_usd: f64,
    /// Starting Diem balance.
    #[arg(long, value_name = "DIEM", default_value_t = 0.0)]
    pub balance_diem: f64,
    /// Runtime worker threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
}

impl SimulateArgs {
    /// The simulator settings these flags describe.
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            balance_usd: self.balance_usd,
            balance_diem: self.balance_diem,
            rpm: self.rpm,
            tpm: self.tpm,
            latency: self.latency,
            token_interval: self.token_interval,
            ..SimConfig::default()
        }
    }
}

/// Runs the simulator until SIGINT or SIGTERM.
pub fn run(args: &SimulateArgs) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.clamp(1, 64))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        let (router, _) = super::app(args.sim_config());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        println!("simulator listening on http://{addr}/api/v1");
        axum::serve(listener, router)
            .with_graceful_shutdown(stop_signal())
            .await
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_do_not_limit_a_benchmark() {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let t =
            <T as clap::Parser>::try_parse_from(["t", "--token-interval", "20ms"]).expect("parses");
        let c = t.args.sim_config();
        assert_eq!(c.token_interval, Duration::from_millis(20));
        assert_eq!(c.latency, Duration::ZERO);
        assert!(c.rpm >= 1_000_000 && c.balance_usd >= 1.0e6);
    }
}
