//! Watches the robot's mailboxes over IMAP: IDLE when the server offers it, polling otherwise,
//! one task per folder. Progress is the stored (UIDVALIDITY, last UID) checkpoint, so mail that
//! arrived while nobody watched is found on the next start and none is taken in twice.

use crate::config::{ImapConfig, Security};
use crate::email::reply::{self, Arrival};
use crate::outage::Outage;
use crate::Context;
use anyhow::{anyhow, bail, Context as _, Result};
use async_imap::extensions::idle::IdleResponse;
use futures::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// Messages above this are not downloaded: their headers are kept as `unparseable`.
pub const MAX_MESSAGE_BYTES: u32 = 25 * 1024 * 1024;
/// Whole messages fetched in one UID FETCH, by their RFC822.SIZE: one round trip for many
/// replies (issue 11), with the memory held bounded whatever their sizes.
const FETCH_BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// Messages per fetch batch, and so per store transaction.
const FETCH_BATCH_MESSAGES: usize = 50;
/// RFC 2177 asks clients to re-issue IDLE at least every 29 minutes.
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
const LEASE: Duration = Duration::from_secs(60);
/// How often a process that does not own a folder's lease tries to take it: the owner may be
/// a `mystery visit --wait` that exits as soon as its own visit ends.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// After a reply deadline, the watcher reads its folder this soon, so the visit closes on time.
const DEADLINE_MARGIN: Duration = Duration::from_millis(50);
/// How often a waiting watcher looks for a new reply deadline set by any process.
const DEADLINE_POLL: Duration = Duration::from_secs(1);
/// A store watching a folder for the first time takes in only mail delivered after its first
/// visit was created, less this much for clock skew between the IMAP server and us (and for
/// INTERNALDATE's whole seconds). Older mail cannot answer any enquiry of this store.
const FIRST_WATCH_SKEW: Duration = Duration::from_secs(2);

/// The instant up to which a deadline may close a visit: every watched folder has been read
/// up to it (DESIGN.md: a lagging or standby watcher, an IMAP outage or a restart must never
/// turn a reply that arrived in time into `no_reply`). Without IMAP there is nothing to read.
pub async fn read_horizon(cx: &Context, now_ms: i64) -> Result<Option<i64>> {
    let Some(cfg) = &cx.config.imap else {
        return Ok(Some(now_ms));
    };
    Ok(cx
        .store
        .read_horizon(&cfg.username, &cfg.mailboxes)
        .await?
        .map(|h| h.min(now_ms)))
}

#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub type Session = async_imap::Session<ImapStream>;

/// TLS with full verification (chain to a trusted root, name or IP in the certificate):
/// the webpki roots plus the certificates of `ca_file`, never less.
async fn tls_wrap(
    host: &str,
    tcp: TcpStream,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<ImapStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // An IP literal becomes an IP server name, checked against the certificate's IP SANs.
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let handshake = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let tls = tokio::time::timeout(Duration::from_secs(15), handshake)
        .await
        .map_err(|_| anyhow!("IMAP {host}: TLS handshake timed out"))?
        .with_context(|| format!("IMAP {host}: TLS handshake"))?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

/// Connects and logs in; the password is used here and nowhere else.
pub async fn connect(cfg: &ImapConfig) -> Result<Session> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(15),
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| anyhow!("IMAP {}:{}: connection timed out", cfg.host, cfg.port))?
    .with_context(|| format!("IMAP {}:{}", cfg.host, cfg.port))?;
    let extra_roots = match &cfg.ca_file {
        Some(path) if cfg.security != Security::None => {
            crate::config::read_ca_file(path).map_err(|e| anyhow!("imap.ca_file: {e}"))?
        }
        _ => Vec::new(),
    };
    let stream = match cfg.security {
        Security::Tls => tls_wrap(&cfg.host, tcp, &extra_roots).await?,
        Security::None | Security::StartTls => ImapStream::Plain(tcp),
    };
    let mut client = async_imap::Client::new(stream);
    tokio::time::timeout(Duration::from_secs(15), client.read_response())
        .await
        .map_err(|_| anyhow!("IMAP {}:{}: no greeting within 15 s", cfg.host, cfg.port))?
        .ok_or_else(|| anyhow!("IMAP server closed the connection before greeting"))??;
    if cfg.security == Security::StartTls {
        client.run_command_and_check_ok("STARTTLS", None).await?;
        let ImapStream::Plain(tcp) = client.into_inner() else {
            bail!("STARTTLS on a TLS stream")
        };
        client = async_imap::Client::new(tls_wrap(&cfg.host, tcp, &extra_roots).await?);
    }
    let password = cfg.password.as_ref().map(|p| p.expose()).unwrap_or("");
    let session = client
        .login(&cfg.username, password)
        .await
        .map_err(|(e, _)| anyhow!("IMAP login as {} refused: {e}", cfg.username))?;
    Ok(session)
}

/// One mailbox's watcher: reconnects with backoff on any error, stops on `cancel`.
pub async fn watch_mailbox(cx: Arc<Context>, mailbox: String, cancel: CancellationToken) {
    let Some(cfg) = cx.config.imap.clone() else {
        return;
    };
    let lease_name = format!("watcher:{}:{}", cfg.username, mailbox);
    // Named after the watcher, not the server: the store can be what failed.
    let mut imap = Outage::new(format!(
        "the watcher of folder {mailbox} (IMAP {}:{})",
        cfg.host, cfg.port
    ));
    while !cancel.is_cancelled() {
        let now = cx.clock.now().timestamp_millis();
        match cx
            .store
            .acquire_lease(
                &lease_name,
                &cx.instance,
                now,
                now + LEASE.as_millis() as i64,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                // Another process watches this folder: stand by, take over if it dies.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(STANDBY_RETRY) => continue,
                }
            }
            Err(e) => {
                // The store is away: the daemon loop says so once; stand by meanwhile.
                tracing::debug!(mailbox = %mailbox, "lease: {e:#}");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(STANDBY_RETRY) => continue,
                }
            }
        }
        match watch_session(&cx, &cfg, &mailbox, &lease_name, &cancel, &mut imap).await {
            Ok(()) => break,
            Err(e) => {
                cx.count_protocol_error("imap").await;
                let backoff = imap.failed(&e);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
    let _ = cx.store.release_lease(&lease_name, &cx.instance).await;
}

async fn watch_session(
    cx: &Arc<Context>,
    cfg: &ImapConfig,
    mailbox: &str,
    lease: &str,
    cancel: &CancellationToken,
    imap: &mut Outage,
) -> Result<()> {
    let mut session = connect(cfg).await?;
    let idle = cfg.idle && session.capabilities().await?.has_str("IDLE");
    let selected = session
        .select(mailbox)
        .await
        .with_context(|| format!("SELECT {mailbox}"))?;
    let uidvalidity = selected
        .uid_validity
        .ok_or_else(|| anyhow!("{mailbox}: server gives no UIDVALIDITY"))?
        as i64;
    loop {
        let pass_started = cx.now_ms();
        let taken = take_new(cx, &mut session, &cfg.username, mailbox, uidvalidity).await?;
        imap.ok();
        if taken > 0 {
            tracing::debug!(mailbox, taken, "messages taken in");
        }
        let now = cx.clock.now().timestamp_millis();
        if !cx
            .store
            .acquire_lease(lease, &cx.instance, now, now + LEASE.as_millis() as i64)
            .await?
        {
            bail!("lost the watcher lease for {mailbox}");
        }
        if cancel.is_cancelled() {
            let _ = session.logout().await;
            return Ok(());
        }
        let wait = if idle {
            IDLE_RENEW.min(LEASE / 2)
        } else {
            cfg.poll_interval.min(LEASE / 2)
        };
        if idle {
            let mut handle = session.idle();
            handle.init().await?;
            let (fut, stop) = handle.wait_with_timeout(wait);
            let response = tokio::select! {
                r = fut => Some(r?),
                _ = cancel.cancelled() => { drop(stop); None }
                r = deadline_after(cx, pass_started) => { r?; drop(stop); None }
            };
            if let Some(IdleResponse::NewData(_)) = &response {
                tracing::trace!(mailbox, "IDLE: new data");
            }
            session = handle.done().await?;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => {}
                r = deadline_after(cx, pass_started) => r?,
            }
        }
    }
}

/// Returns just after a reply deadline that falls after `read_at` has passed: the folder must
/// then be read again for that visit to close. Deadlines are set by any process sharing the
/// store, so they are looked up again every `DEADLINE_POLL`.
async fn deadline_after(cx: &Context, read_at: i64) -> Result<()> {
    loop {
        let next = cx.store.next_reply_deadline_after(read_at).await?;
        let now = cx.now_ms();
        let sleep = match next {
            Some(d) if d < now => return Ok(()),
            Some(d) => Duration::from_millis(u64::try_from(d - now).unwrap_or(0)) + DEADLINE_MARGIN,
            None => DEADLINE_POLL,
        };
        tokio::time::sleep(sleep.min(DEADLINE_POLL)).await;
    }
}

/// Fetches and takes in every message past the checkpoint, in UID order, then records the
/// folder as read up to the moment this pass began. Returns how many messages it took in.
pub async fn take_new(
    cx: &Arc<Context>,
    session: &mut Session,
    account: &str,
    mailbox: &str,
    uidvalidity: i64,
) -> Result<usize> {
    let checkpoint = cx.store.checkpoint(account, mailbox).await?;
    let last = match checkpoint {
        Some(cp) if cp.uidvalidity == uidvalidity => cp.last_uid,
        // A new UIDVALIDITY means old UIDs mean nothing: rescan; the store's unique key on
        // (mailbox, uidvalidity, uid) and Message-ID checks keep effects single.
        _ => 0,
    };
    // Every message delivered before this instant is found by the search below: once they are
    // all taken in, the folder is read up to here.
    let pass_started = cx.now_ms();
    // NOOP makes the server sync its view of the folder first (Dovecot otherwise reports new
    // mail to a search only after its own delayed notification).
    session.noop().await?;
    let mut uids: Vec<u32> = session
        .uid_search(format!("UID {}:*", last + 1))
        .await?
        .into_iter()
        .filter(|u| i64::from(*u) > last)
        .collect();
    // The instant we knew these messages were there: an upper bound of their arrival, taken
    // after the search so a message that arrived while an earlier batch was being processed
    // never gets an arrival time from before it existed.
    let found = Instant::now();
    uids.sort_unstable();
    // A mailbox watched for the first time by this store may hold years of mail that no visit
    // of this store can have caused: only messages delivered after the store's first visit
    // (minus a margin for clock skew) are taken in, the rest are stepped over.
    let not_before = if checkpoint.is_none() {
        Some(
            cx.store
                .first_visit_created_at()
                .await?
                .unwrap_or(i64::MAX)
                .saturating_sub(FIRST_WATCH_SKEW.as_millis() as i64),
        )
    } else {
        None
    };
    // Loaded after the search, once for the pass, and only if a message needs them
    // (reply::Candidates says why that is safe).
    let candidates = reply::Candidates::when_needed();
    let at = Place {
        account,
        mailbox,
        uidvalidity,
        seen_at: cx.clock.at(found),
    };
    let mut taken = 0;
    for chunk in uids.chunks(FETCH_BATCH_MESSAGES) {
        let set = chunk
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut metas: Vec<(u32, Option<u32>, Option<chrono::DateTime<chrono::Utc>>)> = {
            let mut stream = session
                .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE)")
                .await?;
            let mut out = Vec::new();
            while let Some(f) = stream.next().await {
                let f = f?;
                if let Some(uid) = f.uid {
                    out.push((
                        uid,
                        f.size,
                        f.internal_date().map(|d| d.with_timezone(&chrono::Utc)),
                    ));
                }
            }
            out
        };
        metas.sort_by_key(|m| m.0);
        // Messages are fetched whole several at a time, up to FETCH_BATCH_BYTES, and each
        // such batch is stored in one transaction that also moves the checkpoint past it, so
        // the checkpoint never passes a message not yet stored.
        let mut batch = Batch::default();
        for (uid, size, internal_date) in metas {
            let item = if not_before
                .is_some_and(|limit| internal_date.is_some_and(|d| d.timestamp_millis() < limit))
            {
                Item::SteppedOver
            } else if size.is_some_and(|s| s > MAX_MESSAGE_BYTES) {
                Item::HeaderOnly(size.unwrap_or(0))
            } else {
                Item::Whole
            };
            // A server that gives no size gets a fetch of its own for the message.
            let cost = match item {
                Item::Whole => size.map_or(FETCH_BATCH_BYTES, u64::from),
                _ => 0,
            };
            if !batch.items.is_empty() && batch.bytes + cost > FETCH_BATCH_BYTES {
                taken +=
                    take_batch(cx, session, &at, std::mem::take(&mut batch), &candidates).await?;
            }
            batch.items.push((uid, internal_date, item));
            batch.bytes += cost;
        }
        if !batch.items.is_empty() {
            taken += take_batch(cx, session, &at, batch, &candidates).await?;
        }
    }
    cx.store
        .mark_read(account, mailbox, uidvalidity, pass_started)
        .await?;
    Ok(taken)
}

/// Where the messages of one pass come from, and when the watcher knew they were there.
struct Place<'a> {
    account: &'a str,
    mailbox: &'a str,
    uidvalidity: i64,
    seen_at: chrono::DateTime<chrono::Utc>,
}

impl Place<'_> {
    fn arrival(
        &self,
        uid: u32,
        internal_date: Option<chrono::DateTime<chrono::Utc>>,
        raw: Vec<u8>,
    ) -> Arrival {
        Arrival {
            account: self.account.to_owned(),
            mailbox: self.mailbox.to_owned(),
            uidvalidity: self.uidvalidity,
            uid: i64::from(uid),
            seen_at: self.seen_at,
            internal_date,
            raw,
            too_large: None,
        }
    }
}

/// What a pass takes of one message.
#[derive(Debug, Clone, Copy)]
enum Item {
    Whole,
    /// Above MAX_MESSAGE_BYTES (this many): its header only, kept as unparseable.
    HeaderOnly(u32),
    /// Delivered before this store's first visit: nothing to store, the checkpoint passes it.
    SteppedOver,
}

/// Consecutive UIDs of one folder taken in together: one UID FETCH of their bodies, one store
/// transaction.
#[derive(Default)]
struct Batch {
    items: Vec<(u32, Option<chrono::DateTime<chrono::Utc>>, Item)>,
    /// Of the whole messages.
    bytes: u64,
}

/// Fetches a batch's messages (bodies in one UID FETCH, oversized ones' headers in another)
/// and takes them in, in UID order, in one store transaction that moves the checkpoint to
/// the batch's last UID. A message the server does not return is taken in empty (and so kept
/// as unparseable), as before.
async fn take_batch(
    cx: &Arc<Context>,
    session: &mut Session,
    at: &Place<'_>,
    batch: Batch,
    candidates: &reply::Candidates,
) -> Result<usize> {
    let Some(&(last, _, _)) = batch.items.last() else {
        return Ok(0);
    };
    let of = |want: fn(&Item) -> bool| -> Vec<u32> {
        batch
            .items
            .iter()
            .filter(|(_, _, i)| want(i))
            .map(|(u, _, _)| *u)
            .collect()
    };
    let whole = of(|i| matches!(i, Item::Whole));
    let headers = of(|i| matches!(i, Item::HeaderOnly(_)));
    let mut raws = if whole.is_empty() {
        Default::default()
    } else {
        fetch_raw(session, &whole, "BODY.PEEK[]").await?
    };
    if !headers.is_empty() {
        raws.extend(fetch_raw(session, &headers, "BODY.PEEK[HEADER]").await?);
    }
    let arrivals: Vec<Arrival> = batch
        .items
        .iter()
        .filter_map(|&(uid, internal_date, item)| {
            let raw = raws.remove(&uid).unwrap_or_default();
            let mut arrival = at.arrival(uid, internal_date, raw);
            match item {
                Item::Whole => {}
                Item::HeaderOnly(size) => arrival.too_large = Some(size as usize),
                Item::SteppedOver => return None,
            }
            Some(arrival)
        })
        .collect();
    let n = arrivals.len();
    let checkpoint = crate::store::Checkpoint {
        uidvalidity: at.uidvalidity,
        last_uid: i64::from(last),
    };
    reply::take_in_batch(cx, at.account, at.mailbox, arrivals, checkpoint, candidates).await?;
    Ok(n)
}

/// The bytes of each message of `uids` (`query`: the whole message or its header).
async fn fetch_raw(
    session: &mut Session,
    uids: &[u32],
    query: &str,
) -> Result<std::collections::HashMap<u32, Vec<u8>>> {
    let set = uids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut stream = session.uid_fetch(&set, query).await?;
    let mut out = std::collections::HashMap::new();
    while let Some(f) = stream.next().await {
        let f = f?;
        if let Some(uid) = f.uid.filter(|u| uids.contains(u)) {
            if let Some(raw) = f.body().or_else(|| f.header()) {
                out.insert(uid, raw.to_vec());
            }
        }
    }
    Ok(out)
}
