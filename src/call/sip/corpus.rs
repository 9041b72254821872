//! Golden SIP corpus: every `fixtures/sip/*.txt` against its `.expected`, as sent on the wire
//! (CRLF), with a bare-LF header section, and cut at many points.
//!
//! Invariant: the corpus is never silently empty or partly skipped; a fixture without its
//! expectations is a failure, a parsed fixture's expectations must name every fact the UA
//! reads (so an unexpected value cannot hide), and all mismatches are listed together.
//! Fixtures are stored with LF line ends; the wire form turns every LF into CRLF, and
//! Content-Length values count the body in that form. Format: `fixtures/sip/README.md`.

use super::message::{self, parse, ParseError, Parsed};
use super::transport::next_frame;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// RFC 4475 alone gives 30 of ours; fewer means fixtures went missing.
const MIN_CORPUS: usize = 40;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    parses: bool,
    /// For refusals: a piece of the error's message (what was wrong, said to a person).
    error: Option<String>,
    method: Option<String>,
    status: Option<u16>,
    reason: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    cseq_method: Option<String>,
    /// The top Via's branch; "" when there is none.
    branch: Option<String>,
    /// "" when the header has no tag.
    to_tag: Option<String>,
    from_tag: Option<String>,
    /// How many Via values the message carries, across headers.
    vias: Option<usize>,
    record_routes: Option<usize>,
    contact: Option<String>,
    body_len: Option<usize>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sip")
}

/// Fixture text (LF) as it goes on the wire: every LF preceded by CR.
pub(crate) fn wire(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The wire form with bare LF in the header section only (the body keeps its length).
fn lf_head(wire: &[u8]) -> Vec<u8> {
    let end = message::body_offset(wire).unwrap_or(wire.len());
    let mut out: Vec<u8> = Vec::with_capacity(wire.len());
    for (i, &b) in wire[..end].iter().enumerate() {
        if !(b == b'\r' && wire.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out.extend_from_slice(&wire[end..]);
    out
}

pub(crate) fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("fixtures/sip")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 name")
                .to_string();
            (stem, wire(&std::fs::read(&p).expect("readable fixture")))
        })
        .collect()
}

fn check(label: &str, got: &Result<Parsed, ParseError>, exp: &Expected, errors: &mut Vec<String>) {
    let mut fail = |what: String| errors.push(format!("{label}: {what}"));
    let p = match (got, exp.parses) {
        (Ok(p), true) => p,
        (Err(e), false) => {
            let want = exp.error.as_deref().unwrap_or("");
            let text = e.to_string();
            if want.is_empty() || !text.contains(want) {
                fail(format!(
                    "refused as {text:?}, expected an error containing {want:?}"
                ));
            }
            return;
        }
        (Ok(_), false) => return fail("parsed, expected a refusal".into()),
        (Err(e), true) => return fail(format!("refused ({e}), expected to parse")),
    };
    let msg = &p.msg;
    let mut same = |what: &str, got: Option<String>, want: &Option<String>| match want {
        None => fail(format!("{what} is not stated in the .expected file")),
        Some(w) if got.as_deref().unwrap_or("") != w => {
            fail(format!("{what}: got {got:?}, expected {w:?}"))
        }
        Some(_) => {}
    };
    match message::status(msg) {
        Some(code) => {
            same(
                "status",
                Some(code.to_string()),
                &exp.status.map(|s| s.to_string()),
            );
            same("reason", Some(p.reason.clone()), &exp.reason);
        }
        None => {
            let method = match msg {
                rsip::SipMessage::Request(r) => r.method.to_string(),
                rsip::SipMessage::Response(_) => String::new(),
            };
            same("method", Some(method), &exp.method);
        }
    }
    same("call_id", message::call_id(msg), &exp.call_id);
    let cseq = message::cseq(msg);
    same(
        "cseq",
        cseq.as_ref().map(|c| c.0.to_string()),
        &exp.cseq.map(|c| c.to_string()),
    );
    same(
        "cseq_method",
        cseq.map(|c| c.1.to_string()),
        &exp.cseq_method,
    );
    same("branch", message::branch(msg), &exp.branch);
    same("to_tag", message::to_tag(msg), &exp.to_tag);
    same("from_tag", message::from_tag(msg), &exp.from_tag);
    same(
        "vias",
        Some(message::vias(msg).count().to_string()),
        &exp.vias.map(|v| v.to_string()),
    );
    same(
        "body_len",
        Some(msg.body().len().to_string()),
        &exp.body_len.map(|v| v.to_string()),
    );
    if exp.contact.is_some() {
        same("contact", message::contact_uri(msg), &exp.contact);
    }
    if let Some(n) = exp.record_routes {
        let got = message::record_routes(msg).len();
        if got != n {
            fail(format!("record_routes: got {got}, expected {n}"));
        }
    }
}

#[test]
fn every_fixture_in_the_sip_corpus_reads_as_expected_in_crlf_and_lf() {
    let all = fixtures();
    assert!(
        all.len() >= MIN_CORPUS,
        "corpus holds {} messages, expected at least {MIN_CORPUS}",
        all.len()
    );
    let mut errors = Vec::new();
    let (mut parsed, mut refused) = (0, 0);
    for (stem, wire) in &all {
        let exp_path = dir().join(format!("{stem}.expected"));
        let exp: Expected = match std::fs::read_to_string(&exp_path)
            .map_err(|e| e.to_string())
            .and_then(|s| toml::from_str(&s).map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{stem}: no usable .expected: {e}"));
                continue;
            }
        };
        if exp.parses {
            parsed += 1;
        } else {
            refused += 1;
        }
        check(&format!("{stem} (CRLF)"), &parse(wire), &exp, &mut errors);
        check(
            &format!("{stem} (LF)"),
            &parse(&lf_head(wire)),
            &exp,
            &mut errors,
        );
    }
    println!(
        "SIP corpus: {} fixtures, {parsed} parse, {refused} refused",
        all.len()
    );
    assert!(
        errors.is_empty(),
        "{} mismatches in the SIP corpus:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn every_truncation_of_every_fixture_is_read_and_framed_without_panicking() {
    let mut runs = 0;
    for (_, wire) in fixtures() {
        let step = wire.len() / 60 + 1;
        for cut in (0..wire.len()).step_by(step) {
            runs += 1;
            let _ = parse(&wire[..cut]);
            let mut stream = wire[..cut].to_vec();
            // Bounded: every Ok(Some) removes bytes from the buffer.
            while let Ok(Some(_)) = next_frame(&mut stream) {}
        }
    }
    assert!(
        runs > MIN_CORPUS * 40,
        "only {runs} truncated inputs were tried"
    );
}
