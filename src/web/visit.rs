//! A visit's evidence: the measurements, the rules and their evidence, the enquiry as sent, each
//! reply with the quoted history set apart, and for calls the recording and the transcript.
//!
//! Invariant: a visit of a group the viewer may not see answers `WebError::NotFound`, exactly as
//! a visit that does not exist, before anything else of it is read.

use super::i18n::Locale;
use super::pages::{frame, html, int, num, seg, Q};
use super::{render, St, Viewer, WebError};
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
            text.find(e).map(|at| (at, at + e.len()))
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
                let r = crate::email::quote::extract_reply(&p.text);
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
    }
}
