//! What a digest says, before any wording: the network's figures against the previous period,
//! branches ranked, the ones that never answered, the biggest changes, missed targets.
//!
//! Invariant: a pure function of the two periods' aggregates and the configuration, so the
//! same store always gives the same digest (and tests can check it figure by figure).

use crate::config::{Group, Language};
use crate::store::{ratio, Aggregate, Figures, Period};
use chrono_tz::Tz;
use std::cmp::Ordering;

/// A branch must reach its target on this share of its visits (see `misses_reply_target`).
pub const TARGET_SHARE: f64 = 0.9;
/// How many regressions and improvements a digest lists.
pub const TOP_CHANGES: usize = 3;
/// The time-to-reply histogram's bucket edges (ms): < 1 h, 1–4 h, 4–24 h, 1–2 days, > 2 days.
pub const HISTOGRAM_EDGES: [i64; 4] = [3_600_000, 4 * 3_600_000, 24 * 3_600_000, 48 * 3_600_000];

#[derive(Debug, Clone)]
pub struct Digest {
    pub group_id: String,
    pub group_name: String,
    pub language: Language,
    pub timezone: Tz,
    pub period: Period,
    pub network: Figures,
    pub previous: Figures,
    /// Branches with at least one visit in the period, best first.
    pub rows: Vec<BranchRow>,
    /// Names of the group's branches with no visit in the period.
    pub not_visited: Vec<String>,
    pub regressions: Vec<Change>,
    pub improvements: Vec<Change>,
    /// Reply target (ms, business hours?) and answer target (ms) of the group.
    pub reply_within: Option<(i64, bool)>,
    pub answer_within_ms: Option<i64>,
    /// Counts per `HISTOGRAM_EDGES` bucket, then the never-replied count.
    pub histogram: Vec<i64>,
    /// Each branch's dashboard page by its id, when `[http] public_url` is set: branch names
    /// link to it (HTML) and the text lists it.
    pub branch_pages: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct BranchRow {
    pub id: String,
    pub name: String,
    /// 1-based; equal figures share a rank (1, 2, 2, 4).
    pub rank: usize,
    pub figures: Figures,
    pub previous: Option<Figures>,
    pub misses_reply_target: bool,
    pub misses_answer_target: bool,
}

impl BranchRow {
    /// Reachable visits (email, call, submitted form) with no human reply and no answer at all.
    pub fn never_answered(&self) -> bool {
        let f = &self.figures;
        f.email.reachable + f.call.reachable + f.form.submitted > 0
            && f.email.replied + f.call.answered + f.form.replied == 0
    }
}

/// A branch whose figures moved between the two periods.
#[derive(Debug, Clone)]
pub struct Change {
    pub name: String,
    pub rate_before: Option<f64>,
    pub rate_now: Option<f64>,
    pub median_before: Option<f64>,
    pub median_now: Option<f64>,
}

impl Change {
    pub fn rate_delta(&self) -> Option<f64> {
        Some(self.rate_now? - self.rate_before?)
    }
    pub fn median_delta(&self) -> Option<f64> {
        Some(self.median_now? - self.median_before?)
    }
}

/// Replies and answers over reachable emails, calls and submitted forms: one rate for mixed
/// channels.
pub fn response_rate(f: &Figures) -> Option<f64> {
    ratio(
        f.email.replied + f.call.answered + f.form.replied,
        f.email.reachable + f.call.reachable + f.form.submitted,
    )
}

/// The time that ranks a branch: median time to reply in business hours (plain time when the
/// branch has no hours), else the median time to answer a call.
pub fn ranking_time(f: &Figures) -> Option<f64> {
    f.email
        .time_to_reply_business
        .median
        .or(f.email.time_to_reply.median)
        .or(f.form.time_to_reply.median)
        .or(f.call.answer.median)
}

fn rank_key_cmp(a: &Figures, b: &Figures) -> Ordering {
    let rate = |f: &Figures| response_rate(f);
    // Higher rate first, a branch with no rate last; then shorter time, none last.
    let by_rate = match (rate(a), rate(b)) {
        (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    let time = |f: &Figures| ranking_time(f);
    let by_time = match (time(a), time(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_rate.then(by_time)
}

/// A branch misses the reply target when fewer than `TARGET_SHARE` of its reachable enquiries
/// got a human reply within it (an unanswered enquiry never meets it).
pub fn misses_target(within: i64, reachable: i64) -> bool {
    reachable > 0 && (within as f64) < TARGET_SHARE * reachable as f64 - 1e-9
}

pub struct Inputs<'a> {
    pub group: &'a Group,
    /// (id, display name) of the group's branches, config order.
    pub branches: Vec<(String, String)>,
    pub language: Language,
    pub timezone: Tz,
    pub period: Period,
    pub current: Aggregate,
    pub previous: Aggregate,
    pub histogram: Vec<i64>,
}

pub fn build(i: Inputs<'_>) -> Digest {
    let targets = &i.group.targets;
    let reply_within = targets
        .reply_within
        .map(|(d, business)| (d.as_millis() as i64, business));
    let answer_within_ms = targets.answer_within.map(|d| d.as_millis() as i64);
    let name_of = |id: &str| {
        i.branches
            .iter()
            .find(|(b, _)| b == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let mut rows: Vec<BranchRow> = i
        .current
        .businesses
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(id, f)| BranchRow {
            id: id.clone(),
            name: name_of(id),
            rank: 0,
            figures: f.clone(),
            previous: i.previous.businesses.get(id).cloned(),
            misses_reply_target: reply_within.is_some()
                && misses_target(f.email.within_target, f.email.reachable),
            misses_answer_target: answer_within_ms.is_some()
                && misses_target(f.call.within_target, f.call.reachable),
        })
        .collect();
    rows.sort_by(|a, b| rank_key_cmp(&a.figures, &b.figures).then(a.name.cmp(&b.name)));
    for k in 0..rows.len() {
        rows[k].rank = if k > 0 && rank_key_cmp(&rows[k - 1].figures, &rows[k].figures).is_eq() {
            rows[k - 1].rank
        } else {
            k + 1
        };
    }
    let not_visited = i
        .branches
        .iter()
        .filter(|(id, _)| !rows.iter().any(|r| &r.id == id))
        .map(|(_, n)| n.clone())
        .collect();
    let changes: Vec<Change> = rows
        .iter()
        .filter_map(|r| {
            let p = r.previous.as_ref()?;
            Some(Change {
                name: r.name.clone(),
                rate_before: response_rate(p),
                rate_now: response_rate(&r.figures),
                median_before: ranking_time(p),
                median_now: ranking_time(&r.figures),
            })
        })
        .filter(|c| c.rate_delta().is_some() || c.median_delta().is_some())
        .collect();
    let (regressions, improvements) = split_changes(changes);
    Digest {
        group_id: i.group.id.clone(),
        group_name: i.group.name.clone(),
        language: i.language,
        timezone: i.timezone,
        period: i.period,
        network: i.current.network,
        previous: i.previous.network,
        rows,
        not_visited,
        regressions,
        improvements,
        reply_within,
        answer_within_ms,
        histogram: i.histogram,
        branch_pages: Default::default(),
    }
}

/// Worse first: a lower response rate, then a longer time; each list sorted by how much.
fn split_changes(changes: Vec<Change>) -> (Vec<Change>, Vec<Change>) {
    // A change's direction: rate first (in points), then time (relative), 0 when unchanged.
    let score = |c: &Change| -> (f64, f64) {
        let rate = c.rate_delta().unwrap_or(0.0);
        let time = match (c.median_before, c.median_now) {
            (Some(b), Some(n)) if b > 0.0 => (b - n) / b,
            _ => 0.0,
        };
        (rate, time)
    };
    let cmp = |a: &(f64, f64), b: &(f64, f64)| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(Ordering::Equal)
            .then(a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal))
    };
    let mut worse: Vec<(Change, (f64, f64))> = Vec::new();
    let mut better: Vec<(Change, (f64, f64))> = Vec::new();
    for c in changes {
        let s = score(&c);
        let direction = if s.0.abs() > 1e-9 { s.0 } else { s.1 };
        if direction < -1e-9 {
            worse.push((c, s));
        } else if direction > 1e-9 {
            better.push((c, s));
        }
    }
    worse.sort_by(|a, b| cmp(&a.1, &b.1).then(a.0.name.cmp(&b.0.name)));
    better.sort_by(|a, b| cmp(&b.1, &a.1).then(a.0.name.cmp(&b.0.name)));
    (
        worse.into_iter().take(TOP_CHANGES).map(|x| x.0).collect(),
        better.into_iter().take(TOP_CHANGES).map(|x| x.0).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_meets_its_target_only_on_nine_visits_in_ten() {
        assert!(!misses_target(9, 10));
        assert!(misses_target(8, 10));
        assert!(misses_target(0, 1));
        assert!(!misses_target(1, 1));
        assert!(!misses_target(0, 0));
    }
}
