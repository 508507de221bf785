//! A scripted upstream on raw TCP, for what no well-behaved server sends: malformed and
//! duplicate headers, split, truncated or reset streams, silence.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

/// One step of a scripted response.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes and flush.
    Write(Vec<u8>),
    /// Wait until the test sends a permit on the script's gate.
    Gate,
    /// Close the connection with a TCP reset.
    Reset,
    /// Never answer (until the peer goes away).
    Hang,
}

/// A response script: the steps for each connection, in order.
pub type Script = Arc<dyn Fn(usize, &[u8]) -> Vec<Step> + Send + Sync>;

/// A running scripted upstream.
pub struct RawUpstream {
    pub addr: std::net::SocketAddr,
    gate: mpsc::UnboundedSender<()>,
    pub requests: Arc<Mutex<Vec<Vec<u8>>>>,
    /// When each request had been read in full, in order.
    pub arrivals: Arc<Mutex<Vec<std::time::SystemTime>>>,
}

impl RawUpstream {
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Lets one `Step::Gate` pass.
    pub fn open_gate(&self) {
        let _ = self.gate.send(());
    }
}

/// Starts a scripted upstream; `script(n, request_bytes)` gives the steps for request `n`.
pub async fn spawn(script: Script) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (gate_tx, gate_rx) = mpsc::unbounded_channel();
    let gate_rx = Arc::new(Mutex::new(gate_rx));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let reqs = requests.clone();
    let times = arrivals.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((sock, _)) = listener.accept().await {
            let script = script.clone();
            let gate = gate_rx.clone();
            let reqs = reqs.clone();
            let times = times.clone();
            let this = n;
            n += 1;
            tokio::spawn(async move {
                let _ = serve_one(sock, this, script, gate, reqs, times).await;
            });
        }
    });
    RawUpstream {
        addr,
        gate: gate_tx,
        requests,
        arrivals,
    }
}

async fn serve_one(
    mut sock: TcpStream,
    n: usize,
    script: Script,
    gate: Arc<Mutex<mpsc::UnboundedReceiver<()>>>,
    reqs: Arc<Mutex<Vec<Vec<u8>>>>,
    times: Arc<Mutex<Vec<std::time::SystemTime>>>,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let request = read_request(&mut sock).await?;
    times.lock().await.push(std::time::SystemTime::now());
    reqs.lock().await.push(request.clone());
    for step in script(n, &request) {
        match step {
            Step::Write(bytes) => {
                sock.write_all(&bytes).await?;
                sock.flush().await?;
            }
            Step::Gate => {
                gate.lock().await.recv().await;
            }
            Step::Reset => {
                socket2::SockRef::from(&sock).set_linger(Some(std::time::Duration::ZERO))?;
                drop(sock);
                return Ok(());
            }
            Step::Hang => {
                let mut buf = [0u8; 1024];
                while sock.read(&mut buf).await? > 0 {}
                return Ok(());
            }
        }
    }
    sock.shutdown().await
}

/// Reads one request: the head, then a `content-length` or chunked body.
async fn read_request(sock: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let chunked = head.contains("transfer-encoding: chunked");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let body = &buf[head_end..];
        let done = if chunked {
            // The terminating chunk ends the body (only the tail can hold it).
            body == b"0\r\n\r\n" || body.ends_with(b"\r\n0\r\n\r\n")
        } else {
            body.len() >= length.unwrap_or(0)
        };
        if done {
            return Ok(buf);
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response head with the given status and extra header lines, chunked body.
pub fn head(status: u16, content_type: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n"
    );
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// The end of a chunked body.
pub fn last_chunk() -> Vec<u8> {
    b"0\r\n\r\n".to_vec()
}
