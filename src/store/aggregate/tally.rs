//! Visits summed per business as one scan of the store meets them: counts, score sums and the
//! measured values whose quantiles end the scan.
//!
//! Invariant: a visit counts exactly as the SQL aggregates this replaced counted it
//! (`CASE WHEN … THEN 1 ELSE 0`, `COUNT(col)`, `SUM(col)`): a comparison with an absent value is
//! false and an absent value is not counted; the order the visits come in changes nothing but
//! the last bits of score sums.

use super::{
    percentile_from_ranks, Aggregate, AggregateQuery, CallFigures, EmailFigures, Figures,
    FormFigures, Quantiles, Tenths,
};
use std::collections::{BTreeMap, HashMap};

/// Computes a percentile's two ranks by selection (`select_nth_unstable`, linear time) instead
/// of sorting, and interpolates between them exactly as `percentile_from_ranks` always has.
pub(super) fn quantiles_of(values: &mut [i64]) -> Quantiles {
    let n = values.len() as i64;
    if n == 0 {
        return Quantiles::default();
    }
    let mut at = BTreeMap::new();
    for t in [Tenths(5), Tenths(9)] {
        let (lo, hi) = t.ranks(n);
        for r in [lo, hi] {
            at.entry(r)
                .or_insert_with(|| *values.select_nth_unstable(r as usize).1);
        }
    }
    Quantiles {
        n,
        median: percentile_from_ranks(n, Tenths(5), &at),
        p90: percentile_from_ranks(n, Tenths(9), &at),
    }
}

/// One visit as the figures read it (a row of the scan).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Seen<'a> {
    pub channel: &'a str,
    pub outcome: Option<&'a str>,
    pub time_to_reply_ms: Option<i64>,
    pub time_to_reply_business_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub pdd_ms: Option<i64>,
    pub greeting_ms: Option<i64>,
    pub score: Option<f64>,
    /// `first_ack_at` is set.
    pub acknowledged: bool,
    pub greeted: Option<i64>,
}

/// The service targets a visit is counted against; -1 when there is none (no stored delay is
/// negative, so nothing is within it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Targets {
    reply_ms: i64,
    reply_business: bool,
    answer_ms: i64,
}

impl Targets {
    /// No target: what counts without measured values are added with.
    pub(super) const NONE: Targets = Targets {
        reply_ms: -1,
        reply_business: false,
        answer_ms: -1,
    };

    pub(super) fn of(q: &AggregateQuery) -> Targets {
        let (reply_ms, reply_business) = q.reply_within.unwrap_or((-1, false));
        Targets {
            reply_ms,
            reply_business,
            answer_ms: q.answer_within_ms.unwrap_or(-1),
        }
    }
}

/// The measured values of one business (or of the whole selection) until their quantiles are
/// computed.
#[derive(Debug, Default)]
struct Values {
    time_to_reply: Vec<i64>,
    time_to_reply_business: Vec<i64>,
    answer: Vec<i64>,
    pdd: Vec<i64>,
    greeting: Vec<i64>,
    form_time_to_reply: Vec<i64>,
}

impl Values {
    fn all(&mut self) -> [&mut Vec<i64>; 6] {
        [
            &mut self.time_to_reply,
            &mut self.time_to_reply_business,
            &mut self.answer,
            &mut self.pdd,
            &mut self.greeting,
            &mut self.form_time_to_reply,
        ]
    }

    /// Sets each measurement's quantiles in `f`.
    fn quantiles_into(&mut self, f: &mut Figures) {
        f.email.time_to_reply = quantiles_of(&mut self.time_to_reply);
        f.email.time_to_reply_business = quantiles_of(&mut self.time_to_reply_business);
        f.call.answer = quantiles_of(&mut self.answer);
        f.call.pdd = quantiles_of(&mut self.pdd);
        f.call.greeting = quantiles_of(&mut self.greeting);
        f.form.time_to_reply = quantiles_of(&mut self.form_time_to_reply);
    }
}

/// One business's counts and values, summed visit by visit.
#[derive(Debug, Default)]
struct Tally {
    figures: Figures,
    values: Values,
}

fn one(b: bool) -> i64 {
    i64::from(b)
}

impl Tally {
    fn add(&mut self, v: &Seen<'_>, t: Targets) {
        count(&mut self.figures, v, t, 1);
        match v.channel {
            "email" => {
                self.values.time_to_reply.extend(v.time_to_reply_ms);
                self.values
                    .time_to_reply_business
                    .extend(v.time_to_reply_business_ms);
            }
            "call" => {
                self.values.answer.extend(v.answer_ms);
                self.values.pdd.extend(v.pdd_ms);
                self.values.greeting.extend(v.greeting_ms);
            }
            "form" => self.values.form_time_to_reply.extend(v.time_to_reply_ms),
            _ => {}
        }
    }
}

/// Counts `n` visits like `v` into the figures, exactly as the SQL aggregates did (`CASE …
/// THEN 1 ELSE 0`, `COUNT(col)`, `SUM(col)`): a comparison with an absent value is false, an
/// absent value is not counted. The quantiles' values are the caller's.
pub(super) fn count(f: &mut Figures, v: &Seen<'_>, t: Targets, n: i64) {
    let one = |b: bool| one(b) * n;
    let o = v.outcome.unwrap_or_default();
    let pending = one(v.outcome.is_none());
    let (score_sum, scored) = v.score.map_or((0.0, 0), |s| (s * n as f64, n));
    match v.channel {
        "email" => {
            let e = &mut f.email;
            let reachable = matches!(o, "replied" | "acknowledged_only" | "no_reply" | "bounced");
            let replied = o == "replied";
            let ttr = if t.reply_business {
                v.time_to_reply_business_ms.or(v.time_to_reply_ms)
            } else {
                v.time_to_reply_ms
            };
            e.visits += n;
            e.pending += pending;
            e.reachable += one(reachable);
            e.replied += one(replied);
            e.acknowledged += one(reachable && v.acknowledged);
            e.bounced += one(o == "bounced");
            e.no_reply += one(o == "no_reply");
            e.send_failed += one(o == "send_failed");
            e.within_target += one(replied && ttr.is_some_and(|x| x <= t.reply_ms));
            e.score_sum += score_sum;
            e.scored += scored;
        }
        "call" => {
            let c = &mut f.call;
            let answered = o == "answered";
            c.calls += n;
            c.pending += pending;
            c.reachable += one(matches!(
                o,
                "answered" | "busy" | "no_answer" | "rejected" | "unreachable"
            ));
            c.answered += one(answered);
            c.busy += one(o == "busy");
            c.no_answer += one(o == "no_answer");
            c.rejected += one(o == "rejected");
            c.unreachable += one(o == "unreachable");
            c.failed += one(o == "failed");
            c.within_target += one(answered && v.answer_ms.is_some_and(|x| x <= t.answer_ms));
            c.score_sum += score_sum;
            c.scored += scored;
            c.greeting_checked += one(v.greeted.is_some());
            c.greeted += one(v.greeted == Some(1));
        }
        "form" => {
            let f = &mut f.form;
            let submitted = matches!(o, "replied" | "acknowledged_only" | "no_reply");
            f.visits += n;
            f.pending += pending;
            f.submitted += one(submitted);
            f.replied += one(o == "replied");
            f.acknowledged += one(submitted && v.acknowledged);
            f.no_reply += one(o == "no_reply");
            f.form_failed += one(o == "form_failed");
            f.blocked += one(o == "form_blocked");
            f.unreachable += one(o == "unreachable");
            f.failed += one(o == "failed");
            f.score_sum += score_sum;
            f.scored += scored;
        }
        _ => {}
    }
}

/// Visits summed per business, in the order the scan meets them.
#[derive(Debug)]
pub(super) struct Tallies {
    /// Position in `tallies` by business id: one hash lookup per visit, no allocation.
    index: HashMap<String, usize>,
    tallies: Vec<(String, Tally)>,
    targets: Targets,
}

impl Tallies {
    pub(super) fn new(targets: Targets) -> Tallies {
        Tallies {
            index: HashMap::new(),
            tallies: Vec::new(),
            targets,
        }
    }

    pub(super) fn add(&mut self, business: &str, v: &Seen<'_>) {
        if !matches!(v.channel, "email" | "call" | "form") {
            return;
        }
        let i = match self.index.get(business) {
            Some(&i) => i,
            None => {
                self.index.insert(business.to_owned(), self.tallies.len());
                self.tallies.push((business.to_owned(), Tally::default()));
                self.tallies.len() - 1
            }
        };
        self.tallies[i].1.add(v, self.targets);
    }

    /// The figures per business and for the whole selection. The network's counts are the
    /// businesses' summed in id order, its quantiles those of every value of the selection.
    pub(super) fn finish(self) -> Aggregate {
        let mut tallies = self.tallies;
        tallies.sort_by(|a, b| a.0.cmp(&b.0));
        let mut agg = Aggregate::default();
        let mut all = Values::default();
        for (id, mut t) in tallies {
            let n = &mut agg.network;
            n.email.add_counts(&t.figures.email);
            n.call.add_counts(&t.figures.call);
            n.form.add_counts(&t.figures.form);
            t.values.quantiles_into(&mut t.figures);
            for (to, from) in all.all().into_iter().zip(t.values.all()) {
                to.append(from);
            }
            agg.businesses.insert(id, t.figures);
        }
        all.quantiles_into(&mut agg.network);
        agg
    }
}

/// The measured figures of several selections (groups, each with its own targets) from their
/// measured visits: what `sums` adds to the counts the store keeps.
pub(super) struct Measures {
    groups: Vec<(String, Targets, Tally)>,
}

impl Measures {
    pub(super) fn new(groups: Vec<(String, Targets)>) -> Measures {
        Measures {
            groups: groups
                .into_iter()
                .map(|(g, t)| (g, t, Tally::default()))
                .collect(),
        }
    }

    /// Adds a visit of `group` (one not asked for is left out).
    pub(super) fn add(&mut self, group: &str, v: &Seen<'_>) {
        if let Some((_, t, tally)) = self.groups.iter_mut().find(|g| g.0 == group) {
            tally.add(v, *t);
        }
    }

    /// Per selection, in the order given: only the figures measured visits decide (targets
    /// met, quantiles, scores, greetings); the counts are left at zero.
    pub(super) fn finish(self) -> Vec<Figures> {
        self.groups
            .into_iter()
            .map(|(_, _, mut t)| {
                t.values.quantiles_into(&mut t.figures);
                let (e, c, f) = (&t.figures.email, &t.figures.call, &t.figures.form);
                Figures {
                    email: EmailFigures {
                        within_target: e.within_target,
                        time_to_reply: e.time_to_reply,
                        time_to_reply_business: e.time_to_reply_business,
                        score_sum: e.score_sum,
                        scored: e.scored,
                        ..Default::default()
                    },
                    call: CallFigures {
                        within_target: c.within_target,
                        answer: c.answer,
                        score_sum: c.score_sum,
                        scored: c.scored,
                        greeting_checked: c.greeting_checked,
                        greeted: c.greeted,
                        ..Default::default()
                    },
                    form: FormFigures {
                        time_to_reply: f.time_to_reply,
                        score_sum: f.score_sum,
                        scored: f.scored,
                        ..Default::default()
                    },
                    missed_rules: Vec::new(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::percentile;
    use super::*;

    #[test]
    fn quantiles_by_selection_equal_the_sorted_reference() {
        for n in 1..300i64 {
            // Unsorted, with repeats.
            let mut values: Vec<i64> = (0..n).map(|i| (i * 7_919) % 97 * 1_000 + i % 3).collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let q = quantiles_of(&mut values);
            assert_eq!(q.n, n);
            let close = |x: Option<f64>, p: f64| {
                (x.unwrap() - percentile(&sorted, p).unwrap()).abs() < 1e-6
            };
            assert!(close(q.median, 0.5) && close(q.p90, 0.9), "n={n}: {q:?}");
        }
        assert_eq!(quantiles_of(&mut []), Quantiles::default());
    }

    fn seen<'a>(channel: &'a str, outcome: Option<&'a str>) -> Seen<'a> {
        Seen {
            channel,
            outcome,
            ..Seen::default()
        }
    }

    #[test]
    fn a_visit_counts_as_the_sql_aggregates_counted_it() {
        let targets = Targets {
            reply_ms: 3_600_000,
            reply_business: true,
            answer_ms: 5_000,
        };
        let mut all = Tallies::new(targets);
        let email = |outcome, ttr: Option<i64>, business: Option<i64>, ack| Seen {
            time_to_reply_ms: ttr,
            time_to_reply_business_ms: business,
            acknowledged: ack,
            score: ttr.map(|_| 50.0),
            ..seen("email", Some(outcome))
        };
        // Within the business-hours target: by its business time when it has one, else by
        // its plain time.
        all.add(
            "lille",
            &email("replied", Some(7_200_000), Some(1_800_000), true),
        );
        all.add("lille", &email("replied", Some(3_000_000), None, false));
        all.add(
            "lille",
            &email("replied", Some(9_000_000), Some(5_000_000), false),
        );
        all.add("lille", &email("acknowledged_only", None, None, true));
        // An acknowledgement of a failed send is not counted; pending counts as a visit only.
        all.add("lille", &email("send_failed", None, None, true));
        all.add("lille", &seen("email", None));
        let call = |outcome, answer: Option<i64>, greeted| Seen {
            answer_ms: answer,
            pdd_ms: answer.map(|_| 900),
            greeting_ms: answer.map(|_| 1_200),
            greeted,
            ..seen("call", Some(outcome))
        };
        all.add("tel", &call("answered", Some(4_000), Some(1)));
        all.add("tel", &call("answered", Some(6_000), Some(0)));
        all.add("tel", &call("busy", None, None));
        all.add("tel", &call("failed", None, None));
        all.add("tel", &seen("sms", Some("answered")));
        let form = |outcome, ttr: Option<i64>, ack| Seen {
            time_to_reply_ms: ttr,
            acknowledged: ack,
            ..seen("form", Some(outcome))
        };
        all.add("web", &form("replied", Some(600_000), true));
        all.add("web", &form("no_reply", None, true));
        all.add("web", &form("form_blocked", None, false));
        all.add("web", &form("form_failed", None, true));
        all.add("web", &form("unreachable", None, false));
        all.add("web", &form("failed", None, false));
        let a = all.finish();

        let e = &a.businesses["lille"].email;
        assert_eq!((e.visits, e.pending, e.reachable, e.replied), (6, 1, 4, 3));
        assert_eq!((e.acknowledged, e.send_failed, e.within_target), (2, 1, 2));
        assert_eq!((e.scored, e.score_sum), (3, 150.0));
        assert_eq!(e.time_to_reply.median, Some(7_200_000.0));
        assert_eq!(e.time_to_reply_business.n, 2);
        let c = &a.businesses["tel"].call;
        assert_eq!(
            (c.calls, c.reachable, c.answered, c.busy, c.failed),
            (4, 3, 2, 1, 1)
        );
        assert_eq!((c.within_target, c.greeting_checked, c.greeted), (1, 2, 1));
        assert_eq!(
            (c.answer.median, c.pdd.n, c.greeting.n),
            (Some(5_000.0), 2, 2)
        );
        let f = &a.businesses["web"].form;
        assert_eq!(
            (f.visits, f.submitted, f.replied, f.acknowledged),
            (6, 2, 1, 2)
        );
        assert_eq!(
            (
                f.no_reply,
                f.blocked,
                f.form_failed,
                f.unreachable,
                f.failed
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(f.time_to_reply.median, Some(600_000.0));
        // Unknown channels are not counted, and make no business.
        assert_eq!(a.businesses.len(), 3);
        assert_eq!(a.businesses["web"].email, Default::default());
    }

    #[test]
    fn without_targets_no_visit_is_within_them() {
        let q = AggregateQuery {
            group: None,
            business: None,
            period: super::super::Period {
                start_ms: 0,
                end_ms: 1,
            },
            reply_within: None,
            answer_within_ms: None,
        };
        let mut all = Tallies::new(Targets::of(&q));
        all.add(
            "b",
            &Seen {
                time_to_reply_ms: Some(0),
                ..seen("email", Some("replied"))
            },
        );
        all.add(
            "b",
            &Seen {
                answer_ms: Some(0),
                ..seen("call", Some("answered"))
            },
        );
        let a = all.finish();
        assert_eq!(a.network.email.within_target, 0);
        assert_eq!(a.network.call.within_target, 0);
    }

    #[test]
    fn the_network_sums_its_businesses_and_ranks_all_their_values_together() {
        let mut all = Tallies::new(Targets {
            reply_ms: -1,
            reply_business: false,
            answer_ms: -1,
        });
        let reply = |ms| Seen {
            time_to_reply_ms: Some(ms),
            ..seen("email", Some("replied"))
        };
        for ms in [10, 20, 30] {
            all.add("b", &reply(ms));
        }
        for ms in [1, 1000] {
            all.add("a", &reply(ms));
        }
        let a = all.finish();
        assert_eq!(a.businesses.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(a.businesses["a"].email.time_to_reply.median, Some(500.5));
        assert_eq!(a.businesses["b"].email.time_to_reply.median, Some(20.0));
        let n = &a.network.email;
        assert_eq!((n.visits, n.replied), (5, 5));
        // 1, 10, 20, 30, 1000: median 20; p90 at h = 3.6 → 30 + 0.6 × 970 = 612.
        assert_eq!(n.time_to_reply.median, Some(20.0));
        assert!((n.time_to_reply.p90.unwrap() - 612.0).abs() < 1e-9);
    }
}
