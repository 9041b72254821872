//! The SIP socket of the process: UDP, or TCP with Content-Length framing, shared by every call.
//!
//! Invariant: every datagram is stamped with the instant it reached the host (the kernel's
//! stamp, `call::stamp`), every stream frame with the instant its last bytes were read, both
//! as a monotonic `Instant`; each message is then parsed defensively and routed: responses to
//! the transaction that owns their Via branch + CSeq method (2xx retransmissions to the dialog
//! by Call-ID), requests to the dialog that owns their Call-ID. Anything else is refused
//! (never answered 200) or dropped.

use super::message::{self, Parsed};
use crate::call::stamp;
use crate::call::Transport as Kind;
use rsip::SipMessage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A message routed to a call, with the instant it was read off the socket.
#[derive(Debug)]
pub struct Inbound {
    pub parsed: Parsed,
    pub from: SocketAddr,
    pub at: Instant,
}

/// How many inbound messages a call may have queued before the transport drops more for it:
/// a peer flooding retransmissions cannot grow our memory.
const CALL_QUEUE: usize = 256;
/// A stream that sends this much without a complete header is not speaking SIP.
const MAX_TCP_BUFFER: usize = 2 * message::MAX_MESSAGE;

#[derive(Default)]
struct Routes {
    transactions: HashMap<(String, String), mpsc::Sender<Inbound>>,
    dialogs: HashMap<String, mpsc::Sender<Inbound>>,
}

struct Inner {
    kind: Kind,
    local: SocketAddr,
    /// A blocking std socket with kernel receive stamps, read by an OS thread: replies to
    /// strangers and routing do not wait for the async runtime, and arrival times do not
    /// depend on when the thread gets to run (a read 22 ms late once timed an 18x 22 ms late).
    udp: Option<std::net::UdpSocket>,
    tcp: tokio::sync::Mutex<HashMap<SocketAddr, tokio::net::tcp::OwnedWriteHalf>>,
    routes: Mutex<Routes>,
}

/// Cheap to clone; all clones share the socket and the routing table.
#[derive(Clone)]
pub struct SipTransport {
    inner: Arc<Inner>,
}

/// Removes its routes when the call that registered them ends.
pub struct Registration {
    inner: Arc<Inner>,
    call_id: String,
    transactions: Vec<(String, String)>,
    tx: mpsc::Sender<Inbound>,
}

impl Registration {
    /// Routes responses carrying this Via branch and CSeq method to the call.
    pub fn add_transaction(&mut self, branch: &str, method: rsip::Method) {
        let key = (branch.to_string(), method.to_string());
        if let Ok(mut r) = self.inner.routes.lock() {
            r.transactions.insert(key.clone(), self.tx.clone());
        }
        self.transactions.push(key);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut r) = self.inner.routes.lock() {
            r.dialogs.remove(&self.call_id);
            for key in &self.transactions {
                r.transactions.remove(key);
            }
        }
    }
}

impl SipTransport {
    pub async fn bind(addr: SocketAddr, kind: Kind) -> std::io::Result<Self> {
        let (udp, listener, local) = match kind {
            Kind::Udp => {
                let s = std::net::UdpSocket::bind(addr)?;
                // Bounded blocking reads let the reader thread notice the transport is gone.
                s.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
                if let Err(e) = stamp::enable(&s) {
                    tracing::warn!(error = %e, "sip udp: no kernel receive stamps, responses are timed when read");
                }
                let local = s.local_addr()?;
                (Some(s), None, local)
            }
            Kind::Tcp => {
                let l = TcpListener::bind(addr).await?;
                let local = l.local_addr()?;
                (None, Some(l), local)
            }
        };
        let inner = Arc::new(Inner {
            kind,
            local,
            udp,
            tcp: tokio::sync::Mutex::new(HashMap::new()),
            routes: Mutex::new(Routes::default()),
        });
        let weak = Arc::downgrade(&inner);
        if let Some(udp) = &inner.udp {
            let socket = udp.try_clone()?;
            std::thread::Builder::new()
                .name("sip-udp-reader".into())
                .spawn(move || udp_reader(socket, weak))?;
        } else if let Some(listener) = listener {
            tokio::spawn(tcp_acceptor(listener, weak));
        }
        Ok(Self { inner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    pub fn is_reliable(&self) -> bool {
        self.inner.kind == Kind::Tcp
    }

    /// Registers a call's dialog (by Call-ID); its transactions are added on the registration.
    pub fn register(&self, call_id: &str) -> (Registration, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        if let Ok(mut r) = self.inner.routes.lock() {
            r.dialogs.insert(call_id.to_string(), tx.clone());
        }
        (
            Registration {
                inner: self.inner.clone(),
                call_id: call_id.to_string(),
                transactions: Vec::new(),
                tx,
            },
            rx,
        )
    }

    /// Sends one message and returns the instant right after it left our socket.
    pub async fn send(&self, to: SocketAddr, bytes: &[u8]) -> std::io::Result<Instant> {
        send_on(&self.inner, to, bytes).await
    }
}

async fn send_on(inner: &Arc<Inner>, to: SocketAddr, bytes: &[u8]) -> std::io::Result<Instant> {
    if let Some(udp) = &inner.udp {
        // A UDP send does not wait for the peer; it returns as soon as the kernel has the
        // datagram, which on loopback is the moment it is on the wire.
        udp.send_to(bytes, to)?;
        return Ok(Instant::now());
    }
    let mut conns = inner.tcp.lock().await;
    if let std::collections::hash_map::Entry::Vacant(slot) = conns.entry(to) {
        let connect = TcpStream::connect(to);
        let stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect"))??;
        let (read, write) = stream.into_split();
        tokio::spawn(tcp_reader(read, to, Arc::downgrade(inner)));
        slot.insert(write);
    }
    let Some(w) = conns.get_mut(&to) else {
        return Err(std::io::ErrorKind::NotConnected.into());
    };
    if let Err(e) = w.write_all(bytes).await {
        conns.remove(&to);
        return Err(e);
    }
    Ok(Instant::now())
}

fn udp_reader(socket: std::net::UdpSocket, inner: std::sync::Weak<Inner>) {
    let mut buf = vec![0u8; message::MAX_MESSAGE + 1];
    loop {
        let received = stamp::recv_from(&socket, &mut buf);
        // Re-upgraded each time so that dropping the last SipTransport ends this thread.
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (n, from, at) = match received {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP port-unreachable surfaces here on Linux; it concerns one peer only.
                tracing::debug!(error = %e, "sip udp recv");
                continue;
            }
        };
        if let Some(reply) = route(&strong, &buf[..n], from, at) {
            let _ = socket.send_to(reply.as_bytes(), from);
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, inner: std::sync::Weak<Inner>) {
    loop {
        let accepted =
            tokio::time::timeout(std::time::Duration::from_secs(1), listener.accept()).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let Ok(Ok((stream, peer))) = accepted else {
            continue;
        };
        let (read, write) = stream.into_split();
        strong.tcp.lock().await.insert(peer, write);
        tokio::spawn(tcp_reader(read, peer, inner.clone()));
    }
}

/// Content-Length framing (RFC 3261 18.3) over one connection.
async fn tcp_reader(
    mut read: tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    inner: std::sync::Weak<Inner>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A stream read gives no per-segment arrival time (the kernel's would need recvmsg
        // with SO_TIMESTAMPING, and one stamp covers all the bytes a read coalesces), so a
        // TCP frame is timed when its last bytes are read: late by however long this task
        // waited to run. UDP is the measured path; TCP timings keep that bias.
        let at = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let framing = loop {
            match next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    let Some(strong) = inner.upgrade() else {
                        return;
                    };
                    dispatch(&strong, &frame, peer, at).await;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = framing {
            tracing::warn!(%peer, error = %e, "sip tcp: framing lost, closing the connection");
            break;
        }
        if buf.len() > MAX_TCP_BUFFER {
            tracing::warn!(%peer, "sip tcp: oversized frame, closing");
            break;
        }
    }
    if let Some(strong) = inner.upgrade() {
        strong.tcp.lock().await.remove(&peer);
    }
}

/// Why a stream can no longer be cut into messages: the connection is closed, since no later
/// byte could be trusted to start a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("stream message without Content-Length")]
    NoContentLength,
    #[error("stream message with an unusable or repeated Content-Length")]
    BadContentLength,
    #[error("stream header section longer than {} bytes", message::MAX_MESSAGE)]
    Oversized,
}

/// Cuts one complete message off the front of a stream buffer; `Ok(None)` while incomplete.
/// Content-Length is mandatory framing on a stream (RFC 3261 18.3, 20.14).
pub fn next_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, FrameError> {
    let lead = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    buf.drain(..lead);
    let Some(end) = message::body_offset(buf) else {
        return if buf.len() > message::MAX_MESSAGE {
            Err(FrameError::Oversized)
        } else {
            Ok(None)
        };
    };
    let mut length: Option<usize> = None;
    for line in buf[..end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end();
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            let n = message::content_length_of(value.trim())
                .map_err(|_| FrameError::BadContentLength)?;
            if length.is_some() {
                return Err(FrameError::BadContentLength);
            }
            length = Some(n);
        }
    }
    let length = length.ok_or(FrameError::NoContentLength)?;
    if buf.len() < end + length {
        return Ok(None);
    }
    Ok(Some(buf.drain(..end + length).collect()))
}

async fn dispatch(inner: &Arc<Inner>, raw: &[u8], from: SocketAddr, at: Instant) {
    if let Some(reply) = route(inner, raw, from, at) {
        // Answers only on a connection that exists: a stranger never makes us open one.
        if let Some(w) = inner.tcp.lock().await.get_mut(&from) {
            let _ = w.write_all(reply.as_bytes()).await;
        }
    }
}

/// Parses and routes one message; returns the refusal to send back to a stranger, if any.
fn route(inner: &Inner, raw: &[u8], from: SocketAddr, at: Instant) -> Option<String> {
    let parsed = match message::parse(raw) {
        Ok(p) => p,
        Err(message::ParseError::Empty) => return None,
        Err(e) => {
            tracing::info!(%from, error = %e, "sip: dropped unreadable message");
            return None;
        }
    };
    let tx = match inner.routes.lock() {
        Ok(routes) => route_of(&routes, &parsed.msg),
        Err(_) => return None,
    };
    match tx {
        Some(tx) => {
            if tx.try_send(Inbound { parsed, from, at }).is_err() {
                tracing::info!(%from, "sip: call queue full or gone, message dropped");
            }
            None
        }
        None => refusal(&parsed.msg, from),
    }
}

fn route_of(routes: &Routes, msg: &SipMessage) -> Option<mpsc::Sender<Inbound>> {
    let call_id = message::call_id(msg)?;
    match msg {
        SipMessage::Response(_) => {
            let (_, method) = message::cseq(msg)?;
            let by_branch = message::branch(msg)
                .and_then(|b| routes.transactions.get(&(b, method.to_string())).cloned());
            // A 2xx to INVITE outlives its transaction (RFC 3261 17.1.1.2): the dialog ACKs it.
            by_branch.or_else(|| {
                (method == rsip::Method::Invite
                    && message::status(msg).is_some_and(|c| (200..300).contains(&c)))
                .then(|| routes.dialogs.get(&call_id).cloned())
                .flatten()
            })
        }
        SipMessage::Request(_) => routes.dialogs.get(&call_id).cloned(),
    }
}

/// Requests outside any of our dialogs: ACK is dropped, anything else gets 481 when it claims a
/// dialog (To tag) and 403 otherwise. Never a 2xx: we place calls, we do not take them.
fn refusal(msg: &SipMessage, from: SocketAddr) -> Option<String> {
    let SipMessage::Request(req) = msg else {
        tracing::debug!(%from, "sip: stray response dropped");
        return None;
    };
    if req.method == rsip::Method::Ack {
        return None;
    }
    let (code, reason) = if message::to_tag(msg).is_some() {
        (481, "Call/Transaction Does Not Exist")
    } else {
        (403, "Forbidden")
    };
    tracing::info!(%from, method = %req.method, code, "sip: refused request outside our dialogs");
    Some(encode(response_to(req, code, reason, None)))
}

/// A response to `req` copying its Via, From, To (adding `to_tag` when it has none), Call-ID
/// and CSeq (RFC 3261 8.2.6.2). Never a `Server` header: nothing we send names the tool.
pub fn response_to(
    req: &rsip::Request,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> rsip::Response {
    use rsip::headers::UntypedHeader;
    use rsip::Header;
    let mut headers: Vec<Header> = Vec::new();
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) => match to_tag {
                Some(tag) if message::to_tag(&SipMessage::Request(req.clone())).is_none() => {
                    headers.push(Header::To(rsip::headers::To::new(format!(
                        "{};tag={tag}",
                        to.value()
                    ))))
                }
                _ => headers.push(h.clone()),
            },
            _ => {}
        }
    }
    rsip::Response {
        status_code: rsip::StatusCode::Other(code, reason.to_string()),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// The bytes of a response, with its Content-Length.
pub fn encode(mut response: rsip::Response) -> String {
    response.headers.push(message::header(
        "Content-Length",
        response.body.len().to_string(),
    ));
    response.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_frames_are_cut_by_content_length_and_keepalives_skipped() {
        let one = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nl: 3\r\n\r\nabc";
        let mut buf = b"\r\n\r\n".to_vec();
        buf.extend_from_slice(one);
        buf.extend_from_slice(b"SIP/2.0 180 Ringing\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(next_frame(&mut buf), Ok(Some(one.to_vec())));
        assert_eq!(next_frame(&mut buf), Ok(None), "second frame is incomplete");
        buf.extend_from_slice(b"defghij");
        let second = next_frame(&mut buf).expect("framed").expect("complete now");
        assert!(second.ends_with(b"abcdefghij"));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_stream_message_without_a_usable_content_length_loses_framing_and_allocates_nothing() {
        let mut missing = b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\nabc".to_vec();
        assert_eq!(next_frame(&mut missing), Err(FrameError::NoContentLength));
        for bad in ["-1", "999999999", "99999999999999999999999", "1 2", "0x10"] {
            let mut buf = format!("SIP/2.0 200 OK\r\nContent-Length: {bad}\r\n\r\n").into_bytes();
            assert_eq!(
                next_frame(&mut buf),
                Err(FrameError::BadContentLength),
                "{bad}"
            );
        }
        let mut twice = b"SIP/2.0 200 OK\r\nl: 0\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert_eq!(next_frame(&mut twice), Err(FrameError::BadContentLength));
        let mut endless = vec![b'a'; crate::call::sip::message::MAX_MESSAGE + 10];
        assert_eq!(next_frame(&mut endless), Err(FrameError::Oversized));
    }

    #[tokio::test]
    async fn a_stranger_invite_is_refused_with_403_and_never_answered_200() {
        let t = SipTransport::bind("127.0.0.1:0".parse().expect("addr"), Kind::Udp)
            .await
            .expect("bind");
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("peer");
        let path = format!(
            "{}/fixtures/sip/stranger-invite.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path)
            .expect("fixture")
            .replace('\n', "\r\n");
        peer.send_to(text.as_bytes(), t.local_addr())
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) =
            tokio::time::timeout(std::time::Duration::from_secs(2), peer.recv_from(&mut buf))
                .await
                .expect("a reply within 2 s")
                .expect("recv");
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(reply.starts_with("SIP/2.0 403 "), "{reply}");
        assert!(reply.contains("branch=z9hG4bKstranger"));
        // Garbage and torture input keep the socket alive: it still answers afterwards.
        for junk in [
            &b"\x00\xff garbage"[..],
            b"SIP/2.0 200 OK\r\n\r\n",
            &[b'x'; 70_000][..1400],
        ] {
            peer.send_to(junk, t.local_addr()).await.expect("send junk");
        }
        peer.send_to(text.as_bytes(), t.local_addr())
            .await
            .expect("send");
        let (n, _) =
            tokio::time::timeout(std::time::Duration::from_secs(2), peer.recv_from(&mut buf))
                .await
                .expect("still alive")
                .expect("recv");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 403 "));
    }

    #[tokio::test]
    async fn a_tcp_peer_whose_framing_is_lost_is_disconnected_instead_of_buffered() {
        let t = SipTransport::bind("127.0.0.1:0".parse().expect("addr"), Kind::Tcp)
            .await
            .expect("bind");
        let mut peer = TcpStream::connect(t.local_addr()).await.expect("connect");
        // A Content-Length of 999999999 cannot be honoured: waiting for it would hold the
        // connection (and our buffer) hostage, so the stream is closed at once.
        peer.write_all(b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 999999999\r\n\r\nv=0")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(3), peer.read(&mut buf))
            .await
            .expect("closed within 3 s");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
}
