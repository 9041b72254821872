//! `/metrics`: Prometheus text for every group, behind `Authorization: Bearer` and the token of
//! `[http] metrics_token_env` (401 without it or with another, 404 when none is configured).
//!
//! Invariant: read from the store on each scrape, so several daemons on one PostgreSQL export
//! the same figures; the visit figures come from the totals the store keeps (store::rollups),
//! so a scrape costs the same with a thousand visits or a million. Label values are escaped as
//! the text format requires.

use super::{auth, St};
use crate::store::{GroupHistogram, Measured};
use anyhow::Result;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

pub async fn metrics(st: St, headers: HeaderMap) -> Response {
    let Some(token) = st
        .cx
        .config
        .http
        .as_ref()
        .and_then(|h| h.metrics_token.as_ref())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if given.is_empty() || !auth::same(given.trim(), token.expose()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    match exposition(&st).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("metrics: {e:#}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn exposition(st: &St) -> Result<String> {
    let store = &st.cx.store;
    // One fold, then every total read is current (PostgreSQL; nothing to do on SQLite).
    store.fold_totals().await?;
    let mut out = String::new();
    out.push_str(
        "# HELP mystery_visits_total Finished visits by group, channel and outcome.\n\
         # TYPE mystery_visits_total counter\n",
    );
    for (group, channel, outcome, n) in store.outcome_totals().await? {
        writeln!(
            out,
            "mystery_visits_total{{group=\"{}\",channel=\"{}\",outcome=\"{}\"}} {n}",
            escape(group.as_deref().unwrap_or("")),
            escape(&channel),
            escape(&outcome)
        )?;
    }
    for (name, help, m) in [
        (
            "mystery_time_to_reply_seconds",
            "Time from sending an enquiry email to the first human reply, per group.",
            Measured::TimeToReply,
        ),
        (
            "mystery_form_time_to_reply_seconds",
            "Time from a contact form's confirmation to the first human reply, per group.",
            Measured::FormTimeToReply,
        ),
        (
            "mystery_answer_seconds",
            "Time from dialling to the branch picking up, per group.",
            Measured::Answer,
        ),
    ] {
        writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram")?;
        let (edges_ms, histograms) = store.group_histograms(m).await?;
        for h in histograms {
            histogram(&mut out, name, &edges_ms, &h)?;
        }
    }
    out.push_str(
        "# HELP mystery_branch_last_answer_timestamp_seconds When the branch last replied to an \
         enquiry or picked up a call (Unix time).\n\
         # TYPE mystery_branch_last_answer_timestamp_seconds gauge\n",
    );
    for (group, business, at) in store.last_answers().await? {
        writeln!(
            out,
            "mystery_branch_last_answer_timestamp_seconds{{group=\"{}\",business=\"{}\"}} {}",
            escape(group.as_deref().unwrap_or("")),
            escape(&business),
            seconds(at)
        )?;
    }
    out.push_str(
        "# HELP mystery_queue_depth Work waiting: visits planned or running, transcripts pending.\n\
         # TYPE mystery_queue_depth gauge\n",
    );
    let running = store.count_by_state("running").await? + store.count_by_state("sending").await?;
    for (kind, n) in [
        ("visits_planned", store.count_by_state("planned").await?),
        ("visits_running", running),
        (
            "visits_awaiting_reply",
            store.count_by_state("awaiting_reply").await?,
        ),
        ("transcripts_pending", store.pending_transcripts().await?),
    ] {
        writeln!(out, "mystery_queue_depth{{kind=\"{kind}\"}} {n}")?;
    }
    operations(st, &mut out).await?;
    Ok(out)
}

/// The watchers' lag and the protocol errors: how the machinery itself is doing.
async fn operations(st: &St, out: &mut String) -> Result<()> {
    let store = &st.cx.store;
    out.push_str(
        "# HELP mystery_watcher_lag_seconds How far behind now each watched mailbox is known \
         read: now minus the start of its last complete pass (the instant the reply-deadline \
         rule trusts); +Inf while it was never read.\n\
         # TYPE mystery_watcher_lag_seconds gauge\n",
    );
    if let Some(imap) = &st.cx.config.imap {
        let now = st.cx.now_ms();
        for (mailbox, read_at) in store
            .mailbox_read_at(&imap.username, &imap.mailboxes)
            .await?
        {
            let lag = read_at.map_or("+Inf".to_owned(), |at| seconds((now - at).max(0)));
            writeln!(
                out,
                "mystery_watcher_lag_seconds{{mailbox=\"{}\"}} {lag}",
                escape(&mailbox)
            )?;
        }
    }
    out.push_str(
        "# HELP mystery_protocol_errors_total Failed exchanges with our peers, counted in the \
         store by every daemon: smtp (a send that failed or whose verdict was lost), imap (a \
         watcher session that failed), sip (a call that failed on our side).\n\
         # TYPE mystery_protocol_errors_total counter\n",
    );
    for (kind, n) in store.protocol_errors().await? {
        writeln!(
            out,
            "mystery_protocol_errors_total{{kind=\"{}\"}} {n}",
            escape(&kind)
        )?;
    }
    Ok(())
}

fn seconds(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    format!("{s}")
}

fn histogram(out: &mut String, name: &str, edges_ms: &[i64], h: &GroupHistogram) -> Result<()> {
    let group = escape(h.group.as_deref().unwrap_or(""));
    for (edge, n) in edges_ms.iter().zip(&h.le) {
        let edge = seconds(*edge);
        writeln!(out, "{name}_bucket{{group=\"{group}\",le=\"{edge}\"}} {n}")?;
    }
    writeln!(
        out,
        "{name}_bucket{{group=\"{group}\",le=\"+Inf\"}} {}",
        h.count
    )?;
    writeln!(out, "{name}_sum{{group=\"{group}\"}} {}", seconds(h.sum_ms))?;
    writeln!(out, "{name}_count{{group=\"{group}\"}} {}", h.count)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_ends_with_inf_sum_and_count() {
        let mut out = String::new();
        let h = GroupHistogram {
            group: Some("no\"rd".into()),
            le: vec![1, 3],
            count: 4,
            sum_ms: 12_500,
        };
        histogram(&mut out, "x_seconds", &[60_000, 3_600_000], &h).unwrap();
        assert_eq!(
            out,
            "x_seconds_bucket{group=\"no\\\"rd\",le=\"60\"} 1\n\
             x_seconds_bucket{group=\"no\\\"rd\",le=\"3600\"} 3\n\
             x_seconds_bucket{group=\"no\\\"rd\",le=\"+Inf\"} 4\n\
             x_seconds_sum{group=\"no\\\"rd\"} 12.5\n\
             x_seconds_count{group=\"no\\\"rd\"} 4\n"
        );
    }
}
