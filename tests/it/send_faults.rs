//! Send once under SMTP faults (issue 7, finding 1): small SMTP servers on 127.0.0.1 that break
//! the transaction at a chosen moment, one test per fault. Invariant proved here: a failure
//! before the final dot is a refusal (retried when transient, with the same bytes and
//! Message-ID), anything lost after it is `send_uncertain` and never sent again, and a reply
//! to such an enquiry is still correlated and measured.
//!
//! For the faults after the dot, the server first relays the complete message to the lab's
//! Postfix, so the branch simulator really has it and answers, as a real server that took the
//! mail and then lost its 250 would.

use crate::common::{self, Backend};
use crate::email_lab::{plan_now, wait_done, Daemon};
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mystery::store::Visit;
use mystery::Context;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// What the server does on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A well-behaved server: 250 to the final dot.
    None,
    /// `421` instead of the greeting.
    Busy,
    /// Reads a little of the message, then drops the connection (before the final dot).
    DropInBody,
    /// Takes the whole message, then drops the connection without a reply.
    DropAfterDot,
    /// Takes the whole message and never answers.
    SilentAfterDot,
    /// Takes the whole message and answers something that is not an SMTP reply.
    GarbleAfterDot,
    /// Takes the whole message and answers this code to the final dot.
    ReplyToDot(u16),
    /// Takes one message (250), then closes the connection, as a server whose idle limit
    /// ended a kept connection.
    CloseAfterOne,
    /// Takes one message (250); on the same connection, takes the next whole message and
    /// drops the connection without a reply.
    DropAfterSecondDot,
}

/// A complete message (up to its final dot) as the server received it, dot-unstuffed.
#[derive(Debug, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Received {
    fn message_id(&self) -> String {
        let text = String::from_utf8_lossy(&self.data);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("Message-ID: ")
                    .or_else(|| l.strip_prefix("Message-Id: "))
            })
            .map(|v| v.trim().trim_matches(['<', '>']).to_owned())
            .unwrap_or_default()
    }
}

struct FaultServer {
    port: u16,
    connections: Arc<AtomicUsize>,
    complete: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Connection n (from 0) meets `script[n]`, later ones `Fault::None`. With `relay`, every
    /// complete message is first handed to the lab's Postfix on that port.
    async fn start(script: Vec<Fault>, relay: Option<u16>) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        // A small receive buffer, so a client still writing a large message is still writing
        // when the server drops the connection (DropInBody).
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let complete = Arc::new(Mutex::new(Vec::new()));
        let (c, m) = (connections.clone(), complete.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = c.fetch_add(1, Ordering::SeqCst);
                let fault = script.get(n).copied().unwrap_or(Fault::None);
                let m = m.clone();
                tokio::spawn(async move {
                    // Every conversation is bounded: a stuck client cannot hold the test.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        converse(stream, fault, relay, m),
                    )
                    .await;
                });
            }
        });
        Self {
            port,
            connections,
            complete,
            task,
        }
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    fn complete(&self) -> Vec<Received> {
        self.complete.lock().unwrap().clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn angle(arg: &str) -> String {
    arg.split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_owned())
        .unwrap_or_default()
}

/// One SMTP conversation under `fault`.
async fn converse(
    stream: TcpStream,
    fault: Fault,
    relay: Option<u16>,
    complete: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    if fault == Fault::Busy {
        stream
            .write_all(b"421 4.3.2 fault.test busy, come back later\r\n")
            .await?;
        return Ok(());
    }
    stream.write_all(b"220 fault.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut taken = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                stream
                    .write_all(b"250-fault.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?
            }
            "MAIL" => {
                from = angle(&line);
                stream.write_all(b"250 2.1.0 Ok\r\n").await?
            }
            "RCPT" => {
                to.push(angle(&line));
                stream.write_all(b"250 2.1.5 Ok\r\n").await?
            }
            "DATA" => {
                stream
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = Vec::new();
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    if stream.read_until(b'\n', &mut raw).await? == 0 {
                        return Ok(());
                    }
                    if fault == Fault::DropInBody && data.len() > 32 * 1024 {
                        // Drop with the rest unread: the kernel answers the client's next
                        // bytes with a reset.
                        return Ok(());
                    }
                    if raw == b".\r\n" {
                        break;
                    }
                    let unstuffed = if raw.starts_with(b"..") {
                        &raw[1..]
                    } else {
                        &raw[..]
                    };
                    data.extend_from_slice(unstuffed);
                }
                let received = Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                };
                complete.lock().unwrap().push(received.clone());
                taken += 1;
                // The faults that depend on the message's place on the connection.
                let fault = match fault {
                    Fault::DropAfterSecondDot if taken >= 2 => Fault::DropAfterDot,
                    Fault::DropAfterSecondDot => Fault::None,
                    Fault::CloseAfterOne => {
                        stream.write_all(b"250 2.0.0 Ok: queued\r\n").await?;
                        return Ok(());
                    }
                    f => f,
                };
                let is_in = matches!(
                    fault,
                    Fault::None
                        | Fault::DropAfterDot
                        | Fault::SilentAfterDot
                        | Fault::GarbleAfterDot
                );
                if let (true, Some(port)) = (is_in, relay) {
                    relay_to_lab(port, &received).await;
                }
                match fault {
                    Fault::DropAfterDot => return Ok(()),
                    Fault::SilentAfterDot => {
                        // Holds the connection, answering nothing, until the client gives up.
                        let mut sink = Vec::new();
                        let _ = stream.read_to_end(&mut sink).await;
                        return Ok(());
                    }
                    Fault::GarbleAfterDot => {
                        stream.write_all(b"thanks, got it!\r\n").await?;
                        return Ok(());
                    }
                    Fault::ReplyToDot(code) => {
                        let text = format!(
                            "{code} {}.0.0 not taken, says the fault server\r\n",
                            code / 100
                        );
                        stream.write_all(text.as_bytes()).await?
                    }
                    _ => stream.write_all(b"250 2.0.0 Ok: queued\r\n").await?,
                }
            }
            "QUIT" => {
                stream.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => stream.write_all(b"250 2.0.0 Ok\r\n").await?,
        }
    }
}

/// Hands a message the fault server took to the lab's Postfix, as a relay would.
async fn relay_to_lab(port: u16, m: &Received) {
    let envelope = Envelope::new(
        Some(m.from.parse().unwrap()),
        m.to.iter().map(|t| t.parse().unwrap()).collect(),
    )
    .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .build();
    transport
        .send_raw(&envelope, &m.data)
        .await
        .expect("the lab's Postfix takes the relayed enquiry");
}

/// A lab configuration whose [smtp] is the fault server, with a short timeout.
async fn fault_context(
    server: &FaultServer,
    branch: &str,
    extra: &str,
) -> (Arc<Context>, tempfile::TempDir) {
    let lab = common::lab();
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let text = common::lab_config(lab, &url, &[("lille", branch)], extra);
    let smtp = format!(
        "port = {}\nsecurity = \"none\"\ntimeout = \"20s\"",
        lab.smtp_port()
    );
    assert!(text.contains(&smtp), "lab_config's [smtp] changed:\n{text}");
    let text = text.replacen(
        &smtp,
        &format!(
            "port = {}\nsecurity = \"none\"\ntimeout = \"3s\"",
            server.port
        ),
        1,
    );
    let config = common::config_from(tmp.path(), &text);
    let store = mystery::store::Store::connect(&url).await.unwrap();
    (common::context(config, store), tmp)
}

/// Claims the visit as due at its own `due_at` (a retry is due a minute later: the test does
/// not wait for it) and runs it to its first stop in this task.
async fn run_attempt(cx: &Arc<Context>, id: &str) -> Visit {
    let due = cx.store.visit(id).await.unwrap().unwrap().due_at;
    let claimed = cx
        .store
        .claim_due(&cx.instance, due.max(cx.now_ms()), 60_000, 1, Some(id))
        .await
        .unwrap();
    let visit = claimed.into_iter().next().expect("the visit is due");
    tokio::time::timeout(Duration::from_secs(60), mystery::visit::run(cx, visit))
        .await
        .expect("an attempt ends within 60 s")
        .unwrap();
    cx.store.visit(id).await.unwrap().unwrap()
}

/// The enquiries the branch simulator received for this address.
fn enquiries_at_branch(address: &str) -> usize {
    common::lab()
        .sim_events()
        .into_iter()
        .filter(|e| e["branch"].as_str() == Some(address) && e["auto"].as_bool() == Some(false))
        .count()
}

/// Faults after the final dot: the message went in (relayed to the lab) and its verdict was
/// lost. Exactly one message, the visit waits `send_uncertain`, and the branch's reply to the
/// kept Message-ID makes it `replied`.
async fn verdict_lost_after_the_dot(fault: Fault) {
    let lab = common::lab();
    let server = FaultServer::start(vec![fault], Some(lab.smtp_port())).await;
    let branch = format!("reply-d1000.{}@lille.branch.test", common::unique());
    let (cx, _tmp) = fault_context(&server, &branch, "").await;
    let daemon = Daemon::start(cx.clone()).await;
    let id = plan_now(&cx, "lille", "devis").await;
    wait_done(&cx, std::slice::from_ref(&id), Duration::from_secs(60)).await;
    // A reply may end the visit while the send still waits for its verdict (SilentAfterDot):
    // the verdict is recorded when the timeout passes.
    let start = std::time::Instant::now();
    let v = loop {
        let v = cx.store.visit(&id).await.unwrap().unwrap();
        if v.send_uncertain || start.elapsed() > Duration::from_secs(30) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    daemon.stop().await;

    let truth = common::lab().sim_events().into_iter().find(|e| {
        e["branch"].as_str() == Some(branch.as_str()) && e["auto"].as_bool() == Some(false)
    });
    eprintln!(
        "{fault:?}: outcome {:?}, error {:?}, time_to_reply_ms {:?} (from the final dot); \
         due {} dot {:?} reply {:?}; simulator picked up at {:?}, replied at {:?}",
        v.outcome,
        v.error,
        v.time_to_reply_ms,
        v.due_at,
        v.data_end_at,
        v.first_reply_at,
        truth.as_ref().map(|t| t["received_at_ms"].clone()),
        truth.as_ref().map(|t| t["sent_at_ms"].clone()),
    );
    assert_eq!(v.outcome.as_deref(), Some("replied"), "{v:?}");
    assert!(v.send_uncertain, "the report must flag the send: {v:?}");
    assert_eq!(v.sent_at, None, "no 250 came: {v:?}");
    assert!(
        v.data_end_at.is_some(),
        "the final dot's instant is kept: {v:?}"
    );
    assert!(
        v.time_to_reply_ms.is_some(),
        "the reply is measured from the final dot: {v:?}"
    );
    assert_eq!(v.correlation.as_deref(), Some("header"), "{v:?}");
    assert!(
        v.error.as_deref().unwrap_or("").contains("final dot"),
        "{v:?}"
    );
    let received = server.complete();
    assert_eq!(
        (server.connections(), received.len()),
        (1, 1),
        "one connection, one message over the whole visit"
    );
    assert_eq!(
        Some(received[0].message_id()),
        v.message_id,
        "Message-ID kept"
    );
    assert_eq!(
        enquiries_at_branch(&branch),
        1,
        "the branch received the enquiry exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_connection_dropped_after_the_final_dot_is_never_resent_and_its_reply_counts() {
    verdict_lost_after_the_dot(Fault::DropAfterDot).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_server_silent_after_the_final_dot_is_never_resent_and_its_reply_counts() {
    verdict_lost_after_the_dot(Fault::SilentAfterDot).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_garbled_reply_to_the_final_dot_is_never_resent_and_its_reply_counts() {
    verdict_lost_after_the_dot(Fault::GarbleAfterDot).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_connection_dropped_before_the_final_dot_is_retried_and_delivered_once() {
    let server = FaultServer::start(vec![Fault::DropInBody], None).await;
    // 8 MB of body: more than the client's socket buffer and the server's together, so the
    // client is still writing the message when the server drops the connection.
    let line = "Je précise ma demande ligne après ligne, pour un devis complet et détaillé.\n";
    let big = line.repeat(8 * 1024 * 1024 / line.len());
    let scenario = format!(
        "\n[[scenarios]]\nid = \"long\"\nchannel = \"email\"\nsubject = \"Demande détaillée\"\n\
         reply_deadline = \"20s\"\nbody = \"\"\"{big}\"\"\"\n"
    );
    let (cx, _tmp) = fault_context(&server, "contact@lille.branch.test", &scenario).await;
    let id = plan_now(&cx, "lille", "long").await;

    let first = run_attempt(&cx, &id).await;
    eprintln!("dropped in the body: {:?}", first.error);
    assert_eq!(
        first.state, "planned",
        "a transient refusal is retried: {first:?}"
    );
    assert!(!first.send_uncertain, "{first:?}");
    assert!(
        first
            .error
            .as_deref()
            .unwrap_or("")
            .contains("before its final dot"),
        "{first:?}"
    );
    assert!(server.complete().is_empty(), "nothing complete yet");

    let second = run_attempt(&cx, &id).await;
    assert_eq!(second.state, "awaiting_reply", "{second:?}");
    assert!(
        second.sent_at.is_some() && !second.send_uncertain,
        "{second:?}"
    );
    let received = server.complete();
    assert_eq!(received.len(), 1, "exactly one complete message");
    assert_eq!(server.connections(), 2);
    assert_eq!(Some(received[0].message_id()), second.message_id);
    assert_eq!(
        first.message_id, second.message_id,
        "one Message-ID for both attempts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_451_to_the_final_dot_is_retried_with_the_same_message_and_message_id() {
    let server = FaultServer::start(vec![Fault::ReplyToDot(451)], None).await;
    let (cx, _tmp) = fault_context(&server, "contact@lille.branch.test", "").await;
    let id = plan_now(&cx, "lille", "devis").await;

    let first = run_attempt(&cx, &id).await;
    assert_eq!(first.state, "planned", "{first:?}");
    assert!(
        first.error.as_deref().unwrap_or("").contains("451"),
        "{first:?}"
    );
    let second = run_attempt(&cx, &id).await;
    assert_eq!(second.state, "awaiting_reply", "{second:?}");
    assert!(
        second.sent_at.is_some() && !second.send_uncertain,
        "{second:?}"
    );

    let received = server.complete();
    assert_eq!(received.len(), 2, "refused once, taken once");
    assert_eq!(
        received[0].data, received[1].data,
        "the retry sends the very same bytes"
    );
    assert_eq!(Some(received[0].message_id()), second.message_id);
    assert_eq!(first.message_id, second.message_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_554_to_the_final_dot_ends_the_visit_send_failed() {
    let server = FaultServer::start(vec![Fault::ReplyToDot(554)], None).await;
    let (cx, _tmp) = fault_context(&server, "contact@lille.branch.test", "").await;
    let id = plan_now(&cx, "lille", "devis").await;

    let v = run_attempt(&cx, &id).await;
    assert_eq!(
        (v.state.as_str(), v.outcome.as_deref()),
        ("done", Some("send_failed")),
        "{v:?}"
    );
    assert!(!v.send_uncertain && v.sent_at.is_none(), "{v:?}");
    assert!(v.error.as_deref().unwrap_or("").contains("554"), "{v:?}");
    assert_eq!(server.connections(), 1, "never retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_421_greeting_is_retried_and_the_retry_delivers() {
    let server = FaultServer::start(vec![Fault::Busy], None).await;
    let (cx, _tmp) = fault_context(&server, "contact@lille.branch.test", "").await;
    let id = plan_now(&cx, "lille", "devis").await;

    let first = run_attempt(&cx, &id).await;
    assert_eq!(first.state, "planned", "{first:?}");
    assert!(
        first.error.as_deref().unwrap_or("").contains("421"),
        "{first:?}"
    );
    let second = run_attempt(&cx, &id).await;
    assert_eq!(second.state, "awaiting_reply", "{second:?}");
    assert_eq!(server.complete().len(), 1);
    assert_eq!(Some(server.complete()[0].message_id()), second.message_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue7_a_refused_connection_is_retried_a_bounded_number_of_times() {
    // A port that was just free: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = FaultServer::start(vec![], None).await;
    let (cx, _tmp) = fault_context(&server, "contact@lille.branch.test", "").await;
    let mut config = (*cx.config).clone();
    config.smtp.as_mut().unwrap().port = closed;
    let cx = common::context(config, cx.store.clone());
    let id = plan_now(&cx, "lille", "devis").await;

    let mut states = Vec::new();
    for _ in 0..3 {
        let v = run_attempt(&cx, &id).await;
        states.push((v.state.clone(), v.outcome.clone()));
        if v.state == "done" {
            eprintln!("refused connection, last error: {:?}", v.error);
            break;
        }
    }
    assert_eq!(
        states,
        [
            ("planned".to_owned(), None),
            ("planned".to_owned(), None),
            ("done".to_owned(), Some("send_failed".to_owned()))
        ],
        "two retries, then send_failed"
    );
}

/// Two visits of one context run one after the other, each to its first stop.
async fn two_enquiries(server: &FaultServer) -> (Visit, Visit) {
    let (cx, _tmp) = fault_context(server, "contact@lille.branch.test", "").await;
    let first = plan_now(&cx, "lille", "devis").await;
    let second = plan_now(&cx, "lille", "devis").await;
    let first = run_attempt(&cx, &first).await;
    let second = run_attempt(&cx, &second).await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread")]
async fn issue11_enquiries_sent_one_after_the_other_share_one_connection() {
    let server = FaultServer::start(vec![], None).await;
    let (first, second) = two_enquiries(&server).await;
    for v in [&first, &second] {
        assert_eq!(v.state, "awaiting_reply", "{v:?}");
        assert!(v.sent_at.is_some() && !v.send_uncertain, "{v:?}");
    }
    let received = server.complete();
    assert_eq!((server.connections(), received.len()), (1, 2));
    assert_eq!(Some(received[0].message_id()), first.message_id);
    assert_eq!(Some(received[1].message_id()), second.message_id);
    assert_eq!(received[1].to, ["contact@lille.branch.test"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue11_a_kept_connection_the_server_closed_is_replaced_and_the_enquiry_goes_once() {
    let server = FaultServer::start(vec![Fault::CloseAfterOne], None).await;
    let (first, second) = two_enquiries(&server).await;
    assert_eq!(
        second.state, "awaiting_reply",
        "sent now, not later: {second:?}"
    );
    assert!(
        second.sent_at.is_some() && !second.send_uncertain,
        "{second:?}"
    );
    let received = server.complete();
    assert_eq!((server.connections(), received.len()), (2, 2));
    assert_eq!(Some(received[0].message_id()), first.message_id);
    assert_eq!(
        Some(received[1].message_id()),
        second.message_id,
        "the second enquiry reached the server once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue11_a_verdict_lost_after_the_dot_on_a_kept_connection_is_never_resent() {
    let server = FaultServer::start(vec![Fault::DropAfterSecondDot], None).await;
    let (first, second) = two_enquiries(&server).await;
    assert!(
        first.sent_at.is_some() && !first.send_uncertain,
        "{first:?}"
    );
    assert_eq!(second.state, "awaiting_reply", "{second:?}");
    assert!(
        second.send_uncertain && second.sent_at.is_none(),
        "{second:?}"
    );
    assert!(second.data_end_at.is_some(), "{second:?}");
    let received = server.complete();
    assert_eq!(
        (server.connections(), received.len()),
        (1, 2),
        "no second connection: the lost verdict is not retried"
    );
}
