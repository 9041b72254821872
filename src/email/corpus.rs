//! Golden corpus: every `fixtures/mail/*.eml` against its `.expected.toml`, in LF and CRLF.
//!
//! Invariant: the corpus is never silently empty or partly skipped; a fixture without its
//! expectations is a failure, and all mismatches are listed together so one run shows every
//! misread message. Format: `fixtures/mail/README.md`.

use super::classify::{classify, MailClass};
use super::correlate::{correlate, Candidate};
use super::message::parse;
use crate::quote::extract_reply;
use crate::score::{score, Builtin, Expectation, Rule, ScoreInput};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MIN_CORPUS: usize = 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatesFile {
    persona: String,
    default_received_at: DateTime<Utc>,
    candidates: Vec<CandidateToml>,
    expect: Vec<ExpectToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateToml {
    visit_id: String,
    message_id: String,
    reference: String,
    subject: String,
    business_email: String,
    sent_at: DateTime<Utc>,
    window_end: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectToml {
    id: String,
    weight: u32,
    any: Option<Vec<String>>,
    all: Option<Vec<String>>,
    none: Option<Vec<String>>,
    regex: Option<String>,
    builtin: Option<String>,
    within: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    class: String,
    correlation: Option<String>,
    visit: Option<String>,
    received_at: Option<DateTime<Utc>>,
    why_contains: Option<String>,
    #[serde(default)]
    new_text_contains: Vec<String>,
    #[serde(default)]
    new_text_excludes: Vec<String>,
    #[serde(default)]
    signature_contains: Vec<String>,
    no_signature: Option<bool>,
    dsn_status: Option<String>,
    dsn_recipient: Option<String>,
    #[serde(default)]
    rules: BTreeMap<String, bool>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mail")
}

fn load_candidates() -> (String, DateTime<Utc>, Vec<Candidate>, Vec<Expectation>) {
    let raw = std::fs::read_to_string(dir().join("candidates.toml")).expect("candidates.toml");
    let file: CandidatesFile = toml::from_str(&raw).expect("candidates.toml is valid");
    let candidates = file
        .candidates
        .into_iter()
        .map(|c| Candidate {
            visit_id: c.visit_id,
            message_id: c.message_id,
            reference: c.reference,
            subject: c.subject,
            business_email: c.business_email,
            sent_at: c.sent_at,
            window_end: c.window_end,
            by_sender: false,
            form_domain: None,
        })
        .collect();
    let expect = file
        .expect
        .into_iter()
        .map(|e| {
            let rule = if let Some(t) = e.any {
                Rule::Any(t)
            } else if let Some(t) = e.all {
                Rule::All(t)
            } else if let Some(t) = e.none {
                Rule::None(t)
            } else if let Some(r) = e.regex {
                Rule::Regex(regex::Regex::new(&r).expect("valid regex"))
            } else {
                match e.builtin.as_deref() {
                    Some("personalised") => Rule::Builtin(Builtin::Personalised),
                    Some("signed") => Rule::Builtin(Builtin::Signed),
                    Some("answers_within") => Rule::Builtin(Builtin::AnswersWithin(
                        humantime::parse_duration(e.within.as_deref().expect("within"))
                            .expect("duration"),
                    )),
                    other => panic!("unknown rule in candidates.toml: {other:?}"),
                }
            };
            Expectation {
                id: e.id,
                rule,
                weight: e.weight,
            }
        })
        .collect();
    (file.persona, file.default_received_at, candidates, expect)
}

fn class_name(c: &MailClass) -> &'static str {
    match c {
        MailClass::HumanReply => "human",
        MailClass::AutoReply { .. } => "auto",
        MailClass::Bounce => "bounce",
    }
}

fn check(
    name: &str,
    raw: &[u8],
    exp: &Expected,
    ctx: &(String, DateTime<Utc>, Vec<Candidate>, Vec<Expectation>),
    errors: &mut Vec<String>,
) {
    let (persona, default_received, candidates, expect) = ctx;
    let mut fail = |what: String| errors.push(format!("{name}: {what}"));
    let mail = match parse(raw) {
        Ok(m) => m,
        Err(e) => {
            if exp.class != "unparseable" {
                fail(format!("parse failed: {e}"));
            }
            return;
        }
    };
    let class = classify(&mail);
    if class_name(&class) != exp.class {
        fail(format!("class {:?}, expected {}", class, exp.class));
    }
    if let (Some(want), MailClass::AutoReply { why }) = (&exp.why_contains, &class) {
        if !why.contains(want.as_str()) {
            fail(format!("why {why:?} lacks {want:?}"));
        }
    }
    let received_at = exp.received_at.or(mail.date).unwrap_or(*default_received);
    let found = correlate(&mail, candidates, received_at);
    let (got_ev, got_visit) = found.map_or(("none", None), |(c, e)| {
        (e.as_str(), Some(c.visit_id.as_str()))
    });
    let want_ev = exp.correlation.as_deref().unwrap_or("none");
    if got_ev != want_ev || got_visit != exp.visit.as_deref() {
        fail(format!(
            "correlation {got_ev}/{got_visit:?}, expected {want_ev}/{:?}",
            exp.visit
        ));
    }
    if let Some(want) = &exp.dsn_status {
        let got = mail.report.as_ref().and_then(|r| r.status.as_deref());
        if got != Some(want.as_str()) {
            fail(format!("dsn status {got:?}, expected {want}"));
        }
    }
    if let Some(want) = &exp.dsn_recipient {
        let got = mail
            .report
            .as_ref()
            .and_then(|r| r.final_recipient.as_deref());
        if got != Some(want.as_str()) {
            fail(format!("dsn recipient {got:?}, expected {want}"));
        }
    }
    let reply = extract_reply(&mail.text);
    for s in &exp.new_text_contains {
        if !reply.new_text.contains(s.as_str()) {
            fail(format!(
                "new_text lacks {s:?}; new_text = {:?}",
                reply.new_text
            ));
        }
    }
    for s in &exp.new_text_excludes {
        if reply.new_text.contains(s.as_str()) {
            fail(format!(
                "new_text holds {s:?}; new_text = {:?}",
                reply.new_text
            ));
        }
    }
    let sig = reply.signature.as_deref().unwrap_or_default();
    for s in &exp.signature_contains {
        if !sig.contains(s.as_str()) {
            fail(format!("signature lacks {s:?}; signature = {sig:?}"));
        }
    }
    if exp.no_signature == Some(true) && reply.signature.is_some() {
        fail(format!("unexpected signature {sig:?}"));
    }
    if !exp.rules.is_empty() {
        let time_to_reply = found.and_then(|(c, _)| (received_at - c.sent_at).to_std().ok());
        let card = score(
            expect,
            &ScoreInput {
                reply: &reply,
                persona_name: persona,
                time_to_reply,
            },
        );
        for (id, want) in &exp.rules {
            match card.rules.iter().find(|r| &r.id == id) {
                Some(r) if r.hit == *want => {}
                Some(r) => fail(format!(
                    "rule {id} hit={} expected {want} ({:?})",
                    r.hit, r.evidence
                )),
                None => fail(format!("rule {id} is not in candidates.toml")),
            }
        }
    }
}

#[test]
fn every_fixture_in_the_mail_corpus_reads_as_expected_in_lf_and_crlf() {
    let ctx = load_candidates();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("fixtures/mail")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    assert!(
        names.len() >= MIN_CORPUS,
        "corpus holds {} messages, expected at least {MIN_CORPUS}",
        names.len()
    );
    let mut errors = Vec::new();
    for path in &names {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name");
        let exp_path = path.with_file_name(format!("{stem}.expected.toml"));
        let exp: Expected = match std::fs::read_to_string(&exp_path)
            .map_err(|e| e.to_string())
            .and_then(|s| toml::from_str(&s).map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{stem}: no usable expected.toml: {e}"));
                continue;
            }
        };
        let raw = std::fs::read(path).expect("readable fixture");
        let mut lf = Vec::with_capacity(raw.len());
        for (i, &b) in raw.iter().enumerate() {
            if !(b == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
                lf.push(b);
            }
        }
        let mut crlf = Vec::with_capacity(lf.len() + lf.len() / 20);
        for &b in &lf {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        check(&format!("{stem} (LF)"), &lf, &exp, &ctx, &mut errors);
        check(&format!("{stem} (CRLF)"), &crlf, &exp, &ctx, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "{} mismatches in the mail corpus:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn every_truncation_of_every_fixture_is_read_without_panicking() {
    let (persona, received_at, candidates, expect) = load_candidates();
    let mut runs = 0;
    for entry in std::fs::read_dir(dir()).expect("fixtures/mail") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let raw = std::fs::read(&path).expect("readable fixture");
        let step = raw.len() / 40 + 1;
        for cut in (0..raw.len()).step_by(step) {
            runs += 1;
            let Ok(mail) = parse(&raw[..cut]) else {
                continue;
            };
            let _ = classify(&mail);
            let _ = correlate(&mail, &candidates, received_at);
            let reply = extract_reply(&mail.text);
            let _ = score(
                &expect,
                &ScoreInput {
                    reply: &reply,
                    persona_name: &persona,
                    time_to_reply: None,
                },
            );
        }
    }
    assert!(runs > 30 * 20, "only {runs} truncated inputs were tried");
}
