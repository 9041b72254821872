//! A visit's evidence: the measurements, the rules and their evidence, the enquiry as sent, each
//! reply with the quoted history set apart, and for calls the recording and the transcript.
//!
//! Invariant: a visit of a group the viewer may not see answers `WebError::NotFound`, exactly as
//! a visit that does not exist, before anything else of it is read.

use super::i18n::Locale;
use super::pages::{frame, html, int, num, seg, Q};
use super::{render, St, Viewer, WebError};
use crate::config::RingCadence;
use crate::report::VisitJson;
use crate::store::Visit;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Serialize;

/// A visit a viewer may see, or 404.
pub(super) async fn visible_visit(st: &St, viewer: &Viewer, id: &str) -> Result<Visit, WebError> {
    st.cx
        .store
        .visit(id)
        .await?
        .filter(|v| viewer.user.sees_group(v.group_id.as_deref()))
        .ok_or(WebError::NotFound)
}

/// A piece of text, marked when it is a rule's evidence.
#[derive(Serialize)]
struct Piece {
    text: String,
    mark: bool,
}

/// `text` cut into pieces, the passages quoted as evidence marked.
fn marked(text: &str, evidence: &[String]) -> Vec<Piece> {
    let mut ranges: Vec<(usize, usize)> = evidence
        .iter()
        .filter_map(|e| {
            let e = e.trim().trim_matches('…').trim();
            if e.chars().count() < 3 {
                return None;
            }
            // The score's snippets fold whitespace: a passage across lines is found with any
            // run of whitespace between its words.
            let words: Vec<String> = e.split_whitespace().map(regex::escape).collect();
            let re = regex::Regex::new(&words.join(r"\s+")).ok()?;
            re.find(text).map(|m| (m.start(), m.end()))
        })
        .collect();
    ranges.sort();
    let mut out = Vec::new();
    let mut at = 0;
    for (s, e) in ranges {
        if s < at {
            continue;
        }
        if s > at {
            out.push(Piece {
                text: text[at..s].to_owned(),
                mark: false,
            });
        }
        out.push(Piece {
            text: text[s..e].to_owned(),
            mark: true,
        });
        at = e;
    }
    if at < text.len() {
        out.push(Piece {
            text: text[at..].to_owned(),
            mark: false,
        });
    }
    out
}

/// One line of a call's SIP timeline: what happened, and when, counted from the INVITE.
#[derive(Debug, Serialize, PartialEq)]
struct SipStep {
    /// A key of the page's words (`sip_invite`, `sip_ring`…).
    what: &'static str,
    /// The ring's number, for `sip_ring`.
    n: Option<i64>,
    /// Milliseconds after the INVITE; `None`: not recorded.
    offset_ms: Option<i64>,
    /// The offset as the viewer reads it ("+1 234 ms"), or "".
    offset: String,
    /// The moment in the viewer's zone, when the INVITE's is known.
    at: String,
    /// A qualifier: the final response's status, "estimated from the ring cadence"…
    note: String,
}

/// The call's timeline from what the store keeps: the INVITE (`dialed_at`), the first 18x
/// (`pdd_ms`), each ring (the count and the configured cadence: SIP says when ringing starts,
/// not each ring), the 200 (`answer_ms`), the first voice (`greeting_ms` after the answer) and
/// the BYE (`talk_ms` after the answer). What the store does not keep is said to be missing,
/// never guessed: an unanswered call's final response has a status but no time.
fn sip_timeline(loc: &Locale, v: &Visit, cadence: RingCadence) -> Vec<SipStep> {
    let words = loc.words();
    let word = |k: &str| words.get(k).copied().unwrap_or_default().to_owned();
    let step = |what: &'static str, n: Option<i64>, offset_ms: Option<i64>, note: String| {
        let offset = offset_ms.map_or_else(String::new, |ms| {
            format!("+{} ms", crate::digest::locale::integer(loc.lang, ms))
        });
        let at = match (v.dialed_at, offset_ms) {
            (Some(d), Some(ms)) => loc.when(Some(d + ms)),
            _ => String::new(),
        };
        SipStep {
            what,
            n,
            offset_ms,
            offset,
            at,
            note,
        }
    };
    let mut out = vec![step(
        "sip_invite",
        None,
        v.dialed_at.map(|_| 0),
        String::new(),
    )];
    out.push(step("sip_first_18x", None, v.pdd_ms, String::new()));
    let rings = v
        .rings
        .or_else(|| v.ring_ms.map(|r| cadence.rings(r)))
        .unwrap_or(0);
    let cycle = (cadence.on + cadence.off).as_millis() as i64;
    for k in 1..=rings {
        let at = v.pdd_ms.map(|p| p + (k - 1) * cycle);
        out.push(step("sip_ring", Some(k), at, word("sip_ring_estimated")));
    }
    match v.answer_ms {
        Some(a) => {
            out.push(step("sip_answer", None, Some(a), String::new()));
            out.push(step(
                "sip_greeting",
                None,
                v.greeting_ms.map(|g| a + g),
                String::new(),
            ));
            out.push(step(
                "sip_bye",
                None,
                v.talk_ms.map(|t| a + t),
                String::new(),
            ));
        }
        None => {
            let status = v
                .final_code
                .map(|c| format!("{c} {}", v.final_reason.clone().unwrap_or_default()))
                .unwrap_or_default();
            out.push(step("sip_final", None, None, status.trim().to_owned()));
        }
    }
    out
}

#[derive(Serialize)]
struct MessageView {
    arrived: String,
    from: Option<String>,
    subject: Option<String>,
    class: String,
    class_reason: Option<String>,
    correlation: Option<String>,
    new_text: Vec<Piece>,
    signature: Option<String>,
    full_text: Option<String>,
    purged: bool,
}

pub async fn visit(
    st: St,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Response, WebError> {
    let v = visible_visit(&st, &viewer, &id).await?;
    let loc = Locale::of(&headers, q.lang.as_deref(), q.tz.as_deref(), st.auth.secure);
    let rules = st.cx.store.rules(&v.id).await?;
    let evidence: Vec<String> = rules
        .iter()
        .filter(|r| r.hit)
        .filter_map(|r| r.evidence.clone())
        .collect();
    let json = VisitJson {
        screenshots: st.cx.store.screenshots(&v.id).await?,
        ..VisitJson::from_visit(&v, rules)
    };
    let enquiry = st
        .cx
        .store
        .enquiry(&v.id)
        .await?
        .map(|e| String::from_utf8_lossy(&e.raw).replace("\r\n", "\n"));
    let mut messages = Vec::new();
    for m in st.cx.store.visit_messages(&v.id).await? {
        let parsed = m
            .raw
            .as_deref()
            .and_then(|raw| crate::email::message::parse(raw).ok());
        let (new_text, signature, full) = match &parsed {
            Some(p) => {
                let r = crate::quote::extract_reply(&p.text);
                (
                    marked(&r.new_text, &evidence),
                    r.signature,
                    Some(p.text.clone()),
                )
            }
            None => (Vec::new(), None, None),
        };
        messages.push(MessageView {
            arrived: loc.when(Some(m.arrived_at)),
            from: m.from_addr,
            subject: m.subject,
            class: m.class,
            class_reason: m.class_reason,
            correlation: m.correlation,
            new_text,
            signature,
            full_text: full,
            purged: m.raw.is_none(),
        });
    }
    let business = st.cx.config.business(&v.business_id);
    let measures: Vec<(String, String)> = [
        ("due_at", loc.when(Some(v.due_at))),
        ("sent_at", loc.when(v.sent_at)),
        ("submitted_at", loc.when(v.submitted_at)),
        ("first_reply_at", loc.when(v.first_reply_at)),
        ("time_to_reply", loc.dur_ms(v.time_to_reply_ms)),
        (
            "time_to_reply_business",
            loc.dur_ms(v.time_to_reply_business_ms),
        ),
        ("time_to_ack", loc.dur_ms(v.time_to_ack_ms)),
        ("dialed_at", loc.when(v.dialed_at)),
        ("pdd", loc.dur_ms(v.pdd_ms)),
        ("ring", loc.dur_ms(v.ring_ms)),
        ("answer", loc.dur_ms(v.answer_ms)),
        ("greeting", loc.dur_ms(v.greeting_ms)),
        ("talk", loc.dur_ms(v.talk_ms)),
        ("rings", int(v.rings)),
        (
            "final",
            v.final_code
                .map(|c| format!("{c} {}", v.final_reason.clone().unwrap_or_default()))
                .unwrap_or_default(),
        ),
        (
            "rtp",
            match (v.rtp_sent, v.rtp_received, v.rtp_lost) {
                (Some(s), Some(r), l) => format!("{s} / {r} / {}", l.unwrap_or(0)),
                _ => String::new(),
            },
        ),
        ("jitter_ms", num(v.jitter_ms, 1)),
        ("score", loc.score(v.score)),
    ]
    .into_iter()
    .filter(|(_, val)| !val.is_empty() && val != "—")
    .map(|(k, val)| (k.to_owned(), val))
    .collect();
    let segments: Vec<(String, String)> = json
        .segments
        .iter()
        .flatten()
        .map(|s| (loc.dur_ms(Some(s.start_ms)), s.text.clone()))
        .collect();
    let sip = (v.channel == "call").then(|| sip_timeline(&loc, &v, st.cx.config.ring_cadence));
    let body = render(
        "visit.html",
        context! {
            ..frame(&loc, &viewer, &format!("/visits/{}", seg(&v.id))),
            ..context! {
                v => json,
                outcome => loc.outcome(v.outcome.as_deref().unwrap_or("pending")),
                business => context! {
                    name => business.map_or(v.business_id.clone(), |b| b.name.clone()),
                    href => business.map(|b| format!("/businesses/{}", seg(&b.id))),
                },
                measures => measures,
                enquiry => enquiry,
                messages => messages,
                segments => segments,
                sip => sip,
                recording_href => v.recording.as_ref().map(|_| format!("/visits/{}/recording.wav", seg(&v.id))),
                screenshots_href => format!("/visits/{}/screenshots", seg(&v.id)),
            }
        },
    )?;
    Ok(html(&loc, StatusCode::OK, body))
}

/// The call's recording, only from under `[storage] recordings_dir`.
pub async fn recording(
    st: St,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let v = visible_visit(&st, &viewer, &id).await?;
    let path = v.recording.ok_or(WebError::NotFound)?;
    let dir = std::fs::canonicalize(&st.cx.config.storage.recordings_dir)
        .map_err(|_| WebError::NotFound)?;
    let file = std::fs::canonicalize(&path).map_err(|_| WebError::NotFound)?;
    if !file.starts_with(&dir) {
        tracing::warn!(visit = %v.id, "recording outside recordings_dir refused");
        return Err(WebError::NotFound);
    }
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|_| WebError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{}.wav\"", seg(&v.id)),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_visit() -> Visit {
        let mut v = Visit {
            channel: "call".into(),
            ..Visit::default()
        };
        v.dialed_at = Some(1_772_000_000_000);
        v.pdd_ms = Some(1_200);
        v.answer_ms = Some(12_300);
        v.ring_ms = Some(11_100);
        v.rings = Some(3);
        v.greeting_ms = Some(800);
        v.talk_ms = Some(20_000);
        v
    }

    fn loc(lang: &str) -> Locale {
        Locale::of(&HeaderMap::new(), Some(lang), Some("Europe/Paris"), false)
    }

    #[test]
    fn an_answered_calls_timeline_counts_each_step_from_the_invite() {
        let steps = sip_timeline(&loc("fr"), &call_visit(), RingCadence::default());
        let seen: Vec<(&str, Option<i64>, Option<i64>)> =
            steps.iter().map(|s| (s.what, s.n, s.offset_ms)).collect();
        assert_eq!(
            seen,
            vec![
                ("sip_invite", None, Some(0)),
                ("sip_first_18x", None, Some(1_200)),
                ("sip_ring", Some(1), Some(1_200)),
                ("sip_ring", Some(2), Some(6_200)),
                ("sip_ring", Some(3), Some(11_200)),
                ("sip_answer", None, Some(12_300)),
                ("sip_greeting", None, Some(13_100)),
                ("sip_bye", None, Some(32_300)),
            ]
        );
        assert_eq!(steps[5].offset, "+12\u{202F}300 ms");
        assert!(steps[2].note.contains("cadence"));
    }

    #[test]
    fn what_the_store_did_not_keep_is_left_unknown() {
        let mut v = call_visit();
        v.answer_ms = None;
        v.ring_ms = None;
        v.rings = None;
        v.greeting_ms = None;
        v.talk_ms = None;
        v.final_code = Some(486);
        v.final_reason = Some("Busy Here".into());
        let steps = sip_timeline(&loc("en"), &v, RingCadence::default());
        let last = steps.last().unwrap();
        assert_eq!((last.what, last.offset_ms), ("sip_final", None));
        assert_eq!(last.note, "486 Busy Here");
        assert_eq!(
            steps.len(),
            3,
            "INVITE, first 18x, final: no ring is guessed"
        );
        // Answered, but no voice heard and the end never seen.
        let mut v = call_visit();
        v.greeting_ms = None;
        v.talk_ms = None;
        let steps = sip_timeline(&loc("en"), &v, RingCadence::default());
        assert!(steps[6..]
            .iter()
            .all(|s| s.offset_ms.is_none() && s.offset.is_empty()));
    }

    #[test]
    fn evidence_is_marked_where_it_stands_in_the_reply() {
        let p = marked(
            "Bonjour, nos tarifs sont de 40 €. Cordialement",
            &["…nos tarifs sont de 40 €…".into(), "zz".into()],
        );
        let shown: Vec<(&str, bool)> = p.iter().map(|p| (p.text.as_str(), p.mark)).collect();
        assert_eq!(
            shown,
            vec![
                ("Bonjour, ", false),
                ("nos tarifs sont de 40 €", true),
                (". Cordialement", false)
            ]
        );
        let p = marked(
            "Nos tarifs sont de 40 € par mois,\nsans engagement.",
            &["…de 40 € par mois, sans engagement…".into()],
        );
        assert_eq!(p[1].text, "de 40 € par mois,\nsans engagement");
        assert!(p[1].mark);
    }
}
