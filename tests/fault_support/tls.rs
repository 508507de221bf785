//! A scripted TLS upstream for the fault tests: a throwaway CA (rcgen) whose PEM the gateway
//! trusts, and a listener on `127.0.0.1` whose next connections behave as the test says — a
//! healthy HTTP/2 answer (real frames through the `h2` crate, ALPN `h2`), GOAWAY before, while
//! or after answering, RST_STREAM mid-stream, or a broken handshake (a certificate from an
//! untrusted CA, one for another name, plain-TCP garbage, closing or staying silent during the
//! handshake). It counts live connections, completed handshakes and requests, so a test can
//! tell what reached it and wait for pooled connections to close before counting fds.

use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use parking_lot::Mutex;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The first SSE event of every scripted answer.
pub const FIRST: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n";
/// The end of a complete answer: usage, then `[DONE]`.
pub const DONE: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";

/// How the next connections behave (the first request on each; later ones are healthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A complete SSE answer over h2.
    Healthy,
    /// GOAWAY(NO_ERROR) once the request is read, then the connection closes: no answer.
    GoawayBeforeAnswer,
    /// A graceful GOAWAY between the first event and the end of the answer.
    GoawayWhileAnswering,
    /// A complete answer, then a graceful GOAWAY and the connection closes.
    GoawayAfterAnswer,
    /// The head and the first event, then RST_STREAM(INTERNAL_ERROR) once the test calls
    /// [`TlsUpstream::release`].
    ResetMidStream,
    /// RST_STREAM(REFUSED_STREAM) once the request is read: not processed, safe to retry.
    RefuseStream,
    /// A valid certificate for the right name from a CA the gateway does not trust.
    UntrustedCert,
    /// A certificate from the trusted CA for `wrong.example`.
    WrongName,
    /// Reads the ClientHello and answers with bytes that are not TLS.
    PlainGarbage,
    /// Reads the ClientHello and closes the connection.
    CloseInHandshake,
    /// Reads the ClientHello and never answers.
    SilentHandshake,
}

/// A test CA: its PEM (what the gateway trusts) and the issuer for leaf certificates.
pub struct Ca {
    pub pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// A TLS acceptor presenting a leaf for `host` issued by this CA, offering ALPN h2 and
    /// http/1.1.
    pub fn acceptor(&self, host: &str) -> TlsAcceptor {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key: PrivateKeyDer<'static> = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(tls))
    }
}

struct Acceptors {
    good: TlsAcceptor,
    untrusted: TlsAcceptor,
    wrong_name: TlsAcceptor,
}

/// Counters shared with the connection tasks.
#[derive(Default)]
pub struct Seen {
    /// Connections open right now.
    pub live: AtomicUsize,
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// h2 requests received.
    pub requests: AtomicUsize,
}

/// A running scripted TLS upstream on `127.0.0.1`, certificate for `localhost`.
pub struct TlsUpstream {
    pub port: u16,
    pub seen: Arc<Seen>,
    mode: Arc<Mutex<Mode>>,
    gate: Arc<Semaphore>,
    /// The trusted CA's PEM, for `upstream.ca_file`; kept alive with the upstream.
    pub ca_file: tempfile::NamedTempFile,
}

impl TlsUpstream {
    pub async fn start() -> Self {
        let trusted = Ca::new("sidepanel fault CA");
        let acceptors = Arc::new(Acceptors {
            good: trusted.acceptor("localhost"),
            untrusted: Ca::new("someone else's CA").acceptor("localhost"),
            wrong_name: trusted.acceptor("wrong.example"),
        });
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        ca_file.write_all(trusted.pem.as_bytes()).unwrap();
        ca_file.flush().unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let mode = Arc::new(Mutex::new(Mode::Healthy));
        let gate = Arc::new(Semaphore::new(0));
        let (s, m, g) = (seen.clone(), mode.clone(), gate.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = Conn {
                    seen: s.clone(),
                    gate: g.clone(),
                };
                conn.seen.live.fetch_add(1, Ordering::SeqCst);
                let mode = *m.lock();
                tokio::spawn(conn.serve(tcp, mode, acceptors.clone()));
            }
        });
        Self {
            port,
            seen,
            mode,
            gate,
            ca_file,
        }
    }

    /// `https://localhost:PORT/api/v1`.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}/api/v1", self.port)
    }

    /// How connections accepted from now on behave.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }

    /// Lets one [`Mode::ResetMidStream`] answer send its RST_STREAM.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    pub fn live(&self) -> usize {
        self.seen.live.load(Ordering::SeqCst)
    }

    pub fn handshakes(&self) -> usize {
        self.seen.handshakes.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

/// One accepted connection; counts itself out of `live` when dropped.
struct Conn {
    seen: Arc<Seen>,
    gate: Arc<Semaphore>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.seen.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the connection task asks of the h2 connection it does not own.
enum Goaway {
    Abrupt,
    Graceful,
}

impl Conn {
    async fn serve(self, mut tcp: TcpStream, mode: Mode, acceptors: Arc<Acceptors>) {
        let mut hello = [0u8; 4096];
        let acceptor = match mode {
            Mode::PlainGarbage | Mode::CloseInHandshake | Mode::SilentHandshake => {
                if !matches!(tcp.read(&mut hello).await, Ok(n) if n > 0) {
                    return;
                }
                if mode == Mode::PlainGarbage {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\n\r\nnot TLS at all\r\n")
                        .await;
                }
                if mode != Mode::CloseInHandshake {
                    while matches!(tcp.read(&mut hello).await, Ok(n) if n > 0) {}
                }
                return;
            }
            Mode::UntrustedCert => &acceptors.untrusted,
            Mode::WrongName => &acceptors.wrong_name,
            _ => &acceptors.good,
        };
        // A client that rejects the certificate aborts the handshake here.
        let Ok(tls) = acceptor.accept(tcp).await else {
            return;
        };
        self.seen.handshakes.fetch_add(1, Ordering::SeqCst);
        let _ = self.serve_h2(tls, mode).await;
    }

    async fn serve_h2<T>(&self, io: T, mode: Mode) -> Result<(), h2::Error>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut conn = h2::server::handshake(io).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut first = Some(mode);
        loop {
            tokio::select! {
                next = conn.accept() => match next {
                    Some(Ok((req, respond))) => {
                        self.seen.requests.fetch_add(1, Ordering::SeqCst);
                        let mode = first.take().unwrap_or(Mode::Healthy);
                        let (tx, gate) = (tx.clone(), self.gate.clone());
                        tokio::spawn(answer(req.into_body(), respond, mode, tx, gate));
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
                Some(goaway) = rx.recv() => match goaway {
                    Goaway::Abrupt => conn.abrupt_shutdown(Reason::NO_ERROR),
                    Goaway::Graceful => conn.graceful_shutdown(),
                },
            }
        }
    }
}

/// Reads the request body, then answers as `mode` says.
async fn answer(
    mut body: RecvStream,
    mut respond: SendResponse<Bytes>,
    mode: Mode,
    conn: mpsc::UnboundedSender<Goaway>,
    gate: Arc<Semaphore>,
) -> Result<(), h2::Error> {
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    if mode == Mode::GoawayBeforeAnswer {
        let _ = conn.send(Goaway::Abrupt);
        // Hold the stream (dropping it would reset it) until the connection is gone.
        let _ = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
        return Ok(());
    }
    if mode == Mode::RefuseStream {
        respond.send_reset(Reason::REFUSED_STREAM);
        return Ok(());
    }
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(())
        .unwrap();
    let mut send = respond.send_response(head, false)?;
    send.send_data(Bytes::from_static(FIRST), false)?;
    match mode {
        Mode::ResetMidStream => {
            let _permit = gate.acquire().await;
            send.send_reset(Reason::INTERNAL_ERROR);
            return Ok(());
        }
        Mode::GoawayWhileAnswering => {
            let _ = conn.send(Goaway::Graceful);
        }
        _ => {}
    }
    send.send_data(Bytes::from_static(DONE), true)?;
    if mode == Mode::GoawayAfterAnswer {
        let _ = conn.send(Goaway::Graceful);
    }
    Ok(())
}
