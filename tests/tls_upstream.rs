//! HTTPS upstreams: the gateway reaches one over rustls, trusting `upstream.ca_file` and
//! verifying the host name, negotiates HTTP/2 through ALPN, and answers 502 to a certificate
//! issued for another name.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use sidepanel::simulator::{self, Observed, SimConfig};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A test CA's PEM (what the gateway trusts) and a leaf certificate it issued for `name`.
struct Pki {
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivateKeyDer<'static>,
}

fn pki(name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sidepanel test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, name);
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        leaf: leaf.der().clone(),
        leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    }
}

/// The simulator served over TLS (ALPN `h2`, then `http/1.1`) on `127.0.0.1`.
struct TlsUpstream {
    port: u16,
    /// The CA file the gateway is told to trust; kept alive with the upstream.
    ca_file: tempfile::NamedTempFile,
    observed: Box<dyn Fn() -> Observed + Send + Sync>,
    /// The ALPN protocol of every TLS handshake the server completed.
    handshakes: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
}

impl TlsUpstream {
    async fn start(cert_name: &str) -> Self {
        let Pki {
            ca_pem,
            leaf,
            leaf_key,
        } = pki(cert_name);
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        ca_file.write_all(ca_pem.as_bytes()).unwrap();
        ca_file.flush().unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf], leaf_key)
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let (router, observed) = simulator::app(SimConfig {
            api_key: Some(GATEWAY_KEY.to_owned()),
            ..SimConfig::default()
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let router = router.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate aborts the handshake here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    seen.lock()
                        .push(stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                        .await;
                });
            }
        });
        Self {
            port,
            ca_file,
            observed: Box::new(observed),
            handshakes,
        }
    }

    /// A gateway config for `https://localhost:PORT/api/v1` trusting only the test CA.
    fn gateway_config(&self) -> sidepanel::config::Config {
        let mut cfg = config(&format!("https://localhost:{}/api/v1", self.port));
        assert!(cfg.upstream.tls);
        assert_eq!(cfg.upstream.host, "localhost");
        cfg.upstream.ca_file = Some(self.ca_file.path().to_path_buf());
        cfg
    }

    fn observed(&self) -> Observed {
        (self.observed)()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_the_right_name_is_reached_over_h2() {
    let up = TlsUpstream::start("localhost").await;
    let gw = gateway(up.gateway_config()).await;

    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .bearer_auth(CLIENT_KEY)
        .json(&chat("kimi-k2-5", true, 32))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    let seen = up.observed();
    assert_eq!(seen.requests, 1);
    assert_eq!(seen.last_version.as_deref(), Some("HTTP/2.0"));
    assert_eq!(
        seen.last_authorization.as_deref(),
        Some(format!("Bearer {GATEWAY_KEY}").as_str())
    );
    assert_eq!(seen.last_path.as_deref(), Some("/api/v1/chat/completions"));
    // The amended body (sent without a length) arrived whole over h2.
    let body = seen.last_body.expect("body seen");
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    let handshakes = up.handshakes.lock().clone();
    assert!(!handshakes.is_empty());
    assert!(
        handshakes.iter().all(|p| p.as_deref() == Some(&b"h2"[..])),
        "ALPN: {handshakes:?}"
    );

    let state = requests_recorded(&gw, 1).await;
    assert_eq!(state.totals.errors, 0);
    assert!(state.totals.prompt_tokens > 0);
    assert!(state.totals.completion_tokens > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_a_certificate_for_another_name_is_refused() {
    let up = TlsUpstream::start("wrong.example").await;
    let gw = gateway(up.gateway_config()).await;

    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .bearer_auth(CLIENT_KEY)
        .json(&chat("kimi-k2-5", true, 32))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers()
            .get("x-sidepanel-error")
            .and_then(|v| v.to_str().ok()),
        Some("upstream_unreachable")
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains("TLSHandshakeFailure"), "{body}");
    assert!(!body.contains(GATEWAY_KEY), "{body}");

    assert_eq!(up.observed().requests, 0, "nothing reached the handler");
    assert!(
        up.handshakes.lock().is_empty(),
        "no TLS handshake completed"
    );
}
