//! One call from INVITE to BYE: the visible place where a call goes through, step by step —
//! resolve the target, offer media, INVITE (with auth retries, ring timeout and CANCEL), ACK,
//! run the script while answering the peer's in-dialog requests, BYE, and measure.
//!
//! Invariant: every measurement comes from monotonic instants stamped where the packet left
//! or entered our socket (`dialed` = first INVITE transmission, 18x/200 = read time), converted
//! to UTC once by the process `Clock`; every wait is bounded, so a silent or hostile peer can
//! only make this call end `unreachable`/`failed`, never hang or panic.

use super::auth;
use super::dialog::{Dialog, Local, Outgoing};
use super::message::{self, Parsed};
use super::target::{host_port, local_ip_towards, resolve, target_of};
use super::transaction::{InviteClient, NonInviteClient, TIMER_D_UDP};
use super::transport::{encode, response_to, Inbound, Registration, SipTransport};
use crate::call::media::{self, MediaSession, RemoteMedia};
use crate::call::{CallOutcome, CallReport, CallRequest, CallSettings, Step, Transport};
use crate::clock::Clock;
use rsip::SipMessage;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;

/// How long we wait for a final response once our CANCEL went out (RFC 3261 9.1: 64*T1).
const AFTER_CANCEL: Duration = Duration::from_millis(64 * 500);

/// The final verdict on a SIP status that ended an INVITE (DESIGN.md "Outcomes").
pub fn outcome_of(code: u16, we_cancelled: bool) -> CallOutcome {
    match code {
        200..=299 => CallOutcome::Answered,
        486 | 600 => CallOutcome::Busy,
        487 if we_cancelled => CallOutcome::NoAnswer,
        404 | 410 | 484 | 408 | 500..=599 => CallOutcome::Unreachable,
        401 | 407 => CallOutcome::Failed,
        _ => CallOutcome::Rejected,
    }
}

fn ms_between(from: Instant, to: Instant) -> i64 {
    (to.saturating_duration_since(from).as_secs_f64() * 1000.0).round() as i64
}

/// The instants a call's measurements are made of.
#[derive(Debug, Default, Clone, Copy)]
struct Timeline {
    dialed: Option<Instant>,
    first_ring: Option<Instant>,
    answered: Option<Instant>,
    ended: Option<Instant>,
}

/// What ended the INVITE phase.
enum InviteEnd {
    Answered(Box<Inbound>),
    Over,
}

/// Everything one call owns while it runs.
struct Call<'a> {
    transport: &'a SipTransport,
    settings: &'a CallSettings,
    clock: &'a Clock,
    request: &'a CallRequest,
    dialog: Dialog,
    registration: Registration,
    rx: mpsc::Receiver<Inbound>,
    /// Where requests go: the proxy, or the target, then the peer's Contact/route.
    dest: SocketAddr,
    sdp: String,
    media: MediaSession,
    early_remote: Option<RemoteMedia>,
    times: Timeline,
    outcome: CallOutcome,
    final_code: Option<u16>,
    final_reason: Option<String>,
    error: Option<String>,
    /// Challenges answered so far, kept to sign the BYE with the same nonce (nc grows).
    auth: auth::Session,
    /// Last ACK sent, resent when the peer retransmits the final response it acknowledges.
    last_ack: Option<Vec<u8>>,
}

fn blank_report(outcome: CallOutcome, error: Option<String>) -> CallReport {
    CallReport {
        outcome,
        dialed_at: None,
        pdd_ms: None,
        answer_ms: None,
        ring_ms: None,
        final_code: None,
        final_reason: None,
        greeting_ms: None,
        voice_ratio: None,
        talk_ms: None,
        rtp_sent: None,
        rtp_received: None,
        rtp_lost: None,
        jitter_ms: None,
        recording: None,
        early_media_recording: None,
        error,
    }
}

/// Places one call and measures it. Never panics on peer input; every path returns a report.
pub async fn place(
    transport: &SipTransport,
    settings: &CallSettings,
    clock: &Clock,
    request: &CallRequest,
) -> CallReport {
    let failed = |e: String| blank_report(CallOutcome::Failed, Some(e));
    let target = match target_of(&request.target, settings.proxy.as_deref()) {
        Ok(t) => t,
        Err(e) => return failed(format!("bad config: {e}")),
    };
    let dest = match resolve(&target.first_hop).await {
        Ok(a) => a,
        Err(e) => return blank_report(CallOutcome::Unreachable, Some(e)),
    };
    let ip = local_ip_towards(transport.local_addr().ip(), dest);
    let media = match MediaSession::bind(ip, settings.rtp_ports) {
        Ok(m) => m,
        Err(e) => return failed(format!("media: {e}")),
    };
    let local = Local {
        hostport: SocketAddr::new(ip, transport.local_addr().port()).to_string(),
        transport: match transport.kind() {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        },
        from_uri: settings.from.clone(),
        caller: request.caller.clone(),
        user_agent: settings.user_agent.clone(),
        proxy_route: settings
            .proxy
            .clone()
            .filter(|p| message::uri_of(p).contains(";lr") || p.contains(";lr")),
    };
    let dialog = Dialog::new(local, &target.request_uri);
    let (registration, rx) = transport.register(&dialog.call_id);
    let sdp = media::sdp::offer(ip, media.local_port(), rand::random::<u32>() as u64);
    let mut call = Call {
        transport,
        settings,
        clock,
        request,
        dialog,
        registration,
        rx,
        dest,
        sdp,
        media,
        early_remote: None,
        times: Timeline::default(),
        outcome: CallOutcome::Failed,
        final_code: None,
        final_reason: None,
        error: None,
        auth: auth::Session::default(),
        last_ack: None,
    };
    if let InviteEnd::Answered(ok) = call.invite().await {
        call.talk(*ok).await;
    }
    call.finish().await
}

impl Call<'_> {
    async fn send(&mut self, bytes: &[u8]) -> Option<Instant> {
        match self.transport.send(self.dest, bytes).await {
            Ok(at) => Some(at),
            Err(e) => {
                self.fail(
                    CallOutcome::Unreachable,
                    format!("sending to {}: {e}", self.dest),
                );
                None
            }
        }
    }

    fn fail(&mut self, outcome: CallOutcome, why: String) {
        self.outcome = outcome;
        self.error.get_or_insert(why);
    }

    fn settle(&mut self, code: u16, reason: &str, outcome: CallOutcome) {
        self.final_code = Some(code);
        self.final_reason = Some(reason.to_string());
        self.outcome = outcome;
    }

    async fn reply(&mut self, answer: String, to: SocketAddr) {
        if let Err(e) = self.transport.send(to, answer.as_bytes()).await {
            tracing::info!(%to, error = %e, "sip: could not answer an in-dialog request");
        }
    }

    fn auth_headers(&mut self, method: &str, uri: &str) -> Vec<(&'static str, String)> {
        match (&self.settings.username, &self.settings.password) {
            (Some(user), Some(password)) => self.auth.headers(user, password.expose(), method, uri),
            _ => Vec::new(),
        }
    }

    fn accept_challenge(&mut self, response: &SipMessage) -> Result<(), auth::Refusal> {
        if self.settings.username.is_none() || self.settings.password.is_none() {
            return Err(auth::Refusal::NoCredentials);
        }
        self.auth.accept(auth::challenges(response))
    }

    /// Sends INVITEs until a 2xx, a final failure, a timeout or our CANCEL settles the call.
    async fn invite(&mut self) -> InviteEnd {
        let reliable = self.transport.is_reliable();
        let mut auth: Vec<(&'static str, String)> = Vec::new();
        'attempt: loop {
            let invite = match self.dialog.invite(&self.sdp, &auth) {
                Ok(i) => i,
                Err(e) => {
                    self.fail(CallOutcome::Failed, format!("bad config: {e}"));
                    return InviteEnd::Over;
                }
            };
            self.registration
                .add_transaction(&invite.branch, rsip::Method::Invite);
            let Some(sent) = self.send(&invite.bytes).await else {
                return InviteEnd::Over;
            };
            let dialed = *self.times.dialed.get_or_insert(sent);
            let mut tx = InviteClient::started(TokioInstant::from_std(sent), reliable);
            let ring_deadline = TokioInstant::from_std(dialed + self.request.ring_timeout);
            let mut cancel_wanted = false;
            let mut cancel: Option<(Outgoing, NonInviteClient)> = None;
            let mut give_up_at: Option<TokioInstant> = None;
            // Bounded: each pass consumes one message or one due timer, and all timers end.
            loop {
                let mut deadline = tx.next_deadline();
                if !cancel_wanted {
                    deadline = Some(deadline.map_or(ring_deadline, |d| d.min(ring_deadline)));
                }
                for d in [
                    cancel.as_ref().and_then(|c| c.1.next_deadline()),
                    give_up_at,
                ]
                .into_iter()
                .flatten()
                {
                    deadline = Some(deadline.map_or(d, |x| x.min(d)));
                }
                let Some(deadline) = deadline else {
                    self.fail(
                        CallOutcome::Failed,
                        "INVITE transaction ended without a verdict".into(),
                    );
                    return InviteEnd::Over;
                };
                let inbound = tokio::select! {
                    m = self.rx.recv() => m,
                    _ = tokio::time::sleep_until(deadline) => None,
                };
                let now = TokioInstant::now();
                let Some(inbound) = inbound else {
                    // Timers.
                    let out = tx.on_tick(now);
                    if out.retransmit {
                        self.send(&invite.bytes).await;
                    }
                    if out.timed_out {
                        self.fail(
                            CallOutcome::Unreachable,
                            "no response to INVITE (timer B)".into(),
                        );
                        return InviteEnd::Over;
                    }
                    if let Some((c, ctx)) = cancel.as_mut() {
                        if ctx.on_tick(now).retransmit {
                            let bytes = c.bytes.clone();
                            self.send(&bytes).await;
                        }
                    }
                    if give_up_at.is_some_and(|g| now >= g) {
                        self.outcome = CallOutcome::NoAnswer;
                        self.error = Some("no final response after CANCEL".into());
                        return InviteEnd::Over;
                    }
                    if !cancel_wanted && now >= ring_deadline {
                        cancel_wanted = true;
                        give_up_at = Some(now + AFTER_CANCEL);
                        if tx.is_proceeding() {
                            cancel = self.send_cancel(&invite, reliable).await;
                        }
                    }
                    continue;
                };
                let msg = &inbound.parsed.msg;
                let (Some((_, method)), code) = (message::cseq(msg), message::status(msg)) else {
                    continue;
                };
                let Some(code) = code else {
                    self.early_request(&inbound).await;
                    continue;
                };
                let ours = message::branch(msg).as_deref() == Some(invite.branch.as_str());
                match method {
                    rsip::Method::Cancel => {
                        if let Some((c, ctx)) = cancel.as_mut() {
                            if message::branch(msg).as_deref() == Some(c.branch.as_str()) {
                                ctx.on_response(code, now);
                            }
                        }
                        continue;
                    }
                    rsip::Method::Invite if ours => {}
                    rsip::Method::Invite if (300..700).contains(&code) => {
                        // A retransmitted final of an earlier attempt (e.g. the 401): re-ACK it.
                        if let Some(ack) = &self.last_ack {
                            let ack = ack.clone();
                            self.send(&ack).await;
                        }
                        continue;
                    }
                    _ => continue,
                }
                let out = tx.on_response(code, now);
                if out.send_ack {
                    match self.dialog.ack_for_failure(&invite, msg) {
                        Ok(ack) => {
                            self.send(&ack.bytes).await;
                            self.last_ack = Some(ack.bytes);
                        }
                        Err(e) => tracing::info!(error = %e, "sip: cannot build ACK"),
                    }
                }
                if !out.deliver {
                    continue;
                }
                match code {
                    100 => {}
                    101..=199 => {
                        if (180..=183).contains(&code) {
                            self.times.first_ring.get_or_insert(inbound.at);
                        }
                        self.early_media(&inbound.parsed);
                        if cancel_wanted && cancel.is_none() {
                            cancel = self.send_cancel(&invite, reliable).await;
                        }
                    }
                    200..=299 => {
                        if cancel_wanted {
                            // Answered after our ring timeout, crossing our CANCEL.
                            self.error = Some("answered after ring_timeout; hung up".into());
                        }
                        return InviteEnd::Answered(Box::new(inbound));
                    }
                    401 | 407 if !cancel_wanted => match self.accept_challenge(msg) {
                        Ok(()) => {
                            let uri = self.dialog.target.clone();
                            auth = self.auth_headers("INVITE", &uri);
                            continue 'attempt;
                        }
                        Err(why) => {
                            self.settle(code, &inbound.parsed.reason, CallOutcome::Failed);
                            self.error = Some(why.to_string());
                            return InviteEnd::Over;
                        }
                    },
                    _ => {
                        self.settle(
                            code,
                            &inbound.parsed.reason,
                            outcome_of(code, cancel_wanted),
                        );
                        if code == 487 && !cancel_wanted {
                            self.error = Some("the callee side cancelled the call".into());
                        }
                        return InviteEnd::Over;
                    }
                }
            }
        }
    }

    async fn send_cancel(
        &mut self,
        invite: &Outgoing,
        reliable: bool,
    ) -> Option<(Outgoing, NonInviteClient)> {
        let c = self.dialog.cancel(invite).ok()?;
        self.registration
            .add_transaction(&c.branch, rsip::Method::Cancel);
        let at = self.send(&c.bytes).await?;
        Some((
            c,
            NonInviteClient::started(TokioInstant::from_std(at), reliable),
        ))
    }

    /// A request before the 2xx (the peer cannot be in our dialog yet): answered per dialog
    /// rules, which refuses what it cannot place.
    async fn early_request(&mut self, inbound: &Inbound) {
        if let SipMessage::Request(req) = &inbound.parsed.msg {
            if let Some(answer) = self.dialog.answer(req, &self.sdp) {
                self.reply(answer, inbound.from).await;
            }
        }
    }

    fn early_media(&mut self, parsed: &Parsed) {
        let body = parsed.msg.body();
        if body.is_empty() {
            return;
        }
        match media::sdp::parse_answer(&String::from_utf8_lossy(body)) {
            Ok(remote) => {
                self.media.start(remote, self.clock.clone());
                self.early_remote = Some(remote);
            }
            Err(e) => tracing::info!(error = %e, "sip: unusable SDP in provisional response"),
        }
    }

    /// From the 2xx to the end of the call: ACK, script, BYE (or the peer's BYE).
    async fn talk(&mut self, ok: Inbound) {
        self.times.answered = Some(ok.at);
        let late = self.error.is_some();
        self.settle(
            message::status(&ok.parsed.msg).unwrap_or(200),
            &ok.parsed.reason,
            if late {
                CallOutcome::NoAnswer
            } else {
                CallOutcome::Answered
            },
        );
        self.dialog.confirm(&ok.parsed.msg);
        self.dest = self.in_dialog_destination().await;
        match self.dialog.ack_for_success() {
            Ok(ack) => {
                self.send(&ack.bytes).await;
                self.last_ack = Some(ack.bytes);
            }
            Err(e) => self.fail(CallOutcome::Failed, format!("cannot build ACK: {e}")),
        }
        let remote = match ok.parsed.msg.body() {
            b if b.is_empty() => self.early_remote.ok_or_else(|| "no SDP answer".to_string()),
            b => media::sdp::parse_answer(&String::from_utf8_lossy(b)).map_err(|e| e.to_string()),
        };
        let script: Vec<Step> = match remote {
            Ok(remote) => {
                self.media.start(remote, self.clock.clone());
                self.media.mark_answered(ok.at);
                if late {
                    Vec::new()
                } else {
                    self.request.script.clone()
                }
            }
            Err(e) => {
                self.fail(CallOutcome::Failed, format!("media: {e}"));
                Vec::new()
            }
        };
        if !self.run_script(&script).await {
            return; // The peer hung up.
        }
        self.hang_up().await;
    }

    async fn in_dialog_destination(&self) -> SocketAddr {
        if self.settings.proxy.is_some() {
            return self.dest;
        }
        let next = self
            .dialog
            .route_set
            .first()
            .cloned()
            .or_else(|| self.dialog.remote_target.clone());
        match next.as_deref().and_then(host_port) {
            Some(hop) => resolve(&hop).await.unwrap_or(self.dest),
            None => self.dest,
        }
    }

    /// Runs the steps while answering the peer; false when the peer hung up first.
    async fn run_script(&mut self, steps: &[Step]) -> bool {
        // Disjoint borrows: the script holds the media session while the loop answers the
        // peer through the transport, so a re-INVITE or OPTIONS never interrupts a prompt.
        let (peer_hung_up, script_error) = {
            let (media, transport, dialog, sdp) =
                (&self.media, self.transport, &self.dialog, &self.sdp);
            let (rx, last_ack, dest) = (&mut self.rx, &self.last_ack, self.dest);
            let script = async {
                for step in steps {
                    let done = match step {
                        Step::Play(path) => media.play(path).await.map_err(|e| e.to_string()),
                        Step::Wait(d) => {
                            tokio::time::sleep(*d).await;
                            Ok(())
                        }
                        Step::Dtmf(digits) => media.dtmf(digits).await.map_err(|e| e.to_string()),
                        Step::Record(d) => {
                            media.record_for(*d).await;
                            Ok(())
                        }
                        Step::Listen(d) => {
                            if !media.listen(*d).await {
                                tracing::debug!(
                                    "listen: the branch was still speaking (or silent) after {d:?}"
                                );
                            }
                            Ok(())
                        }
                        Step::Hangup => break,
                    };
                    done.map_err(|e| format!("media: {e}"))?;
                }
                Ok::<(), String>(())
            };
            tokio::pin!(script);
            let mut peer_hung_up = None;
            let mut script_error = None;
            loop {
                tokio::select! {
                    r = &mut script => {
                        script_error = r.err();
                        break;
                    }
                    m = rx.recv() => {
                        let Some(m) = m else { break };
                        match &m.parsed.msg {
                            SipMessage::Request(req) => {
                                let Some(answer) = dialog.answer(req, sdp) else { continue };
                                if let Err(e) = transport.send(m.from, answer.as_bytes()).await {
                                    tracing::info!(error = %e, "sip: could not answer in-dialog request");
                                }
                                if req.method == rsip::Method::Bye && answer.starts_with("SIP/2.0 200") {
                                    peer_hung_up = Some(m.at);
                                    break;
                                }
                            }
                            SipMessage::Response(_) => {
                                // A retransmitted 2xx means our ACK was lost: ACK again.
                                let invite = message::cseq(&m.parsed.msg).is_some_and(|(_, me)| me == rsip::Method::Invite);
                                if let (true, Some(ack)) = (invite, last_ack) {
                                    let _ = transport.send(dest, ack).await;
                                }
                            }
                        }
                    }
                }
            }
            (peer_hung_up, script_error)
        };
        if let Some(e) = script_error {
            self.fail(CallOutcome::Failed, e);
        }
        if let Some(at) = peer_hung_up {
            self.times.ended = Some(at);
            return false;
        }
        true
    }

    async fn hang_up(&mut self) {
        let uri = self
            .dialog
            .remote_target
            .clone()
            .unwrap_or_else(|| self.dialog.target.clone());
        let auth = self.auth_headers("BYE", &uri);
        let Ok(bye) = self.dialog.bye(&auth) else {
            return;
        };
        self.registration
            .add_transaction(&bye.branch, rsip::Method::Bye);
        let Some(at) = self.send(&bye.bytes).await else {
            return;
        };
        self.times.ended = Some(at);
        let mut tx =
            NonInviteClient::started(TokioInstant::from_std(at), self.transport.is_reliable());
        while !tx.is_done() {
            let Some(deadline) = tx.next_deadline() else {
                break;
            };
            let m = tokio::select! {
                m = self.rx.recv() => m,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let now = TokioInstant::now();
            let Some(m) = m else {
                let out = tx.on_tick(now);
                if out.retransmit {
                    self.send(&bye.bytes).await;
                }
                if out.timed_out {
                    tracing::info!("sip: BYE unanswered (timer F)");
                }
                continue;
            };
            match (&m.parsed.msg, message::status(&m.parsed.msg)) {
                (SipMessage::Request(req), _) => {
                    if let Some(answer) = self.dialog.answer(req, &self.sdp) {
                        self.reply(answer, m.from).await;
                    }
                }
                (_, Some(code))
                    if message::branch(&m.parsed.msg).as_deref() == Some(bye.branch.as_str()) =>
                {
                    tx.on_response(code, now);
                }
                _ => {}
            }
        }
    }

    /// Stops media, writes the recordings and turns instants into the report.
    async fn finish(self) -> CallReport {
        let media = self
            .media
            .finish(&self.settings.recordings_dir, &self.request.name)
            .await;
        let t = self.times;
        let mut report = blank_report(self.outcome, self.error);
        report.final_code = self.final_code;
        report.final_reason = self.final_reason;
        report.dialed_at = t.dialed.map(|i| self.clock.at(i));
        if let Some(d) = t.dialed {
            report.pdd_ms = t.first_ring.map(|r| ms_between(d, r));
            report.answer_ms = t.answered.map(|a| ms_between(d, a));
        }
        if let (Some(r), Some(a)) = (t.first_ring, t.answered) {
            report.ring_ms = Some(ms_between(r, a));
        }
        if let (Some(a), Some(e)) = (t.answered, t.ended) {
            report.talk_ms = Some(ms_between(a, e));
        }
        if t.answered.is_some() || t.first_ring.is_some() {
            report.greeting_ms = media.greeting_ms;
            report.voice_ratio = media.voice_ratio;
            report.rtp_sent = Some(media.rtp_sent);
            report.rtp_received = Some(media.rtp_received);
            report.rtp_lost = Some(media.rtp_lost);
            report.jitter_ms = Some(media.jitter_ms);
            report.recording = media.recording;
            report.early_media_recording = media.early_media_recording;
        }
        if report.error.is_none() {
            report.error = media.error;
        }
        if !self.transport.is_reliable() {
            tokio::spawn(linger(
                self.transport.clone(),
                self.registration,
                self.rx,
                self.last_ack,
            ));
        }
        report
    }
}

/// After the call: for Timer D's span, re-ACK retransmitted final responses and answer a
/// retransmitted BYE, so a peer that lost our last message is not left retransmitting.
async fn linger(
    transport: SipTransport,
    registration: Registration,
    mut rx: mpsc::Receiver<Inbound>,
    last_ack: Option<Vec<u8>>,
) {
    let until = TokioInstant::now() + TIMER_D_UDP;
    let _keep_routes = registration;
    for _ in 0..64 {
        let m = tokio::select! {
            m = rx.recv() => m,
            _ = tokio::time::sleep_until(until) => None,
        };
        let Some(m) = m else { return };
        match &m.parsed.msg {
            SipMessage::Request(req) if req.method == rsip::Method::Bye => {
                let answer = encode(response_to(req, 200, "OK", None));
                let _ = transport.send(m.from, answer.as_bytes()).await;
            }
            SipMessage::Request(_) => {}
            SipMessage::Response(_) => {
                if message::cseq(&m.parsed.msg).is_some_and(|(_, me)| me == rsip::Method::Invite)
                    && message::status(&m.parsed.msg).is_some_and(|c| c >= 200)
                {
                    if let Some(ack) = &last_ack {
                        let _ = transport.send(m.from, ack).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_codes_map_to_the_design_outcomes() {
        assert_eq!(outcome_of(200, false), CallOutcome::Answered);
        assert_eq!(outcome_of(486, false), CallOutcome::Busy);
        assert_eq!(outcome_of(600, false), CallOutcome::Busy);
        assert_eq!(outcome_of(487, true), CallOutcome::NoAnswer);
        assert_eq!(outcome_of(487, false), CallOutcome::Rejected);
        for c in [404, 410, 484, 408, 500, 503, 504] {
            assert_eq!(outcome_of(c, false), CallOutcome::Unreachable, "{c}");
        }
        for c in [403, 480, 603, 488] {
            assert_eq!(outcome_of(c, false), CallOutcome::Rejected, "{c}");
        }
    }
}
