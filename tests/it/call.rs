//! Call visits against real peers: SIPp branch phones started by `scripts/sipp-lab` on
//! loopback (ports documented in that script), a raw UDP peer for hostile or silent behaviour,
//! and tshark on `lo` as the truth for timing.
//!
//! Invariant: every assertion is about what went over the wire or what a peer observed, not
//! about configured values (SIPp's pauses overshoot by several ms).

use mystery::call::{
    CallAgent, CallOutcome, CallReport, CallRequest, CallSettings, Caller, Step, Transport,
};
use mystery::clock::Clock;
use mystery::secret::Secret;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const ANSWER: u16 = 5081;
const RING: u16 = 5082;
const BUSY: u16 = 5083;
const DECLINE: u16 = 5084;
const DOWN: u16 = 5085;
const NOBODY: u16 = 5086;
const AUTH401: u16 = 5087;
const AUTH407: u16 = 5088;
const PROMPT: u16 = 5089;
const HANGUP: u16 = 5090;
const SILENCE: u16 = 5091;
const FORBIDDEN: u16 = 5092;
const ANSWER_TCP: u16 = 5093;
/// Same scenario as ANSWER, used by the accuracy test alone so its capture holds only its calls.
const TIMING: u16 = 5094;
const EARLY: u16 = 5095;
const MIDCALL: u16 = 5096;
/// Answers with a folded `Server` header in its 200 OK (issue 7, finding 2).
const FOLDED: u16 = 5097;
/// Answers; only the persona test calls it, and reads everything SIPp received.
const PERSONA: u16 = 5098;
/// SIPp's hangup scenario pauses this long (`-d`) between our ACK and its BYE.
const HANGUP_AFTER_MS: i64 = 1500;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("SIPP_LAB_DIR").unwrap_or_else(|_| "/tmp/mystery-sipp-lab".into()))
}

/// Starts the SIPp lab once per test binary (restarting any previous one).
pub(crate) fn lab() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let out = Command::new(repo().join("scripts/sipp-lab"))
            .arg("start")
            .output()
            .expect("scripts/sipp-lab runs");
        assert!(
            out.status.success(),
            "sipp-lab start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    });
}

fn recordings() -> PathBuf {
    let dir = std::env::temp_dir().join("mystery-call-tests");
    std::fs::create_dir_all(&dir).expect("recordings dir");
    dir
}

fn settings(transport: Transport) -> CallSettings {
    CallSettings {
        bind: "127.0.0.1:0".parse().expect("addr"),
        transport,
        proxy: None,
        from: "sip:robot@127.0.0.1".into(),
        username: Some("robot".into()),
        password: Some(Secret::new("s3cret".into())),
        rtp_ports: (20000, 29999),
        recordings_dir: recordings(),
        user_agent: None,
    }
}

async fn agent_with(s: CallSettings) -> CallAgent {
    CallAgent::bind(s, Clock::system())
        .await
        .expect("agent binds")
}

async fn agent() -> CallAgent {
    agent_with(settings(Transport::Udp)).await
}

fn request(target: String, script: Vec<Step>, name: &str) -> CallRequest {
    CallRequest {
        target,
        ring_timeout: Duration::from_secs(10),
        script,
        name: format!("{name}-{}", rand_suffix()),
        caller: None,
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::process::id() * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

fn sipp(port: u16) -> String {
    format!("sip:agence@127.0.0.1:{port}")
}

fn prompt_wav() -> PathBuf {
    repo().join("fixtures/prompts/horaires.wav")
}

async fn call(port: u16, script: Vec<Step>, name: &str) -> CallReport {
    lab();
    let a = agent().await;
    bounded(a.place(request(sipp(port), script, name))).await
}

/// No call may take longer than Timer B plus a margin: a hung call fails the test quickly.
async fn bounded(f: impl std::future::Future<Output = CallReport>) -> CallReport {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the call ended within 60 s")
}

fn assert_settled(r: &CallReport, outcome: CallOutcome, code: u16, reason: &str) {
    assert_eq!(r.outcome, outcome, "{r:#?}");
    assert_eq!(r.final_code, Some(code), "{r:#?}");
    assert_eq!(r.final_reason.as_deref(), Some(reason), "{r:#?}");
    assert!(r.dialed_at.is_some(), "{r:#?}");
    assert!(r.answer_ms.is_none() && r.talk_ms.is_none(), "{r:#?}");
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_busy_branch_is_reported_busy_with_its_486() {
    let r = call(BUSY, vec![], "busy").await;
    assert_settled(&r, CallOutcome::Busy, 486, "Busy Here");
    assert!(r.pdd_ms.is_none(), "100 Trying is not a ring: {r:#?}");
}

#[tokio::test]
async fn a_declined_call_is_rejected_with_603() {
    let r = call(DECLINE, vec![], "decline").await;
    assert_settled(&r, CallOutcome::Rejected, 603, "Decline");
}

#[tokio::test]
async fn a_forbidden_call_is_rejected_with_403() {
    let r = call(FORBIDDEN, vec![], "forbidden").await;
    assert_settled(&r, CallOutcome::Rejected, 403, "Forbidden");
}

#[tokio::test]
async fn a_503_makes_the_branch_unreachable() {
    let r = call(DOWN, vec![], "down").await;
    assert_settled(&r, CallOutcome::Unreachable, 503, "Service Unavailable");
}

#[tokio::test]
async fn a_404_makes_the_branch_unreachable() {
    let r = call(NOBODY, vec![], "nobody").await;
    assert_settled(&r, CallOutcome::Unreachable, 404, "Not Found");
}

#[tokio::test]
async fn a_phone_ringing_past_ring_timeout_is_cancelled_and_counts_as_no_answer() {
    lab();
    let a = agent().await;
    let mut req = request(sipp(RING), vec![Step::Hangup], "ring");
    req.ring_timeout = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    let r = bounded(a.place(req)).await;
    assert_settled(&r, CallOutcome::NoAnswer, 487, "Request Terminated");
    let pdd = r.pdd_ms.expect("it rang");
    assert!((0..200).contains(&pdd), "pdd {pdd}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(3000),
        "CANCEL at ring_timeout, took {took:?}"
    );
}

#[tokio::test]
async fn an_answered_call_is_measured_acked_and_hung_up_with_bye() {
    let r = call(
        ANSWER,
        vec![Step::Wait(Duration::from_millis(500))],
        "answer",
    )
    .await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    assert_eq!(
        (r.final_code, r.final_reason.as_deref()),
        (Some(200), Some("OK"))
    );
    let (pdd, answer, ring, talk) = (
        r.pdd_ms.expect("pdd"),
        r.answer_ms.expect("answer"),
        r.ring_ms.expect("ring"),
        r.talk_ms.expect("talk"),
    );
    // SIPp rings after a nominal 100 ms and answers 400 ms later (each overshooting a little).
    assert!((95..250).contains(&pdd), "pdd {pdd}");
    assert!((495..750).contains(&answer), "answer {answer}");
    // Each span is rounded to the ms on its own, so the sum may differ by one.
    assert!(
        (pdd + ring - answer).abs() <= 1,
        "ring_ms is first 18x → 200"
    );
    assert!((500..700).contains(&talk), "talk {talk}");
    assert!(r.error.is_none(), "{r:#?}");
}

#[tokio::test]
async fn a_tcp_call_is_answered_over_a_content_length_framed_stream() {
    lab();
    let a = agent_with(settings(Transport::Tcp)).await;
    let r = bounded(a.place(request(sipp(ANSWER_TCP), vec![Step::Hangup], "tcp"))).await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    assert!(r.pdd_ms.is_some() && r.answer_ms.is_some(), "{r:#?}");
}

#[tokio::test]
async fn an_unresponsive_peer_gets_seven_invites_then_the_call_is_unreachable() {
    // A peer that reads and never answers: RFC 3261 timer A doubling from 500 ms, timer B 32 s.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut arrivals = Vec::new();
        let start = std::time::Instant::now();
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(40), silent.recv_from(&mut buf)).await
        {
            if buf[..n].starts_with(b"INVITE ") {
                arrivals.push(start.elapsed());
            }
            if arrivals.len() >= 7 {
                break;
            }
        }
        arrivals
    });
    let a = agent().await;
    let r = bounded(a.place(request(sipp(port), vec![], "silent"))).await;
    assert_eq!(r.outcome, CallOutcome::Unreachable, "{r:#?}");
    assert_eq!(r.final_code, None);
    assert!(
        r.error.as_deref().is_some_and(|e| e.contains("timer B")),
        "{r:#?}"
    );
    let arrivals = counter.await.expect("counter");
    assert_eq!(arrivals.len(), 7, "{arrivals:?}");
    let last = arrivals[6] - arrivals[0];
    assert!(
        (Duration::from_millis(31_400)..Duration::from_millis(31_700)).contains(&last),
        "7th INVITE at {last:?}, RFC says 31.5 s"
    );
}

/// issue7 finding 2: a phone whose 200 OK carries a folded header line (`Server: Lab`, then a
/// continuation starting with SP and one with HT) answered; the call must say so, measured.
#[tokio::test]
async fn issue7_a_200_ok_with_a_folded_header_from_sipp_is_answered_and_measured() {
    let r = call(FOLDED, vec![Step::Hangup], "folded").await;
    println!(
        "folded 200: outcome {:?}, pdd_ms {:?}, answer_ms {:?}, ring_ms {:?}, talk_ms {:?}",
        r.outcome, r.pdd_ms, r.answer_ms, r.ring_ms, r.talk_ms
    );
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    assert_eq!(
        (r.final_code, r.final_reason.as_deref()),
        (Some(200), Some("OK"))
    );
    assert!(r.dialed_at.is_some(), "{r:#?}");
    let (pdd, answer) = (r.pdd_ms.expect("pdd_ms"), r.answer_ms.expect("answer_ms"));
    assert!(
        answer >= pdd && r.ring_ms.is_some() && r.talk_ms.is_some(),
        "{r:#?}"
    );
}

/// Every message SIPp logged as received for the call with this Call-ID, as text.
fn sipp_received(log: &str, call_id: &str) -> Vec<String> {
    log.split("----------------------------------------------- ")
        .filter(|block| block.contains("message received"))
        .filter_map(|block| block.split_once("\n\n").map(|(_, msg)| msg.to_string()))
        .filter(|msg| {
            msg.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    (n.eq_ignore_ascii_case("Call-ID") || n.eq_ignore_ascii_case("i"))
                        && v.trim() == call_id
                })
            })
        })
        .collect()
}

/// issue7 finding 3: what a branch's phone system receives names the persona (number and
/// name in From, the `[sip] from` domain kept) and never the tool or its libraries.
#[tokio::test]
async fn issue7_sipp_receives_the_persona_in_from_and_no_tool_name_in_any_message() {
    lab();
    let a = agent().await;
    // A number unique to this run, so the log lines of this call are found among any others.
    let number = format!("+336{:08}", rand_suffix() % 100_000_000);
    let mut req = request(sipp(PERSONA), vec![Step::Hangup], "persona");
    req.caller = Some(Caller {
        name: "Zoé \"Lou\" Martin".into(),
        number: number.clone(),
    });
    let r = bounded(a.place(req)).await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    // SIPp writes its log as it goes; the BYE's 200 has been sent once the call ended.
    let log = String::from_utf8_lossy(
        &std::fs::read(lab_dir().join("persona.msg.log")).expect("SIPp message log"),
    )
    .to_string();
    let invite = log
        .split("----------------------------------------------- ")
        .filter_map(|b| b.split_once("\n\n").map(|(_, m)| m))
        .find(|m| m.starts_with("INVITE ") && m.contains(&format!("<sip:{number}@")))
        .unwrap_or_else(|| panic!("SIPp received no INVITE from {number}:\n{log}"));
    let call_id = invite
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID:"))
        .expect("Call-ID")
        .trim()
        .to_string();
    let received = sipp_received(&log, &call_id);
    let methods: Vec<&str> = received
        .iter()
        .filter_map(|m| m.split(' ').next())
        .collect();
    for method in ["INVITE", "ACK", "BYE"] {
        assert!(methods.contains(&method), "{method} missing: {methods:?}");
    }
    for msg in &received {
        let lower = msg.to_lowercase();
        for word in ["mystery", "rsip", "rust", "user-agent"] {
            assert!(!lower.contains(word), "{word:?} reached the phone:\n{msg}");
        }
        let from = msg
            .lines()
            .find(|l| l.starts_with("From:"))
            .expect("From header");
        assert!(
            from.starts_with(&format!(
                "From: \"Zoé \\\"Lou\\\" Martin\" <sip:{number}@127.0.0.1>;tag="
            )),
            "{from}"
        );
    }
    let sdp = invite.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert!(sdp.contains("o=- ") && sdp.contains("s=-"), "{sdp}");
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_401_challenge_is_answered_and_sipp_verifies_the_digest_before_answering() {
    let r = call(AUTH401, vec![Step::Hangup], "auth401").await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_after_one_retry_and_the_call_fails() {
    lab();
    let mut s = settings(Transport::Udp);
    s.password = Some(Secret::new("wrong".into()));
    let a = agent_with(s).await;
    let r = bounded(a.place(request(sipp(AUTH401), vec![], "auth-wrong"))).await;
    assert_eq!(r.outcome, CallOutcome::Failed, "{r:#?}");
    assert_eq!(r.final_code, Some(401));
    assert_eq!(r.error.as_deref(), Some("auth refused"));
}

#[tokio::test]
async fn a_407_challenge_is_answered_with_a_proxy_authorization_sipp_received() {
    let r = call(AUTH407, vec![Step::Hangup], "auth407").await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    // SIPp cannot verify Proxy-Authorization: recompute the digest of every request that
    // carried one (the INVITE retry, and the BYE reusing the nonce) from what SIPp received.
    let log = std::fs::read_to_string(lab_dir().join("auth407.msg.log")).expect("SIPp log");
    let mut method = String::new();
    let mut checked = HashMap::new();
    for line in log.lines() {
        if let Some((m, _)) = line.split_once(" sip:") {
            if m.chars().all(|c| c.is_ascii_uppercase()) && !m.is_empty() {
                method = m.to_string();
            }
        }
        let Some(header) = line.strip_prefix("Proxy-Authorization:") else {
            continue;
        };
        let p = digest_params(header);
        assert_eq!(p["username"], "robot");
        assert_eq!(p["realm"], "lab.test");
        assert_eq!(p["qop"], "auth");
        let md5 = |s: String| {
            use md5::Digest;
            hex::encode(md5::Md5::digest(s.as_bytes()))
        };
        let ha1 = md5("robot:lab.test:s3cret".to_string());
        let ha2 = md5(format!("{method}:{}", p["uri"]));
        let expected = md5(format!(
            "{ha1}:{}:{}:{}:auth:{ha2}",
            p["nonce"], p["nc"], p["cnonce"]
        ));
        assert_eq!(p["response"], expected, "{method}: {header}");
        checked.insert(method.clone(), p["nc"].clone());
    }
    assert_eq!(
        checked.get("INVITE").map(String::as_str),
        Some("00000001"),
        "{checked:?}"
    );
    assert_eq!(
        checked.get("BYE").map(String::as_str),
        Some("00000002"),
        "nonce reuse counts up"
    );
}

fn digest_params(header: &str) -> HashMap<String, String> {
    let rest = header.split_once("Digest").map(|(_, r)| r).unwrap_or("");
    rest.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[tokio::test]
async fn an_e164_number_is_sent_via_the_proxy_as_a_user_phone_uri() {
    lab();
    let mut s = settings(Transport::Udp);
    s.proxy = Some(format!("sip:127.0.0.1:{ANSWER}"));
    let a = agent_with(s).await;
    let r = bounded(a.place(request("+33123456789".into(), vec![Step::Hangup], "e164"))).await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    let log = std::fs::read_to_string(lab_dir().join("answer.msg.log")).expect("SIPp log");
    assert!(
        log.contains("INVITE sip:+33123456789@127.0.0.1:5081;user=phone SIP/2.0"),
        "SIPp saw no E.164 Request-URI"
    );
}

#[tokio::test]
async fn a_target_that_is_neither_uri_nor_e164_fails_as_bad_config_without_dialling() {
    let a = agent().await;
    let r = bounded(a.place(request("agence-lyon".into(), vec![], "bad"))).await;
    assert_eq!(r.outcome, CallOutcome::Failed);
    assert!(r.dialed_at.is_none());
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("bad config")),
        "{r:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Script steps and media
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_spoken_prompt_is_recorded_with_a_high_voice_ratio_and_a_greeting_time() {
    let r = call(PROMPT, vec![Step::Record(Duration::from_secs(6))], "prompt").await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    let ratio = r.voice_ratio.expect("voice ratio");
    assert!(ratio > 0.5, "voice_ratio {ratio}");
    let greeting = r.greeting_ms.expect("greeting");
    assert!((0..1500).contains(&greeting), "greeting {greeting}");
    assert!(r.rtp_received.is_some_and(|n| n > 250), "{r:#?}");
    let rec = r.recording.clone().expect("a recording");
    assert!(rec.exists() && std::fs::metadata(&rec).map(|m| m.len()).unwrap_or(0) > 40_000);
}

#[tokio::test]
async fn a_silent_answer_has_a_voice_ratio_near_zero() {
    let r = call(
        SILENCE,
        vec![Step::Record(Duration::from_secs(3))],
        "silence",
    )
    .await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    let ratio = r.voice_ratio.expect("voice ratio");
    assert!(ratio < 0.05, "voice_ratio {ratio}");
    assert!(r.greeting_ms.is_none(), "{r:#?}");
}

#[tokio::test]
async fn play_dtmf_wait_record_and_hangup_steps_run_in_order() {
    let script = vec![
        Step::Play(prompt_wav()),
        Step::Dtmf("1#".into()),
        Step::Wait(Duration::from_millis(300)),
        Step::Record(Duration::from_millis(300)),
        Step::Hangup,
        Step::Wait(Duration::from_secs(30)),
    ];
    let r = call(ANSWER, script, "steps").await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    let talk = r.talk_ms.expect("talk");
    // 6.69 s of prompt + two digits + 0.6 s; the Wait after Hangup never runs.
    assert!((7_300..9_500).contains(&talk), "talk {talk}");
    let sent = r.rtp_sent.expect("rtp sent");
    assert!(
        sent >= 334 + 2,
        "prompt frames plus DTMF events, got {sent}"
    );
}

#[tokio::test]
async fn when_the_branch_hangs_up_first_the_script_stops_and_talk_ms_matches_sipp() {
    let name = format!("hangup-{}", rand_suffix());
    lab();
    let a = agent().await;
    let mut req = request(sipp(HANGUP), vec![Step::Wait(Duration::from_secs(20))], "x");
    req.name = name;
    let started = std::time::Instant::now();
    let r = bounded(a.place(req)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the remote BYE ended the script"
    );
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    let talk = r.talk_ms.expect("talk");
    // Truth: SIPp's own log, 200 OK sent → BYE sent, for this call.
    let truth = sipp_hangup_span_ms().expect("SIPp logged the call");
    println!(
        "talk_ms {talk}, SIPp 200 OK → BYE {truth} ms, error {} ms",
        talk - truth
    );
    assert!(
        (talk - truth).abs() <= 100,
        "talk_ms {talk} vs SIPp {truth}"
    );
    assert!(
        (HANGUP_AFTER_MS..HANGUP_AFTER_MS + 300).contains(&talk),
        "talk {talk}"
    );
}

#[tokio::test]
async fn early_media_after_a_183_is_recorded_apart_from_the_answered_call() {
    let r = call(EARLY, vec![Step::Record(Duration::from_secs(1))], "early").await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    let pdd = r.pdd_ms.expect("183 counts as ringing");
    assert!(pdd < 200, "pdd {pdd}");
    let ring = r.ring_ms.expect("ring");
    assert!((2_450..2_900).contains(&ring), "ring {ring}");
    let early = r
        .early_media_recording
        .clone()
        .expect("an early media recording");
    let answered = r.recording.clone().expect("a recording");
    assert_ne!(early, answered);
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    // ~2.5 s of 8 kHz 16-bit audio before the answer.
    assert!(
        len(&early) > 30_000,
        "early media WAV is {} bytes",
        len(&early)
    );
}

#[tokio::test]
async fn options_update_and_reinvite_from_the_branch_are_answered_200_mid_call() {
    let r = call(
        MIDCALL,
        vec![Step::Wait(Duration::from_millis(1500))],
        "midcall",
    )
    .await;
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
    // SIPp's scenario fails (and logs it) unless each request got a 200, the re-INVITE's with
    // our SDP; the ACK it sent after that carries the m= line it matched.
    let log = std::fs::read_to_string(lab_dir().join("midcall.msg.log")).expect("SIPp log");
    assert!(log.contains("CSeq: 1 OPTIONS") && log.contains("CSeq: 2 UPDATE"));
    assert!(
        log.contains("X-Answer-SDP: m=audio "),
        "re-INVITE answered with our SDP"
    );
    let errors = std::fs::read_to_string(lab_dir().join("midcall.err.log")).unwrap_or_default();
    assert!(!errors.contains("Aborting call"), "{errors}");
}

#[tokio::test]
async fn a_prompt_that_cannot_be_read_fails_the_call_on_our_side_and_still_hangs_up() {
    let script = vec![Step::Play(repo().join("fixtures/prompts/missing.wav"))];
    let r = call(ANSWER, script, "missing-prompt").await;
    assert_eq!(r.outcome, CallOutcome::Failed, "{r:#?}");
    assert!(
        r.error.as_deref().is_some_and(|e| e.starts_with("media:")),
        "{r:#?}"
    );
    assert!(
        r.answer_ms.is_some() && r.talk_ms.is_some(),
        "measured up to our BYE: {r:#?}"
    );
}

/// Milliseconds between the last 200 OK SIPp sent and the BYE it sent after it.
fn sipp_hangup_span_ms() -> Option<i64> {
    let log = std::fs::read_to_string(lab_dir().join("hangup.msg.log")).ok()?;
    let mut ok_at = None;
    let mut span = None;
    let mut stamp: Option<f64> = None;
    let mut sent = false;
    for line in log.lines() {
        if line.starts_with("----------------------------------------------- ") {
            // "----- 2026-11-25 09:32:43.232167" then a "UDP message sent/received" line.
            stamp = line.rsplit(' ').next().and_then(parse_clock);
            continue;
        }
        if line.starts_with("UDP message sent") {
            sent = true;
            continue;
        }
        if line.starts_with("UDP message received") {
            sent = false;
            continue;
        }
        if sent && line.starts_with("SIP/2.0 200 OK") {
            ok_at = stamp;
        }
        if sent && line.starts_with("BYE ") {
            if let (Some(a), Some(b)) = (ok_at, stamp) {
                span = Some(((b - a) * 1000.0).round() as i64);
            }
        }
    }
    span
}

fn parse_clock(hms: &str) -> Option<f64> {
    let mut it = hms.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

// ---------------------------------------------------------------------------------------------
// Hostile peers
// ---------------------------------------------------------------------------------------------

/// A raw UDP peer answering our INVITE with torture input before a real verdict.
#[tokio::test]
async fn torture_responses_are_dropped_or_tolerated_and_the_call_still_gets_its_verdict() {
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = peer.local_addr().expect("addr").port();
    let script = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let (n, from) = peer.recv_from(&mut buf).await.expect("INVITE");
        let invite = String::from_utf8_lossy(&buf[..n]).to_string();
        let get = |name: &str| {
            invite
                .lines()
                .find(|l| {
                    l.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                })
                .map(|l| {
                    l.split_once(':')
                        .map(|(_, v)| v.trim().to_string())
                        .unwrap_or_default()
                })
                .unwrap_or_default()
        };
        let (via, from_h, to, cid) = (get("Via"), get("From"), get("To"), get("Call-ID"));
        let msgs: Vec<Vec<u8>> = vec![
            b"\x00\x01\x02 not sip at all".to_vec(),
            vec![b'A'; 60_000],
            format!("SIP/2.0 180 Ringing\r\nVia: {via}\r\nCall-ID: {cid}\r\n").into_bytes(),
            format!("SIP/2.0 200 OK\r\nv: {via}\r\nf: {from_h}\r\nt: {to};tag=x\r\ni: {cid}\r\nCSeq: 1 INVITE\r\nl: 900\r\n\r\nv=0\r\n").into_bytes(),
            format!("SIP/2.0   183   Session Progress\r\nv: {via}\r\nf:{from_h}\r\nt:  {to};tag=t1\r\ni: {cid}\r\nCSeq :   1\r\n  INVITE\r\nX-Weird:\t\tvalue\r\nl: 0\r\n\r\n").into_bytes(),
            format!("SIP/2.0 486 Busy Here\r\nVia: {via}\r\nFrom: {from_h}\r\nTo: {to};tag=t1\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        ];
        for (i, m) in msgs.iter().enumerate() {
            // The compact 183 is flooded: 300 copies must not wedge or slow the call.
            let copies = if i == 4 { 300 } else { 1 };
            for _ in 0..copies {
                peer.send_to(m, from).await.expect("send");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // The ACK for the 486 must come back on the INVITE's branch.
        let mut got_ack = false;
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf)).await
        {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with("ACK ") {
                got_ack = text.contains(via.split("branch=").nth(1).unwrap_or("?"));
                break;
            }
        }
        got_ack
    });
    let a = agent().await;
    let r = bounded(a.place(request(sipp(port), vec![], "torture"))).await;
    assert_eq!(r.outcome, CallOutcome::Busy, "{r:#?}");
    assert_eq!(r.final_code, Some(486));
    assert!(
        r.pdd_ms.is_some(),
        "the folded compact 183 counted as ringing: {r:#?}"
    );
    assert!(script.await.expect("peer"), "ACK on the INVITE branch");
}

// ---------------------------------------------------------------------------------------------
// Accuracy against the wire
// ---------------------------------------------------------------------------------------------

/// One SIP packet as tshark saw it on `lo`.
struct Wire {
    at: f64,
    call_id: String,
    method: String,
    status: String,
}

fn tshark_read(pcap: &Path, port: u16) -> Vec<Wire> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(pcap)
        .args([
            "-Y",
            &format!("sip && udp.port == {port}"),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.time_epoch",
            "-e",
            "sip.Call-ID",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.CSeq.method",
        ])
        .output()
        .expect("tshark reads the capture");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() >= 5).then(|| Wire {
                at: f[0].parse().unwrap_or(0.0),
                call_id: f[1].to_string(),
                method: if f[2].is_empty() {
                    f[4].to_string()
                } else {
                    f[2].to_string()
                },
                status: f[3].to_string(),
            })
        })
        .collect()
}

#[tokio::test]
async fn pdd_and_answer_times_match_a_tshark_capture_within_twenty_ms_over_ten_calls() {
    lab();
    let pcap = std::env::temp_dir().join(format!("mystery-accuracy-{}.pcap", std::process::id()));
    let mut tshark = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("udp port {TIMING}"), "-w"])
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tshark starts");
    // tshark announces "Capturing on 'Loopback: lo'" once the capture is live.
    let mut stderr = tshark.stderr.take().expect("stderr");
    let ready = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut seen = String::new();
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("Capturing on") {
                break;
            }
        }
        stderr
    });
    let _stderr = ready.join().expect("tshark stderr");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let a = agent().await;
    let mut reports = Vec::new();
    for _ in 0..12 {
        let r = bounded(a.place(request(sipp(TIMING), vec![Step::Hangup], "accuracy"))).await;
        assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
        reports.push(r);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(tshark.id().to_string())
        .status();
    let _ = tshark.wait();
    let wire = tshark_read(&pcap, TIMING);
    let _ = std::fs::remove_file(&pcap);

    // Per call: first INVITE, first 180, first 200 to INVITE, on the wire.
    let mut errors_pdd = Vec::new();
    let mut errors_answer = Vec::new();
    for r in &reports {
        let dialed = r.dialed_at.expect("dialed").timestamp_micros() as f64 / 1e6;
        // Match the call by its INVITE instant (within 50 ms of our dialed_at).
        let Some(invite) = wire
            .iter()
            .filter(|w| w.method == "INVITE" && w.status.is_empty())
            .min_by(|a, b| (a.at - dialed).abs().total_cmp(&(b.at - dialed).abs()))
        else {
            panic!("no INVITE in the capture");
        };
        assert!(
            (invite.at - dialed).abs() < 0.05,
            "dialed_at vs wire INVITE: {:+.1} ms",
            (dialed - invite.at) * 1e3
        );
        let first = |code: &str| {
            wire.iter()
                .find(|w| w.call_id == invite.call_id && w.status == code && w.method == "INVITE")
                .map(|w| w.at)
                .expect("in capture")
        };
        let wire_pdd = (first("180") - invite.at) * 1000.0;
        let wire_answer = (first("200") - invite.at) * 1000.0;
        errors_pdd.push(r.pdd_ms.expect("pdd") as f64 - wire_pdd);
        errors_answer.push(r.answer_ms.expect("answer") as f64 - wire_answer);
    }
    let describe = |name: &str, e: &mut Vec<f64>| {
        e.sort_by(f64::total_cmp);
        let mean = e.iter().sum::<f64>() / e.len() as f64;
        println!(
            "{name}: n={} min={:+.2} median={:+.2} mean={:+.2} max={:+.2} ms",
            e.len(),
            e[0],
            e[e.len() / 2],
            mean,
            e[e.len() - 1]
        );
        // The issue's bound; the distribution printed above is the figure to watch (±1 ms here).
        e.iter().all(|x| x.abs() <= 20.0)
    };
    let pdd_ok = describe("pdd_ms error (ours - wire)", &mut errors_pdd);
    let answer_ok = describe("answer_ms error (ours - wire)", &mut errors_answer);
    assert!(errors_pdd.len() >= 10);
    assert!(
        pdd_ok && answer_ok,
        "errors beyond ±20 ms: {errors_pdd:?} {errors_answer:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// One socket, many calls
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_calls_through_one_socket_each_get_their_own_verdict() {
    lab();
    let a = std::sync::Arc::new(agent().await);
    let plan = [
        (ANSWER, CallOutcome::Answered),
        (BUSY, CallOutcome::Busy),
        (DECLINE, CallOutcome::Rejected),
        (NOBODY, CallOutcome::Unreachable),
        (AUTH401, CallOutcome::Answered),
        (PROMPT, CallOutcome::Answered),
        (SILENCE, CallOutcome::Answered),
        (DOWN, CallOutcome::Unreachable),
        (ANSWER, CallOutcome::Answered),
        (BUSY, CallOutcome::Busy),
    ];
    let calls: Vec<_> = plan
        .iter()
        .enumerate()
        .map(|(i, (port, _))| {
            let a = a.clone();
            let script = vec![Step::Wait(Duration::from_millis(300))];
            let req = request(sipp(*port), script, &format!("many-{i}"));
            tokio::spawn(async move { bounded(a.place(req)).await })
        })
        .collect();
    for ((port, expected), call) in plan.iter().zip(calls) {
        let r = call.await.expect("call task");
        assert_eq!(r.outcome, *expected, "port {port}: {r:#?}");
    }
}

#[tokio::test]
async fn a_stranger_inviting_the_agent_mid_call_is_refused_and_the_call_goes_on() {
    lab();
    let a = std::sync::Arc::new(agent().await);
    let ours = a.local_addr();
    let call = {
        let a = a.clone();
        tokio::spawn(async move {
            let req = request(
                sipp(ANSWER),
                vec![Step::Wait(Duration::from_secs(1))],
                "stranger",
            );
            bounded(a.place(req)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let invite = std::fs::read_to_string(repo().join("fixtures/sip/stranger-invite.txt"))
        .expect("fixture")
        .replace('\n', "\r\n");
    stranger
        .send_to(invite.as_bytes(), ours)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), stranger.recv_from(&mut buf))
        .await
        .expect("refused within 2 s")
        .expect("recv");
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(reply.starts_with("SIP/2.0 403 "), "{reply}");
    let r = call.await.expect("call task");
    assert_eq!(r.outcome, CallOutcome::Answered, "{r:#?}");
}
