//! Property tests: arbitrary bytes and mutated corpus messages fed to the SIP parser, the TCP
//! framing and what peer input reaches after them (header lookups, digest challenges, our
//! answers to in-dialog requests).
//!
//! Invariant under test: no input panics, nothing grows past the input (a parsed body is never
//! longer than the bytes given, a frame never longer than `MAX_MESSAGE`, a huge
//! Content-Length is refused before any allocation of that size), and a message that `parse`
//! accepts has its Call-ID, CSeq, From and To readable. CI runs proptest's default 256 cases
//! per property; `PROPTEST_CASES=100000 cargo test --lib sip::hostile` runs a long campaign.

use super::auth;
use super::corpus::fixtures;
use super::dialog::{Dialog, Local};
use super::message::{self, parse, MAX_MESSAGE};
use super::transport::{next_frame, response_to};
use proptest::prelude::*;
use proptest::sample::Index;
use rsip::SipMessage;
use std::sync::OnceLock;

/// What hostile peers like to slip in: line breaks, NUL, separators, quotes, numbers that
/// overflow, lengths that lie, bytes that are not UTF-8.
const INSERTS: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\0",
    b"\r\n",
    b"\r\n ",
    b"\r\n\t",
    b"\r\n\r\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b"<",
    b">",
    b"\"",
    b"\\",
    b"%00",
    b"99999999999999999999999",
    b"4294967296",
    b"-1",
    b"Content-Length: 999999999\r\n",
    b"l: 65536\r\n",
    b"Via: SIP/2.0/UDP x;branch=\r\n",
    b"\xff\xfe\xc3",
    "é".as_bytes(),
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, &'static [u8]),
    Delete(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::sample::select(INSERTS)).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) if !bytes.is_empty() => {
                let at = i.index(len);
                bytes[at] ^= b | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
            Mutation::Insert(i, s) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, s.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i.index(len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(fixtures)
}

fn dialog() -> Dialog {
    Dialog::new(
        Local {
            hostport: "127.0.0.1:5070".into(),
            transport: "UDP",
            from_uri: "sip:robot@robot.test".into(),
            caller: None,
            user_agent: None,
            proxy_route: None,
        },
        "sip:agence@127.0.0.1:5081",
    )
}

/// Everything peer bytes reach: parse, then what the UA reads and answers.
fn exercise(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(p) = parse(bytes) {
        let msg = &p.msg;
        prop_assert!(msg.body().len() <= bytes.len(), "body longer than input");
        // parse vouches for these: every layer above relies on them.
        prop_assert!(
            message::call_id(msg).is_some(),
            "Call-ID unreadable after parse"
        );
        prop_assert!(message::cseq(msg).is_some(), "CSeq unreadable after parse");
        let _ = (
            message::branch(msg),
            message::to_tag(msg),
            message::from_tag(msg),
        );
        let _ = (message::contact_uri(msg), message::record_routes(msg));
        match msg {
            SipMessage::Request(req) => {
                let mut d = dialog();
                d.confirm(msg);
                if let Some(answer) = d.answer(req, "v=0\r\n") {
                    // Our own answers always read back.
                    prop_assert!(parse(answer.as_bytes()).is_ok(), "{answer}");
                }
                let _ = response_to(req, 481, "Call/Transaction Does Not Exist", Some("t"));
            }
            SipMessage::Response(_) => {
                let _ = auth::challenges(msg);
            }
        }
    }
    let mut stream = bytes.to_vec();
    // Bounded: each Ok(Some) takes at least one byte off the buffer.
    while let Ok(Some(frame)) = next_frame(&mut stream) {
        prop_assert!(
            frame.len() <= 2 * MAX_MESSAGE,
            "frame of {} bytes",
            frame.len()
        );
        let _ = parse(&frame);
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parser_or_the_framing(
        bytes in prop::collection::vec(any::<u8>(), 0..2048)
    ) {
        exercise(&bytes)?;
    }

    #[test]
    fn mutated_corpus_messages_never_panic_and_never_outgrow_their_input(
        pick in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let all = corpus();
        prop_assert!(!all.is_empty(), "empty corpus");
        let (_, wire) = &all[pick.index(all.len())];
        exercise(&apply(wire.clone(), &mutations))?;
    }

    #[test]
    fn a_message_cut_into_arbitrary_stream_chunks_frames_the_same(
        pick in any::<Index>(),
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let all = corpus();
        let (_, wire) = &all[pick.index(all.len())];
        let mut whole = wire.clone();
        let expected = next_frame(&mut whole);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        points.push(wire.len());
        let (mut buf, mut from, mut got) = (Vec::new(), 0, Ok(None));
        for p in points {
            buf.extend_from_slice(&wire[from..p]);
            from = p;
            got = next_frame(&mut buf);
            if !matches!(got, Ok(None)) {
                break;
            }
        }
        prop_assert_eq!(got, expected);
    }
}
