//! Sends mail over SMTP, one transaction per message, telling what the server refused from
//! what it may have taken.
//!
//! Invariant: a failure before the final `.` of DATA was written is a refusal (transient or
//! permanent by its reply code; nothing was accepted, a retry is safe); no reply, a broken
//! connection, a timeout or a garbled reply after the final `.` is `Uncertain` (the message may
//! be in: it must never be sent again). `sent_at` is the server's 250 to the final dot. TLS is
//! always verified (webpki roots plus `ca_file`); credentials never reach an error or a log.
//!
//! lettre's `AsyncSmtpTransport` reports all of these as one network error, so the transaction
//! is driven here step by step on lettre's `AsyncSmtpConnection`, each step under the
//! configured timeout.
//!
//! Connections are reused (issue 11): a connection goes back to a small pool only after a 250
//! to the final dot, and is taken again for the next message within `IDLE_FOR`. Anything
//! else (a refusal, a lost verdict) ends the connection as before. A reused connection the
//! server closed meanwhile fails at MAIL FROM, before anything of the message was written:
//! that message goes at once on a fresh connection. The line between refusal and uncertain is
//! the same final dot on a reused connection as on a fresh one.

use crate::config::{Security, SmtpConfig};
use lettre::address::Envelope;
use lettre::message::{header, Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)] // AsyncNetworkStream: see Mailer::connect
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::{Code, Severity};
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_rustls::rustls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where in the SMTP transaction something went wrong. Every phase but `FinalReply` is before
/// the final dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect, implicit TLS, the greeting and EHLO.
    Connect,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    /// The DATA command and its 354.
    Data,
    /// Writing the message, before its terminating dot.
    Body,
    /// The dot is written; waiting for the server's verdict.
    FinalReply,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connecting (greeting, EHLO)",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::MailFrom => "MAIL FROM",
            Phase::RcptTo => "RCPT TO",
            Phase::Data => "DATA",
            Phase::Body => "sending the message before its final dot",
            Phase::FinalReply => "awaiting the reply to the final dot",
        })
    }
}

/// What went wrong at a phase. Kept typed (the server's reply code stays readable).
#[derive(Debug)]
pub enum Cause {
    /// lettre's error: a 4xx/5xx reply, a broken connection, an unparsable reply, TLS.
    Smtp(lettre::transport::smtp::Error),
    /// The configured `smtp.timeout` passed without the step ending.
    TimedOut(Duration),
    /// A reply that is neither an acceptance nor a refusal (a 3xx to the final dot).
    UnexpectedReply(Code),
    /// The message needs an extension the server does not offer (8BITMIME, SMTPUTF8).
    Unsupported(&'static str),
    /// The TCP connection could not be made (refused, unreachable).
    Connect(std::io::Error),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Smtp(e) => write!(f, "{e}"),
            Cause::TimedOut(d) => write!(f, "no answer within {}", humantime::format_duration(*d)),
            Cause::UnexpectedReply(code) => write!(f, "unexpected reply {code}"),
            Cause::Unsupported(what) => write!(f, "the server does not offer {what}"),
            Cause::Connect(e) => write!(f, "connection failed: {e}"),
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    pub phase: Phase,
    pub cause: Cause,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.phase, self.cause)
    }
}

/// The final dot was written and no verdict came back.
#[derive(Debug)]
pub struct Unknown {
    /// When the message's last byte before the dot was flushed to the server: the message
    /// cannot have reached the branch earlier, so a reply is measured from here.
    pub data_end: Instant,
    pub failure: Failure,
}

/// A send that did not end in a 250. The displayed text includes the underlying error (the
/// server's reply), because callers store `to_string()`; the typed value stays reachable for
/// questions (`is_transient`, `reply_code`).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused for good (5xx) before taking the message: resending would not help.
    #[error("the SMTP server refused the message ({0})")]
    Permanent(Failure),
    /// Refused for now (4xx), or the connection failed before the final dot: nothing was
    /// accepted, a retry is safe.
    #[error("temporary SMTP failure ({0})")]
    Transient(Failure),
    /// The final dot was written and no verdict came: the message may be in, so it must not
    /// be sent again.
    #[error("SMTP outcome unknown ({})", .0.failure)]
    Uncertain(Unknown),
    /// The message or the TLS settings could not be put together: nothing was sent.
    #[error("cannot build the message ({what}): {error}")]
    Build { what: &'static str, error: BoxError },
    /// We refused the server: its certificate does not verify. Nothing was sent, and retrying
    /// would not help until the configuration (`ca_file`, host) or the server changes.
    #[error(
        "TLS: the server's certificate is not trusted: {0} (a private CA belongs in smtp.ca_file)"
    )]
    Untrusted(rustls::Error),
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendError::Permanent(_) | SendError::Build { .. } | SendError::Untrusted(_)
        )
    }
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
    /// True when the message may have been accepted: never send it again.
    pub fn is_uncertain(&self) -> bool {
        matches!(self, SendError::Uncertain(_))
    }
    /// When the final dot was written, for a send whose verdict was lost.
    pub fn data_end(&self) -> Option<Instant> {
        match self {
            SendError::Uncertain(u) => Some(u.data_end),
            _ => None,
        }
    }
    /// The server's reply code behind a refusal, if it answered with one.
    pub fn reply_code(&self) -> Option<Code> {
        match self {
            SendError::Permanent(f) | SendError::Transient(f) => match &f.cause {
                Cause::Smtp(e) => e.status(),
                Cause::UnexpectedReply(c) => Some(*c),
                _ => None,
            },
            _ => None,
        }
    }
    fn build(what: &'static str, error: impl Into<BoxError>) -> Self {
        SendError::Build {
            what,
            error: error.into(),
        }
    }
}

/// A message the server took.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// When the message's last byte before the final dot was flushed.
    pub data_end: Instant,
    /// When the server's 250 to the final dot arrived: `sent_at`.
    pub accepted: Instant,
}

pub struct Mailer {
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    timeout: Duration,
    /// At most `SESSIONS` SMTP sessions of this process at once: a campaign of hundreds of
    /// visits due together is a handful of connections, as a person's mail client would be.
    sessions: tokio::sync::Semaphore,
    /// Connections whose last message the server took, and since when they wait.
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

/// How long to wait for a polite QUIT after the verdict: it changes nothing.
const QUIT_WAIT: Duration = Duration::from_secs(2);
/// SMTP sessions open at once, in use or waiting in the pool.
pub const SESSIONS: usize = 20;
/// A pooled connection unused this long is closed rather than reused: well under the idle
/// limits servers set (Postfix `smtpd_timeout` 300 s, many providers 30–60 s).
const IDLE_FOR: Duration = Duration::from_secs(20);

impl Mailer {
    pub fn new(cfg: &SmtpConfig) -> Result<Self, SendError> {
        let tls = match cfg.security {
            Security::None => None,
            Security::StartTls | Security::Tls => Some(tls_parameters(cfg)?),
        };
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_owned()))
            }
            _ => None,
        };
        Ok(Self {
            host: cfg.host.clone(),
            port: cfg.port,
            security: cfg.security,
            tls,
            credentials,
            timeout: cfg.timeout,
            sessions: tokio::sync::Semaphore::new(SESSIONS),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Sends and returns the instant of the server's 250 to the final dot.
    pub async fn send(&self, message: Message) -> Result<Instant, SendError> {
        let sent = self
            .send_raw(message.envelope(), &message.formatted())
            .await?;
        Ok(sent.accepted)
    }

    /// One SMTP transaction for `bytes` (a formatted message, CRLF line ends), every step
    /// bounded by `smtp.timeout`, on a pooled connection when one waits.
    pub async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<Sent, SendError> {
        // The semaphore is never closed.
        let _session = self.sessions.acquire().await.ok();
        if let Some(mut conn) = self.take_idle() {
            let result = self.transaction(&mut conn, envelope, bytes).await;
            match result {
                // The first command on a connection that waited: the server may have closed
                // it meanwhile. Nothing of the message was written, so it goes on a fresh one.
                Err(SendError::Transient(Failure {
                    phase: Phase::MailFrom,
                    ..
                })) => {}
                result => {
                    self.end(conn, &result).await;
                    return result;
                }
            }
        }
        let mut conn = self.open().await?;
        let result = self.transaction(&mut conn, envelope, bytes).await;
        self.end(conn, &result).await;
        result
    }

    /// A connection ready for MAIL FROM: greeting, EHLO, STARTTLS and AUTH as configured.
    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        let t = self.timeout;
        // Our EHLO name is lettre's default, `localhost`, as before: no host name leaks.
        let hello = ClientId::default();
        let mut conn = match self.security {
            Security::Tls => {
                let tls = self.tls.clone().ok_or_else(|| {
                    SendError::build("TLS settings", "implicit TLS without TLS parameters")
                })?;
                self.connect(&hello, Some(tls)).await?
            }
            _ => self.connect(&hello, None).await?,
        };
        if self.security == Security::StartTls {
            let params = self.tls.clone().ok_or_else(|| {
                SendError::build("TLS settings", "STARTTLS without TLS parameters")
            })?;
            step(t, Phase::StartTls, conn.starttls(params, &hello)).await?;
        }
        if let Some(credentials) = &self.credentials {
            step(
                t,
                Phase::Auth,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
            )
            .await?;
        }
        Ok(conn)
    }

    /// TCP (TCP_NODELAY), implicit TLS when `tls` is given, greeting and EHLO, under one
    /// timeout. Without NODELAY the final dot, a small write right after the body, waits for
    /// the server's delayed ACK (40 ms on Linux) on a connection past its first exchanges: on
    /// a kept connection, every message, through TLS as in the clear. lettre's own implicit
    /// TLS connect gives no access to its socket, so the TLS layer is lettre's (the same
    /// certificate checks) laid over a socket of ours.
    async fn connect(
        &self,
        hello: &ClientId,
        tls: Option<TlsParameters>,
    ) -> Result<AsyncSmtpConnection, SendError> {
        enum Failed {
            Tcp(std::io::Error),
            Smtp(lettre::transport::smtp::Error),
        }
        let t = self.timeout;
        let connect = async {
            let tcp = connect_tcp(&self.host, self.port)
                .await
                .map_err(Failed::Tcp)?;
            match tls {
                None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), hello)
                    .await
                    .map_err(Failed::Smtp),
                Some(tls) => {
                    #[allow(deprecated)] // lettre's only way to TLS over a given socket
                    let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
                    stream.upgrade_tls(tls).await.map_err(Failed::Smtp)?;
                    AsyncSmtpConnection::connect_with_transport(Box::new(TokioIo(stream)), hello)
                        .await
                        .map_err(Failed::Smtp)
                }
            }
        };
        match tokio::time::timeout(t, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(Failed::Tcp(e))) => Err(refused(Phase::Connect, Cause::Connect(e))),
            Ok(Err(Failed::Smtp(e))) => Err(refused(Phase::Connect, Cause::Smtp(e))),
            Err(_) => Err(refused(Phase::Connect, Cause::TimedOut(t))),
        }
    }

    /// The newest pooled connection still fresh enough; older ones are dropped.
    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_FOR && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    /// After the verdict: a connection whose message was taken waits in the pool; after a
    /// refusal it says QUIT (manners); after an unknown end it is not to be trusted for
    /// anything, so it is just dropped.
    async fn end(&self, mut conn: AsyncSmtpConnection, result: &Result<Sent, SendError>) {
        match result {
            Ok(_) if !conn.has_broken() => {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < SESSIONS {
                    idle.push((conn, Instant::now()));
                    return;
                }
            }
            Ok(_) | Err(SendError::Permanent(_) | SendError::Transient(_)) => {}
            Err(_) => return,
        }
        let _ = tokio::time::timeout(QUIT_WAIT, conn.quit()).await;
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<Sent, SendError> {
        let t = self.timeout;
        let mut options = Vec::new();
        let non_ascii = |a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii();
        if envelope.from().is_some_and(non_ascii) || envelope.to().iter().any(non_ascii) {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(unsupported(Phase::MailFrom, "SMTPUTF8"));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !bytes.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(unsupported(Phase::MailFrom, "8BITMIME"));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        step(
            t,
            Phase::MailFrom,
            conn.command(Mail::new(envelope.from().cloned(), options)),
        )
        .await?;
        for to in envelope.to() {
            step(
                t,
                Phase::RcptTo,
                conn.command(Rcpt::new(to.clone(), vec![])),
            )
            .await?;
        }
        step(t, Phase::Data, conn.command(Data)).await?;
        message(t, conn, bytes).await
    }
}

/// Writes the message and reads the verdict. lettre's `message_iter` writes (and flushes) each
/// part before it pulls the next one from the iterator and writes the terminating dot only
/// once the iterator is exhausted; `BodyThenMark` notes that moment, so an error is known to
/// be before the dot (nothing can have been accepted) or after it (unknown).
async fn message(
    t: Duration,
    conn: &mut AsyncSmtpConnection,
    bytes: &[u8],
) -> Result<Sent, SendError> {
    let body_written = OnceLock::new();
    let parts = BodyThenMark {
        body: Some(bytes),
        written: &body_written,
    };
    let result = tokio::time::timeout(t, conn.message_iter(parts)).await;
    let accepted = Instant::now();
    let Some(&data_end) = body_written.get() else {
        // The dot was never written: the server cannot have taken the message.
        let cause = match result {
            Ok(Err(e)) => Cause::Smtp(e),
            Err(_) => Cause::TimedOut(t),
            // Unreachable by lettre's contract (the dot follows the iterator's end); a reply
            // we cannot place is treated as the unknown it would be.
            Ok(Ok(r)) => Cause::UnexpectedReply(r.code()),
        };
        return Err(refused(Phase::Body, cause));
    };
    let unknown = |cause| {
        SendError::Uncertain(Unknown {
            data_end,
            failure: Failure {
                phase: Phase::FinalReply,
                cause,
            },
        })
    };
    match result {
        Ok(Ok(r)) if r.code().severity == Severity::PositiveCompletion => {
            crate::fault::after_smtp_accepted();
            Ok(Sent { data_end, accepted })
        }
        Ok(Ok(r)) => Err(unknown(Cause::UnexpectedReply(r.code()))),
        // The server answered the dot with a refusal: it says it did not take the message.
        Ok(Err(e)) if e.status().is_some() => Err(refused(Phase::FinalReply, Cause::Smtp(e))),
        // No reply, a broken connection, a reply we cannot read.
        Ok(Err(e)) => Err(unknown(Cause::Smtp(e))),
        Err(_) => Err(unknown(Cause::TimedOut(t))),
    }
}

/// Yields the message once, then notes the instant lettre asks for more: the body is flushed
/// and the terminating dot comes next.
struct BodyThenMark<'a> {
    body: Option<&'a [u8]>,
    written: &'a OnceLock<Instant>,
}

impl<'a> Iterator for BodyThenMark<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let part = self.body.take();
        if part.is_none() {
            let _ = self.written.set(Instant::now());
        }
        part
    }
}

/// Runs one step before the final dot under the timeout: any failure there is a refusal.
async fn step<T>(
    t: Duration,
    phase: Phase,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(t, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(refused(phase, Cause::Smtp(e))),
        Err(_) => Err(refused(phase, Cause::TimedOut(t))),
    }
}

fn unsupported(phase: Phase, what: &'static str) -> SendError {
    // Retrying would meet the same server: this is for good.
    SendError::Permanent(Failure {
        phase,
        cause: Cause::Unsupported(what),
    })
}

/// A failure before the final dot, or a 4xx/5xx to it: the message was not accepted.
/// Transient or permanent by the reply code; without a code (refused connection, timeout,
/// broken connection, garbled reply) transient, bounded by the caller's attempts.
fn refused(phase: Phase, cause: Cause) -> SendError {
    if let Cause::Smtp(e) = &cause {
        if let Some(cert) = certificate_error(e) {
            // An untrusted certificate does not fix itself in a minute: the configuration
            // (ca_file, host) must.
            return SendError::Untrusted(cert.clone());
        }
        if e.is_permanent() {
            return SendError::Permanent(Failure { phase, cause });
        }
    }
    SendError::Transient(Failure { phase, cause })
}

/// The TCP connection of every SMTP session, in the clear or under TLS: NODELAY set
/// (`Mailer::connect` says why).
async fn connect_tcp(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// lettre's TLS stream (futures-io) seen through tokio's I/O traits, as
/// `connect_with_transport` wants it.
#[allow(deprecated)] // AsyncNetworkStream: see Mailer::connect
#[derive(Debug)]
struct TokioIo(AsyncNetworkStream);

impl tokio::io::AsyncRead for TokioIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let stream = std::pin::Pin::new(&mut self.get_mut().0);
        match futures::io::AsyncRead::poll_read(stream, cx, buf.initialize_unfilled()) {
            std::task::Poll::Ready(Ok(n)) => {
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
            other => other.map(|r| r.map(|_| ())),
        }
    }
}

impl tokio::io::AsyncWrite for TokioIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        futures::io::AsyncWrite::poll_write(std::pin::Pin::new(&mut self.get_mut().0), cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        futures::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.get_mut().0), cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        futures::io::AsyncWrite::poll_close(std::pin::Pin::new(&mut self.get_mut().0), cx)
    }
}

impl AsyncTokioStream for TokioIo {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

/// Full verification (chain to a trusted root, host name or IP in the certificate) against the
/// webpki roots plus the certificates of `ca_file`. rustls checks an IP literal host against
/// the certificate's IP SANs.
fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, SendError> {
    let mut builder = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca_file {
        let certs =
            crate::config::read_ca_file(path).map_err(|e| SendError::build("smtp.ca_file", e))?;
        for cert in certs {
            let cert = Certificate::from_der(cert.as_ref().to_vec())
                .map_err(|e| SendError::build("smtp.ca_file", e))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| SendError::build("TLS settings", e))
}

/// The certificate problem behind an error, if that is what it is. io::Error hides its inner
/// error from `source()`, so each io::Error of the chain is opened by hand.
fn certificate_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        let found = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = found {
            return matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
            .then_some(r);
        }
        next = err.source();
    }
    None
}

/// An enquiry as a person's mail client writes it: display name, plain text, our Message-ID,
/// no header naming a tool.
pub struct Enquiry<'a> {
    pub from_name: &'a str,
    pub from_email: &'a str,
    pub to_email: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    /// Without `<>`.
    pub message_id: &'a str,
    pub date: chrono::DateTime<chrono::Utc>,
}

pub fn build_enquiry(e: &Enquiry<'_>) -> Result<Message, SendError> {
    let from = Mailbox::new(
        Some(e.from_name.to_owned()),
        e.from_email
            .parse()
            .map_err(|x| SendError::build("From", x))?,
    );
    let to: Mailbox = e.to_email.parse().map_err(|x| SendError::build("To", x))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(e.subject)
        .message_id(Some(format!("<{}>", e.message_id)))
        .date(std::time::SystemTime::from(e.date))
        .header(header::ContentType::TEXT_PLAIN)
        .body(e.body.to_owned())
        .map_err(|x| SendError::build("the enquiry", x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths, in the clear and implicit TLS, open their socket here.
    #[tokio::test]
    async fn an_smtp_connection_is_opened_with_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = connect_tcp("127.0.0.1", port).await.unwrap();
        assert!(tcp.nodelay().unwrap());
    }

    /// An error whose source is `inner`, as lettre wraps the TLS handshake's io::Error.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "connection error: {}", self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_certificate_error_is_found_inside_the_io_error_that_carries_it() {
        let untrusted = Wrapped(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let found = certificate_error(&untrusted).expect("found");
        assert!(found.to_string().contains("UnknownIssuer"), "{found}");
        let other_tls = Wrapped(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        ));
        assert!(certificate_error(&other_tls).is_none());
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(certificate_error(&refused).is_none());
    }

    #[test]
    fn the_end_of_the_body_is_marked_only_once_its_last_part_was_taken() {
        // issue7: this mark is what tells a failure before the final dot from one after it.
        let mark = OnceLock::new();
        let mut parts = BodyThenMark {
            body: Some(b"Subject: x\r\n\r\nhello\r\n"),
            written: &mark,
        };
        assert!(parts.next().is_some());
        assert!(mark.get().is_none(), "not before the body was written");
        assert!(parts.next().is_none());
        let first = *mark.get().expect("marked once the iterator ends");
        assert!(parts.next().is_none());
        assert_eq!(mark.get(), Some(&first), "the first mark stays");
    }

    #[test]
    fn without_a_reply_code_a_failure_before_the_dot_is_transient_and_never_uncertain() {
        for phase in [Phase::Connect, Phase::Data, Phase::Body] {
            let e = refused(phase, Cause::TimedOut(Duration::from_secs(3)));
            assert!(e.is_transient() && !e.is_uncertain(), "{e}");
        }
        let e = unsupported(Phase::MailFrom, "8BITMIME");
        assert!(e.is_permanent(), "{e}");
    }

    #[test]
    fn an_enquiry_carries_no_header_that_names_a_tool() {
        let m = build_enquiry(&Enquiry {
            from_name: "Claire Dupont",
            from_email: "claire.dupont@robot.test",
            to_email: "contact@lille.branch.test",
            subject: "Demande de devis – Lille",
            body: "Bonjour,\nJe souhaiterais un devis.\nClaire Dupont\n",
            message_id: "1234@robot.test",
            date: crate::clock::from_ms(1_764_000_000_000),
        })
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        for tell in ["x-mailer", "user-agent", "lettre", "mystery", "rust"] {
            assert!(!headers.contains(tell), "{tell} in {headers}");
        }
        assert!(headers.contains("message-id: <1234@robot.test>"));
        assert!(headers.contains("content-type: text/plain; charset=utf-8"));
        assert!(
            headers.contains("from: \"claire dupont\" <claire.dupont@robot.test>")
                || headers.contains("from: claire dupont <claire.dupont@robot.test>")
        );
        assert_eq!(
            m.envelope().from().unwrap().to_string(),
            "claire.dupont@robot.test"
        );
    }
}
