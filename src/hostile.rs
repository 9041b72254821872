//! Hostile input: property tests feeding arbitrary and mutated bytes to every reader of
//! outside data here (the mail pipeline parse → classify → correlate → quote-strip → score,
//! and the businesses CSV), with a per-thread allocation meter.
//!
//! Invariant checked: no input makes a reader panic, and none makes it hold much more memory
//! than the input's own size (`assert_bounded`). CI runs proptest's default number of cases
//! (256 per property); a long campaign is `PROPTEST_CASES=200000 cargo test --lib hostile`.

use crate::config::branch_list::{read_text, Field, ReadError};
use crate::email::classify::classify;
use crate::email::correlate::{correlate, Candidate};
use crate::email::message::parse;
use crate::quote::extract_reply;
use crate::score::{score, Builtin, Expectation, Rule, ScoreInput};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use std::cell::Cell;
use std::path::Path;
use std::sync::LazyLock;

/// A row's line and id, as read.
type RowAt = (usize, Option<String>);

/// A branch list read from memory: its rows' (line, id) and every problem as (line, message).
fn parse_bytes(raw: &[u8]) -> (Vec<RowAt>, Vec<(usize, String)>) {
    match read_text(Path::new("branches.csv"), raw) {
        Ok(list) => (
            list.rows
                .iter()
                .map(|r| (r.at.line(), r.get(Field::Id).map(str::to_owned)))
                .collect(),
            list.problems
                .into_iter()
                .chain(list.warnings)
                .map(|p| (p.at.line(), p.message))
                .collect(),
        ),
        Err(e @ ReadError::Header { .. }) => (Vec::new(), vec![(1, e.to_string())]),
        Err(e) => (Vec::new(), vec![(0, e.to_string())]),
    }
}

/// Counts the bytes each thread holds, so one test can measure its own peak while others run
/// in parallel. Only in the unit-test binary; it forwards every call to `System` unchanged.
struct Meter;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: allocations during thread teardown, after the cells are gone, are ignored.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// The one unsafe block of the crate, test-only: a global allocator must be an `unsafe impl`;
// it adds bookkeeping in thread-local cells (const-initialised, so they never allocate).
#[allow(unsafe_code)]
mod meter_impl {
    use super::{account, Meter};
    use std::alloc::{GlobalAlloc, Layout, System};

    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                account(layout.size() as isize);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            account(-(layout.size() as isize));
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                account(layout.size() as isize);
            }
            p
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                account(new_size as isize - layout.size() as isize);
            }
            p
        }
    }

    #[global_allocator]
    static GLOBAL: Meter = Meter;
}

/// Runs `f` and returns the most bytes this thread held during it beyond what it held before.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    (PEAK.with(Cell::get) - base).max(0) as usize
}

/// What any input may cost: a fixed allowance for the regex caches, tables and the largest
/// buffers mail-parser sizes up front, plus a multiple of the input. A message is held as raw
/// bytes, decoded parts, `text`, `html` and folded copies for matching, so a small multiple is
/// expected; an allocation that grows with nesting depth or line count would break it.
const FIXED_ALLOWANCE: usize = 16 << 20;
const PER_INPUT_BYTE: usize = 24;

fn assert_bounded(what: &str, input_len: usize, peak: usize) {
    let bound = FIXED_ALLOWANCE + PER_INPUT_BYTE * input_len;
    assert!(
        peak <= bound,
        "{what}: {peak} bytes held for a {input_len}-byte input (bound {bound})"
    );
}

struct Pipeline {
    corpus: Vec<Vec<u8>>,
    candidates: Vec<Candidate>,
    expect: Vec<Expectation>,
    received_at: DateTime<Utc>,
}

static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mail");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/mail")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    let corpus: Vec<Vec<u8>> = names
        .iter()
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect();
    assert!(corpus.len() >= 30, "mail corpus holds {}", corpus.len());
    let at = |h| {
        Utc.with_ymd_and_hms(2026, 11, 3, h, 0, 0)
            .single()
            .expect("valid")
    };
    let cand = |id: &str, code: &str, subject: &str, email: &str| Candidate {
        visit_id: id.into(),
        message_id: format!("{id}@robot.test"),
        reference: code.into(),
        subject: subject.into(),
        business_email: email.into(),
        sent_at: at(9),
        window_end: at(9) + chrono::Duration::days(30),
        by_sender: false,
        form_domain: None,
    };
    let terms = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Pipeline {
        corpus,
        candidates: vec![
            cand(
                "lille",
                "DV-7K3Q",
                "Demande de devis – Lille",
                "contact@lille.branch.test",
            ),
            cand(
                "douai",
                "QK7M-3Z",
                "Demande de devis",
                "agence.douai@gmail.com",
            ),
            cand(
                "lens",
                "TW4R-8N",
                "Demande de devis",
                "agence.lens@gmail.com",
            ),
        ],
        expect: vec![
            Expectation {
                id: "prix".into(),
                rule: Rule::Any(terms(&["tarif", "prix", "€"])),
                weight: 3,
            },
            Expectation {
                id: "tout".into(),
                rule: Rule::All(terms(&["devis", "Lille"])),
                weight: 1,
            },
            Expectation {
                id: "non".into(),
                rule: Rule::None(terms(&["impossible", "désolé"])),
                weight: 1,
            },
            Expectation {
                id: "re".into(),
                rule: Rule::Regex(regex::Regex::new("(?i)bonjour|madame").expect("regex")),
                weight: 1,
            },
            Expectation {
                id: "perso".into(),
                rule: Rule::Builtin(Builtin::Personalised),
                weight: 1,
            },
            Expectation {
                id: "signe".into(),
                rule: Rule::Builtin(Builtin::Signed),
                weight: 1,
            },
            Expectation {
                id: "vite".into(),
                rule: Rule::Builtin(Builtin::AnswersWithin(std::time::Duration::from_secs(
                    86400,
                ))),
                weight: 1,
            },
        ],
        received_at: at(12),
    }
});

/// The whole reading of one message, as `email::reply::take_in_batch` does it minus the store.
fn read_mail(raw: &[u8]) {
    let p = &*PIPELINE;
    let Ok(mail) = parse(raw) else {
        return;
    };
    let _ = classify(&mail);
    let found = correlate(&mail, &p.candidates, p.received_at);
    let reply = extract_reply(&mail.text);
    let card = score(
        &p.expect,
        &ScoreInput {
            reply: &reply,
            persona_name: "Claire Dupont",
            time_to_reply: found.and_then(|(c, _)| (p.received_at - c.sent_at).to_std().ok()),
        },
    );
    assert!((0.0..=100.0).contains(&card.score), "score {}", card.score);
}

fn read_mail_bounded(raw: &[u8]) {
    let peak = peak_during(|| read_mail(raw));
    assert_bounded("mail pipeline", raw.len(), peak);
}

/// One damage done to a real message. Positions are taken modulo the message's length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        xor: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Repeats the header line found at or after `at`.
    DuplicateHeader {
        at: usize,
        times: usize,
    },
    HugeLine {
        at: usize,
        len: usize,
        byte: u8,
    },
    /// Wraps the message in `depth` multipart levels.
    DeepMime {
        depth: usize,
    },
    /// Puts an unknown or lying charset / transfer encoding in the first Content-Type.
    BadCharset {
        charset: String,
        encoding: String,
    },
    /// The same HTML tag many times (unclosed `<script>`, `<blockquote>`…).
    RepeatTag {
        at: usize,
        tag: String,
        times: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop_oneof![
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"\n\t".to_vec()),
        Just(b"=?utf-8?B?".to_vec()),
        Just(b"\r\n--".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just("é€\u{202f}:".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), special).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..2000usize)
            .prop_map(|(at, times)| Mutation::DuplicateHeader { at, times }),
        (
            any::<usize>(),
            1..300_000usize,
            prop_oneof![Just(b'a'), Just(b'>'), Just(b' '), Just(b'=')]
        )
            .prop_map(|(at, len, byte)| Mutation::HugeLine { at, len, byte }),
        (1..400usize).prop_map(|depth| Mutation::DeepMime { depth }),
        (
            prop_oneof![
                Just("x-nonsense".to_string()),
                Just("utf-7".to_string()),
                Just("iso-2022-jp".to_string()),
                Just("".to_string()),
                "[a-z0-9\\-]{0,40}",
            ],
            prop_oneof![
                Just("base64".to_string()),
                Just("quoted-printable".to_string()),
                Just("x-uuencode".to_string()),
                Just("7bit".to_string()),
                "[a-z0-9\\-]{0,20}",
            ]
        )
            .prop_map(|(charset, encoding)| Mutation::BadCharset { charset, encoding }),
        (
            any::<usize>(),
            prop_oneof![
                Just("<script>".to_string()),
                Just("<style>".to_string()),
                Just("<title>".to_string()),
                Just("<blockquote>".to_string()),
                Just("<div class=gmail_quote>".to_string()),
                Just("</div>".to_string()),
                Just("<pre>".to_string()),
                Just("<!--".to_string()),
                Just("&#x".to_string()),
                Just("<".to_string()),
            ],
            1..20_000usize
        )
            .prop_map(|(at, tag, times)| Mutation::RepeatTag { at, tag, times }),
    ]
}

fn apply(mut m: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    // A position anywhere in the message, its end included.
    let pos = |at: usize, len: usize| at % (len + 1);
    match mutation {
        Mutation::Flip { at, xor } => {
            if !m.is_empty() {
                let i = at % m.len();
                m[i] ^= xor;
            }
        }
        Mutation::Truncate { at } => {
            let i = pos(*at, m.len());
            m.truncate(i);
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, m.len());
            m.splice(i..i, bytes.iter().copied());
        }
        Mutation::DuplicateHeader { at, times } => {
            let end_of_headers = find(&m, b"\n\n")
                .or_else(|| find(&m, b"\r\n\r\n"))
                .unwrap_or(m.len());
            let start = pos(*at, m.len()).min(end_of_headers);
            let line_start = m[..start]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            let line_end = m[line_start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(m.len(), |p| line_start + p + 1);
            let line = m[line_start..line_end].to_vec();
            m.splice(line_start..line_start, line.repeat(*times));
        }
        Mutation::HugeLine { at, len, byte } => {
            let i = pos(*at, m.len());
            m.splice(i..i, std::iter::repeat_n(*byte, *len));
        }
        Mutation::DeepMime { depth } => {
            let mut out = b"From: a@b.test\nSubject: deep\nMIME-Version: 1.0\n".to_vec();
            for d in 0..*depth {
                out.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary=\"b{d}\"\n\n--b{d}\n")
                        .as_bytes(),
                );
            }
            out.extend_from_slice(b"Content-Type: message/rfc822\n\n");
            out.extend_from_slice(&m);
            for d in (0..*depth).rev() {
                out.extend_from_slice(format!("\n--b{d}--\n").as_bytes());
            }
            m = out;
        }
        Mutation::BadCharset { charset, encoding } => {
            let header = format!(
                "Content-Type: text/plain; charset=\"{charset}\"\nContent-Transfer-Encoding: {encoding}\n"
            );
            let mut out = header.into_bytes();
            out.extend_from_slice(&m);
            m = out;
        }
        Mutation::RepeatTag { at, tag, times } => {
            let i = pos(*at, m.len());
            let bytes = tag.as_bytes().repeat(*times);
            m.splice(i..i, bytes);
        }
    }
    m
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_mail_pipeline(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        read_mail_bounded(&raw);
    }

    #[test]
    fn arbitrary_text_with_mail_headers_never_panics_the_mail_pipeline(
        headers in proptest::collection::vec(
            ("(From|To|Subject|Content-Type|Content-Transfer-Encoding|In-Reply-To|References|Date|Auto-Submitted|Precedence|MIME-Version)", "[ -~\t]{0,80}"),
            0..12,
        ),
        body in "(?s).{0,2000}",
    ) {
        let mut raw = String::new();
        for (name, value) in &headers {
            raw.push_str(&format!("{name}: {value}\n"));
        }
        raw.push('\n');
        raw.push_str(&body);
        read_mail_bounded(raw.as_bytes());
    }

    #[test]
    fn mutated_corpus_messages_never_panic_the_mail_pipeline(
        pick in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let p = &*PIPELINE;
        let mut raw = p.corpus[pick.index(p.corpus.len())].clone();
        for m in &mutations {
            raw = apply(raw, m);
        }
        read_mail_bounded(&raw);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_businesses_csv_reader(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let peak = peak_during(|| { let _ = parse_bytes(&raw); });
        assert_bounded("businesses CSV", raw.len(), peak);
    }

    #[test]
    fn mutated_businesses_csv_never_panics_and_every_problem_names_a_line(
        rows in proptest::collection::vec(
            proptest::collection::vec("[^\n]{0,30}|\"[^\"]{0,20}|[;,\"\r\n\x00]{1,4}", 0..10),
            0..30,
        ),
        semicolons in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let sep = if semicolons { ";" } else { "," };
        let mut text = String::new();
        if bom {
            text.push('\u{feff}');
        }
        text.push_str(&["id", "name", "group", "email", "phone", "timezone", "city", "hours"].join(sep));
        text.push('\n');
        for row in &rows {
            text.push_str(&row.join(sep));
            text.push('\n');
        }
        let lines = text.lines().count() + 1;
        let (good, errors) = parse_bytes(text.as_bytes());
        for (line, message) in &errors {
            prop_assert!(*line <= lines, "line {line} of {lines}: {message}");
            prop_assert!(!message.is_empty());
        }
        for (line, id) in &good {
            prop_assert!(*line >= 2 && *line <= lines, "row at line {line} of {lines}");
            prop_assert!(id.as_deref() != Some(""));
        }
    }
}

/// Large pathological inputs, one of each kind, against the memory bound (the property tests
/// above keep to small inputs so CI stays fast).
#[test]
fn big_pathological_messages_are_read_within_the_memory_bound() {
    let p = &*PIPELINE;
    let base = p.corpus[0].clone();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "4 MiB line",
            apply(
                base.clone(),
                &Mutation::HugeLine {
                    at: usize::MAX,
                    len: 4 << 20,
                    byte: b'a',
                },
            ),
        ),
        (
            "4 MiB of '>' quotes",
            apply(
                base.clone(),
                &Mutation::HugeLine {
                    at: usize::MAX,
                    len: 4 << 20,
                    byte: b'>',
                },
            ),
        ),
        (
            "2000-deep MIME",
            apply(base.clone(), &Mutation::DeepMime { depth: 2000 }),
        ),
        (
            "50 000 duplicated headers",
            apply(
                base.clone(),
                &Mutation::DuplicateHeader {
                    at: 0,
                    times: 50_000,
                },
            ),
        ),
        ("200 000 lines", {
            let mut m = b"From: a@b.test\nSubject: x\n\n".to_vec();
            m.extend(b"> a\n".repeat(200_000));
            m
        }),
        ("100 000 mobile footers", {
            let mut m = b"From: a@b.test\nSubject: x\n\nBonjour\n".to_vec();
            m.extend(b"Sent from my iPhone\n\n".repeat(100_000));
            m
        }),
        ("100 000 unclosed <script> tags", {
            let mut m = b"From: a@b.test\nSubject: x\nContent-Type: text/html\n\n".to_vec();
            m.extend(b"<script>".repeat(100_000));
            m
        }),
        ("20 000 nested blockquotes", {
            let mut m = b"From: a@b.test\nSubject: x\nContent-Type: text/html\n\n".to_vec();
            m.extend(b"<blockquote>x".repeat(20_000));
            m
        }),
    ];
    for (what, raw) in cases {
        let peak = peak_during(|| read_mail(&raw));
        eprintln!("{what}: {} bytes in, peak {} bytes held", raw.len(), peak);
        assert_bounded(what, raw.len(), peak);
    }
}

#[test]
fn the_meter_sees_a_big_allocation_so_the_bound_can_fail() {
    let peak = peak_during(|| {
        let v = vec![1u8; 64 << 20];
        std::hint::black_box(&v);
    });
    assert!(peak >= 64 << 20, "{peak}");
    let result = std::panic::catch_unwind(|| assert_bounded("planted", 1000, peak));
    assert!(
        result.is_err(),
        "a 64 MiB peak for 1000 bytes must break the bound"
    );
}

#[test]
fn a_big_businesses_csv_is_read_within_the_memory_bound() {
    let mut text = String::from("id,name,email\n");
    for i in 0..100_000 {
        text.push_str(&format!("b{i},\"Agence, {i}\",b{i}@x.test\n"));
    }
    text.push_str(&"x".repeat(4 << 20));
    let peak = peak_during(|| {
        let (rows, _) = parse_bytes(text.as_bytes());
        // The 100,000 branches; the 4 MiB line of garbage at the end is a row of its own now
        // (rejected with its line), no longer dropped unseen.
        let branches = rows
            .iter()
            .filter(|(_, id)| id.as_deref().is_some_and(|i| i.starts_with('b')))
            .count();
        assert_eq!(branches, 100_000);
    });
    eprintln!("CSV: {} bytes in, peak {peak} bytes held", text.len());
    assert_bounded("businesses CSV", text.len(), peak);
}
