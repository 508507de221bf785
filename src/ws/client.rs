//! One WebSocket connection: the reader, the bounded per-client send queue and the writer.
//!
//! Owns the per-connection protocol: subscribe to the hub first; forward no `state.update` until
//! the client called `state.get` or `state.since`, and from then on only updates newer than the
//! sequence that answer covered, so nothing is doubled or lost. The writer drains a queue of
//! `client_queue` messages; the hub side only ever `try_send`s into it. When it is full (the
//! client stopped reading) or the broadcast reports the connection lagged, its updates are
//! dropped until the queue has drained, and then one `state.resync` carries the whole state.
//! A client whose socket accepts nothing for [`STUCK_AFTER`] is disconnected.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::rpc::{self, Incoming, Item, Response};
use super::WsServer;
use crate::hub::StateUpdate;
use crate::services::stopped;
use pingora::server::ShutdownWatch;

/// A client whose socket takes no bytes for this long is dropped.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);
/// A ping is sent this often, which keeps idle connections alive through the proxy.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Longest wait for a close frame to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Encoded notifications kept for reuse across clients.
const ENCODED: usize = 64;

/// `state.update` notifications encoded once and shared by every client.
#[derive(Default)]
pub(super) struct EncodedUpdates {
    recent: parking_lot::Mutex<VecDeque<(u64, Utf8Bytes)>>,
}

impl EncodedUpdates {
    fn encode(&self, u: &StateUpdate) -> Option<Utf8Bytes> {
        let hit = |recent: &VecDeque<(u64, Utf8Bytes)>| {
            recent
                .iter()
                .rev()
                .find(|(s, _)| *s == u.sequence)
                .map(|(_, t)| t.clone())
        };
        if let Some(text) = hit(&self.recent.lock()) {
            return Some(text);
        }
        let text: Utf8Bytes = match u
            .json()
            .and_then(|params| rpc::notification_json("state.update", &params))
        {
            Ok(t) => t.into(),
            Err(e) => {
                tracing::error!(error = %e, sequence = u.sequence, "cannot encode an update");
                return None;
            }
        };
        let mut recent = self.recent.lock();
        if hit(&recent).is_none() {
            if recent.len() == ENCODED {
                recent.pop_front();
            }
            recent.push_back((u.sequence, text.clone()));
        }
        Some(text)
    }
}

#[derive(Serialize)]
struct Resync<'a> {
    sequence: u64,
    state: &'a serde_json::Value,
}

/// Where this client's notifications stand.
#[derive(Debug, Default)]
struct Feed {
    /// The client called `state.get`/`state.since`; until then nothing is forwarded.
    synced: bool,
    /// Updates up to here are covered by what the client already has.
    floor: u64,
    /// Updates are being dropped; a resync follows once the queue has drained.
    lagged: bool,
}

/// The writer is gone; the connection is over.
struct Gone;

struct Conn<'a> {
    server: &'a WsServer,
    tx: mpsc::Sender<Message>,
    feed: Feed,
}

/// Serves one upgraded connection until it closes or the server shuts down.
pub(super) async fn run<S>(
    server: Arc<WsServer>,
    ws: WebSocketStream<S>,
    peer: Option<SocketAddr>,
    mut shutdown: ShutdownWatch,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Subscribe before anything else, so no update published from now on can be missed.
    let mut updates = server.hub.subscribe();
    let (sink, mut stream) = ws.split();
    let (tx, rx) = mpsc::channel(server.config.client_queue);
    let drained = Arc::new(Notify::new());
    let mut writer = tokio::spawn(write_loop(sink, rx, drained.clone()).in_current_span());
    let mut conn = Conn {
        server: &server,
        tx,
        feed: Feed::default(),
    };
    let start = tokio::time::Instant::now() + PING_EVERY;
    let mut keepalive = tokio::time::interval_at(start, PING_EVERY);
    let limit = server.config.max_message_bytes;
    let close = loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break Some(frame(CloseCode::Away, "server shutting down")),
            _ = conn.tx.closed() => break None,
            msg = stream.next() => match msg {
                None => break None,
                Some(Ok(Message::Text(text))) => {
                    if conn.request(text.as_str()).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Binary(_))) => break Some(frame(
                    CloseCode::Unsupported,
                    "binary frames are not supported; send JSON-RPC 2.0 as text",
                )),
                // Ping, pong and close are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => break read_error(e, limit),
            },
            update = updates.recv() => match update {
                Ok(u) => {
                    if conn.forward(&u).is_err() {
                        break None;
                    }
                }
                Err(RecvError::Lagged(n)) => conn.lag("broadcast lagged", n),
                Err(RecvError::Closed) => break Some(frame(CloseCode::Error, "state hub stopped")),
            },
            _ = drained.notified(), if conn.feed.lagged => conn.maybe_resync(),
            _ = keepalive.tick() => {
                let _ = conn.tx.try_send(Message::Ping(Bytes::new()));
            }
        }
    };
    let closing = close.is_some();
    if let Some(f) = close {
        tracing::debug!(code = u16::from(f.code), reason = %f.reason, "closing WebSocket client");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.tx.send(Message::Close(Some(f)))).await;
    }
    drop(conn);
    if closing {
        // Read (and discard) until the peer answers the close, so the socket is not reset
        // under the close frame.
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    }
    if tokio::time::timeout(CLOSE_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    tracing::debug!(?peer, "WebSocket client disconnected");
}

fn frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    }
}

/// The close frame a read error deserves (`None`: the connection is already gone).
fn read_error(e: WsError, limit: usize) -> Option<CloseFrame> {
    match e {
        WsError::Utf8(_) => Some(frame(CloseCode::Invalid, "text frame is not valid UTF-8")),
        WsError::Capacity(c) => {
            tracing::debug!(error = %c, "WebSocket message too big");
            Some(frame(
                CloseCode::Size,
                &format!("message too big (at most {limit} bytes)"),
            ))
        }
        WsError::Protocol(p) => {
            tracing::debug!(error = %p, "WebSocket protocol error");
            Some(frame(CloseCode::Protocol, &format!("protocol error: {p}")))
        }
        other => {
            tracing::debug!(error = %other, "WebSocket read ended");
            None
        }
    }
}

impl Conn<'_> {
    /// Answers one text frame; its response goes into the queue ahead of later updates.
    async fn request(&mut self, text: &str) -> Result<(), Gone> {
        let (reply, synced_to) = self.answer(text).await;
        if let Some(seq) = synced_to {
            self.feed.synced = true;
            self.feed.floor = self.feed.floor.max(seq);
            self.feed.lagged = false;
        }
        if let Some(r) = reply {
            self.tx
                .send(Message::Text(r.into()))
                .await
                .map_err(|_| Gone)?;
        }
        Ok(())
    }

    async fn answer(&self, text: &str) -> (Option<String>, Option<u64>) {
        match rpc::decode(text) {
            Err(resp) => (Some(rpc::encode(&resp)), None),
            Ok(Incoming::Single(item)) => {
                let (resp, synced) = self.one(item).await;
                (resp.map(|r| rpc::encode(&r)), synced)
            }
            Ok(Incoming::Batch(items)) => {
                let mut out = Vec::with_capacity(items.len());
                let mut synced = None;
                for item in items {
                    let (resp, s) = self.one(item).await;
                    out.extend(resp);
                    synced = synced.max(s);
                }
                let reply = (!out.is_empty()).then(|| rpc::encode_batch(&out));
                (reply, synced)
            }
        }
    }

    /// Runs one request; a notification runs too but gets no response (and syncs nothing).
    async fn one(&self, item: Item) -> (Option<Response>, Option<u64>) {
        let req = match item {
            Ok(r) => r,
            Err(resp) => return (Some(*resp), None),
        };
        let result = self.server.methods.call(&req.method, req.params).await;
        let method = rpc::truncate(&req.method, 64);
        match &result {
            Ok(_) => tracing::debug!(%method, "WebSocket request"),
            Err(e) => {
                tracing::debug!(%method, code = e.code, error = %e.message, "WebSocket request failed")
            }
        }
        let Some(id) = req.id else {
            return (None, None);
        };
        match result {
            Ok(reply) => (Some(Response::result(id, reply.result)), reply.synced_to),
            Err(e) => (Some(Response::error(id, e)), None),
        }
    }

    /// Queues one live update without ever waiting.
    fn forward(&mut self, u: &StateUpdate) -> Result<(), Gone> {
        let f = &self.feed;
        if !f.synced || f.lagged || u.sequence <= f.floor {
            return Ok(());
        }
        let Some(text) = self.server.updates.encode(u) else {
            return Ok(());
        };
        match self.tx.try_send(Message::Text(text)) {
            Ok(()) => {
                self.feed.floor = u.sequence;
                self.server.hub.metrics().ws_update_sent(u);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.lag("send queue full", 1);
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(Gone),
        }
    }

    /// The client missed updates: drop them until its queue drains, then resync.
    fn lag(&mut self, why: &'static str, missed: u64) {
        if !self.feed.synced {
            return;
        }
        if !self.feed.lagged {
            tracing::debug!(
                why,
                missed,
                "WebSocket client fell behind; resync when it drains"
            );
        }
        self.feed.lagged = true;
        self.maybe_resync();
    }

    /// Sends the whole state once the queue is empty.
    fn maybe_resync(&mut self) {
        if !self.feed.lagged || self.tx.capacity() < self.tx.max_capacity() {
            return;
        }
        let snap = self.server.hub.snapshot_at(SystemTime::now());
        let params = Resync {
            sequence: snap.sequence,
            state: &snap.state,
        };
        let text = match rpc::notification("state.resync", &params) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a resync");
                return;
            }
        };
        if self.tx.try_send(Message::Text(text.into())).is_ok() {
            tracing::debug!(sequence = snap.sequence, "WebSocket client resynced");
            self.feed.floor = self.feed.floor.max(snap.sequence);
            self.feed.lagged = false;
        }
    }
}

/// Writes queued messages, flushing when the queue is empty; gives up on a stuck client.
async fn write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Message>,
    drained: Arc<Notify>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(msg) = rx.recv().await {
        let closing = matches!(msg, Message::Close(_));
        let step = async {
            sink.feed(msg).await?;
            if closing || rx.is_empty() {
                sink.flush().await?;
            }
            Ok::<_, WsError>(())
        };
        match tokio::time::timeout(STUCK_AFTER, step).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "WebSocket write failed");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    after_s = STUCK_AFTER.as_secs(),
                    "WebSocket client stopped reading; disconnecting it"
                );
                let reason = frame(CloseCode::Policy, "client stopped reading");
                let close = sink.send(Message::Close(Some(reason)));
                let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
                return;
            }
        }
        if closing {
            return;
        }
        if rx.is_empty() {
            drained.notify_one();
        }
    }
}
