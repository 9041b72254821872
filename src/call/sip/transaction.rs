//! Client transactions of RFC 3261 section 17.1: INVITE (17.1.1) and non-INVITE (17.1.2).
//!
//! Invariant: these are pure state machines. They never touch a socket or a clock; the caller
//! feeds responses and the current instant, and gets back what to transmit and what to pass
//! up. Each keeps its own private state enum; a terminated transaction ignores everything.

use std::time::Duration;
use tokio::time::Instant;

/// RTT estimate (RFC 3261 17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Maximum retransmit interval for non-INVITE requests.
pub const T2: Duration = Duration::from_secs(4);
/// Maximum duration a message remains in the network.
pub const T4: Duration = Duration::from_secs(5);
/// INVITE transaction timeout: 64*T1.
pub const TIMER_B: Duration = Duration::from_millis(64 * 500);
/// Wait time for response retransmits after a non-2xx final, over UDP (at least 32 s).
pub const TIMER_D_UDP: Duration = Duration::from_secs(32);
/// Non-INVITE transaction timeout: 64*T1.
pub const TIMER_F: Duration = Duration::from_millis(64 * 500);
/// Wait time for non-INVITE response retransmits, over UDP.
pub const TIMER_K_UDP: Duration = T4;

/// Offsets from the first transmission at which an INVITE is retransmitted over UDP: Timer A
/// starts at T1 and doubles each time, until Timer B (64*T1) fires.
pub fn invite_retransmissions() -> Vec<Duration> {
    let (mut at, mut interval, mut out) = (Duration::ZERO, T1, Vec::new());
    while at + interval < TIMER_B {
        at += interval;
        out.push(at);
        interval *= 2;
    }
    out
}

/// Offsets at which a non-INVITE request is retransmitted over UDP while no provisional
/// response came: Timer E starts at T1 and doubles, capped at T2, until Timer F.
pub fn non_invite_retransmissions() -> Vec<Duration> {
    let (mut at, mut interval, mut out) = (Duration::ZERO, T1, Vec::new());
    while at + interval < TIMER_F {
        at += interval;
        out.push(at);
        interval = (interval * 2).min(T2);
    }
    out
}

/// What the transaction asks of its user after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Output {
    /// Send the request again, byte for byte.
    pub retransmit: bool,
    /// Send (or resend) the ACK for a non-2xx final response, on this transaction's branch.
    pub send_ack: bool,
    /// Pass the response up to the transaction user (dialog / call).
    pub deliver: bool,
    /// Timer B or F fired with no final response.
    pub timed_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Calling,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 17.1.1. Timer A exists only over an unreliable transport.
#[derive(Debug)]
pub struct InviteClient {
    state: InviteState,
    reliable: bool,
    /// Next retransmission deadline and the interval that led to it.
    timer_a: Option<(Instant, Duration)>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
}

impl InviteClient {
    /// Called right after the first transmission of the INVITE.
    pub fn started(now: Instant, reliable: bool) -> Self {
        Self {
            state: InviteState::Calling,
            reliable,
            timer_a: (!reliable).then_some((now + T1, T1)),
            timer_b: Some(now + TIMER_B),
            timer_d: None,
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }

    /// True once a provisional response arrived (RFC 3261 9.1: CANCEL is allowed from then).
    pub fn is_proceeding(&self) -> bool {
        self.state == InviteState::Proceeding
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.timer_a.map(|(t, _)| t), self.timer_b, self.timer_d]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn on_response(&mut self, code: u16, now: Instant) -> Output {
        use InviteState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                // Timer B only bounds the Calling state: ringing has no transaction limit,
                // the call's ring_timeout (and its CANCEL) bounds it instead.
                self.timer_a = None;
                self.timer_b = None;
                Output {
                    deliver: true,
                    ..Output::default()
                }
            }
            (Calling | Proceeding, 200..=299) => {
                // The TU owns 2xx: it ACKs, and absorbs retransmissions of it (17.1.1.2).
                self.terminate();
                Output {
                    deliver: true,
                    ..Output::default()
                }
            }
            (Calling | Proceeding, 300..=699) => {
                self.state = Completed;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_d = Some(
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        TIMER_D_UDP
                    },
                );
                Output {
                    send_ack: true,
                    deliver: true,
                    ..Output::default()
                }
            }
            (Completed, 300..=699) => Output {
                send_ack: true,
                ..Output::default()
            },
            _ => Output::default(),
        }
    }

    /// Fires every timer due at `now`.
    pub fn on_tick(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if self.timer_b.is_some_and(|b| now >= b) && self.state == InviteState::Calling {
            self.terminate();
            out.timed_out = true;
            return out;
        }
        if let Some((at, interval)) = self.timer_a {
            if now >= at && self.state == InviteState::Calling {
                out.retransmit = true;
                let next = interval * 2;
                self.timer_a = Some((at + next, next));
            }
        }
        if let Some(d) = self.timer_d {
            if now >= d {
                self.terminate();
            }
        }
        out
    }

    fn terminate(&mut self) {
        self.state = InviteState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 17.1.2, used for BYE and CANCEL.
#[derive(Debug)]
pub struct NonInviteClient {
    state: NonInviteState,
    reliable: bool,
    timer_e: Option<(Instant, Duration)>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl NonInviteClient {
    pub fn started(now: Instant, reliable: bool) -> Self {
        Self {
            state: NonInviteState::Trying,
            reliable,
            timer_e: (!reliable).then_some((now + T1, T1)),
            timer_f: Some(now + TIMER_F),
            timer_k: None,
        }
    }

    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteState::Terminated
    }

    /// A final response was received (the transaction may linger in Completed for Timer K).
    pub fn is_done(&self) -> bool {
        matches!(
            self.state,
            NonInviteState::Completed | NonInviteState::Terminated
        )
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.timer_e.map(|(t, _)| t), self.timer_f, self.timer_k]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn on_response(&mut self, code: u16, now: Instant) -> Output {
        use NonInviteState::*;
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                Output {
                    deliver: true,
                    ..Output::default()
                }
            }
            (Trying | Proceeding, 200..=699) => {
                self.state = Completed;
                self.timer_e = None;
                self.timer_f = None;
                if self.reliable {
                    self.state = Terminated;
                } else {
                    self.timer_k = Some(now + TIMER_K_UDP);
                }
                Output {
                    deliver: true,
                    ..Output::default()
                }
            }
            _ => Output::default(),
        }
    }

    pub fn on_tick(&mut self, now: Instant) -> Output {
        let mut out = Output::default();
        if self.timer_f.is_some_and(|f| now >= f) {
            self.state = NonInviteState::Terminated;
            self.timer_e = None;
            self.timer_f = None;
            out.timed_out = true;
            return out;
        }
        if let Some((at, interval)) = self.timer_e {
            if now >= at {
                out.retransmit = true;
                // In Proceeding the interval is T2 (17.1.2.2); in Trying it doubles up to T2.
                let next = if self.state == NonInviteState::Proceeding {
                    T2
                } else {
                    (interval * 2).min(T2)
                };
                self.timer_e = Some((at + next, next));
            }
        }
        if self.timer_k.is_some_and(|k| now >= k) {
            self.state = NonInviteState::Terminated;
            self.timer_k = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::sip::message::{parse, status};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn code_of(fixture: &str) -> u16 {
        let path = format!("{}/fixtures/sip/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("fixture");
        let p = parse(text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes()).expect("parse");
        status(&p.msg).expect("a response")
    }

    /// Drives a transaction through time in 10 ms steps, recording retransmission offsets.
    fn retransmit_offsets(
        mut tick: impl FnMut(Instant) -> Output,
        start: Instant,
    ) -> Vec<Duration> {
        let mut out = Vec::new();
        for step in 1..=4000u64 {
            let now = start + ms(step * 10);
            let o = tick(now);
            if o.retransmit {
                out.push(now - start);
            }
            if o.timed_out {
                break;
            }
        }
        out
    }

    #[test]
    fn the_invite_schedule_is_the_rfc_one_seven_transmissions_in_thirty_two_seconds() {
        // RFC 3261 17.1.1.2: retransmits at T1, 3T1, 7T1, 15T1, 31T1, 63T1 = 31.5 s.
        let expected: Vec<Duration> = [500, 1500, 3500, 7500, 15500, 31500].map(ms).to_vec();
        assert_eq!(invite_retransmissions(), expected);
        assert_eq!(TIMER_B, 64 * T1);
    }

    #[test]
    fn the_non_invite_schedule_caps_the_interval_at_t2() {
        let s = non_invite_retransmissions();
        assert_eq!(&s[..5], &[500, 1500, 3500, 7500, 11500].map(ms));
        assert!(s.windows(2).skip(3).all(|w| w[1] - w[0] == T2));
        assert_eq!(s.last().copied(), Some(ms(31500)));
    }

    #[test]
    fn an_unanswered_invite_retransmits_on_schedule_then_times_out_with_timer_b() {
        let start = Instant::now();
        let mut tx = InviteClient::started(start, false);
        let mut timed_out_at = None;
        let seen = retransmit_offsets(
            |now| {
                let o = tx.on_tick(now);
                if o.timed_out {
                    timed_out_at = Some(now - start);
                }
                o
            },
            start,
        );
        assert_eq!(seen, invite_retransmissions());
        assert_eq!(timed_out_at, Some(TIMER_B));
        assert!(tx.is_terminated());
    }

    #[test]
    fn over_tcp_the_invite_is_never_retransmitted() {
        let start = Instant::now();
        let mut tx = InviteClient::started(start, true);
        assert!(retransmit_offsets(|now| tx.on_tick(now), start).is_empty());
        assert!(tx.is_terminated());
    }

    #[test]
    fn a_provisional_response_stops_retransmission_but_not_the_call() {
        let start = Instant::now();
        let mut tx = InviteClient::started(start, false);
        let o = tx.on_response(code_of("100-trying.txt"), start + ms(100));
        assert!(o.deliver && !o.send_ack);
        let o = tx.on_response(code_of("180-ringing.txt"), start + ms(200));
        assert!(o.deliver && tx.is_proceeding());
        assert!(retransmit_offsets(|now| tx.on_tick(now), start).is_empty());
        assert!(!tx.is_terminated(), "ringing may outlast timer B");
    }

    #[test]
    fn a_busy_response_is_acked_delivered_once_and_its_retransmissions_reacked() {
        let start = Instant::now();
        let mut tx = InviteClient::started(start, false);
        let busy = code_of("486-busy.txt");
        let o = tx.on_response(busy, start + ms(40));
        assert_eq!(
            o,
            Output {
                send_ack: true,
                deliver: true,
                ..Output::default()
            }
        );
        let again = tx.on_response(busy, start + ms(600));
        assert!(again.send_ack && !again.deliver);
        assert!(!tx.on_tick(start + ms(31_000)).retransmit);
        assert!(!tx.is_terminated());
        tx.on_tick(start + ms(40) + TIMER_D_UDP);
        assert!(tx.is_terminated(), "timer D ends the completed state");
    }

    #[test]
    fn over_tcp_timer_d_is_zero() {
        let start = Instant::now();
        let mut tx = InviteClient::started(start, true);
        tx.on_response(486, start);
        tx.on_tick(start);
        assert!(tx.is_terminated());
    }

    #[test]
    fn a_2xx_terminates_the_invite_transaction_and_is_left_to_the_dialog() {
        let start = Instant::now();
        let mut tx = InviteClient::started(start, false);
        let o = tx.on_response(200, start + ms(10));
        assert!(o.deliver && !o.send_ack);
        assert!(tx.is_terminated());
        assert_eq!(tx.on_response(200, start + ms(20)), Output::default());
    }

    #[test]
    fn a_bye_without_answer_times_out_with_timer_f() {
        let start = Instant::now();
        let mut tx = NonInviteClient::started(start, false);
        let seen = retransmit_offsets(|now| tx.on_tick(now), start);
        assert_eq!(seen, non_invite_retransmissions());
        assert!(tx.is_terminated());
    }

    #[test]
    fn a_bye_answered_200_lingers_for_timer_k_then_terminates() {
        let start = Instant::now();
        let mut tx = NonInviteClient::started(start, false);
        assert!(tx.on_response(200, start + ms(5)).deliver);
        assert!(tx.is_done() && !tx.is_terminated());
        assert!(!tx.on_response(200, start + ms(6)).deliver);
        tx.on_tick(start + ms(5) + TIMER_K_UDP);
        assert!(tx.is_terminated());
    }
}
