//! The floor of the proxy library: a bare pingora 0.9 HTTP proxy with the gateway's server
//! settings (same threads, same listener, same upstream keep-alive) and none of its work — no
//! metrics, hub, store, limiter, header parsing or body handling. The load harness runs it as
//! target (f) so the gateway's overhead splits into "pingora itself" and "what sidepanel adds"
//! (docs/BENCHMARKS.md). Not a benchmark on its own: `cargo bench --bench pingora_floor` only
//! builds it; the harness starts it as
//!
//! ```text
//! pingora_floor <listen addr> <upstream addr> [threads]
//! ```

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` runs every bench target with `--bench`: nothing to do then.
    let (Some(listen), Some(upstream)) = (args.first(), args.get(1)) else {
        return;
    };
    if listen.starts_with("--") {
        return;
    }
    let upstream: SocketAddr = upstream.parse().expect("upstream address");
    let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(2);
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Floor { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
