//! The digest's words: a plain-text version and an HTML version of the same content, in the
//! group's language (every sentence exists in French and English, side by side below).
//!
//! Invariant: both versions show the same figures, formatted by `locale`; the HTML needs no
//! remote resource (inline styles, the chart by `cid:` or a `data:` URI for previews).

use super::locale as l;
use super::model::{response_rate, BranchRow, Change, Digest, HISTOGRAM_EDGES};
use crate::config::Language;
use crate::store::Figures;
use chrono::Utc;

fn tr(lang: Language, fr: &'static str, en: &'static str) -> &'static str {
    match lang {
        Language::Fr => fr,
        Language::En => en,
    }
}

fn at(ms: i64) -> chrono::DateTime<Utc> {
    crate::clock::from_ms(ms)
}

pub fn subject(d: &Digest) -> String {
    let p = l::period(
        d.language,
        d.timezone,
        at(d.period.start_ms),
        at(d.period.end_ms),
    );
    match d.language {
        Language::Fr => format!("{} — synthèse {p}", d.group_name),
        Language::En => format!("{} — digest {p}", d.group_name),
    }
}

/// The whole period had no visit at all.
pub fn is_empty(d: &Digest) -> bool {
    d.network.is_empty()
}

fn median_time(f: &Figures) -> Option<f64> {
    f.email
        .time_to_reply_business
        .median
        .or(f.email.time_to_reply.median)
}

fn dur(lang: Language, ms: Option<f64>) -> String {
    ms.map(|m| l::duration(lang, m))
        .unwrap_or_else(|| "–".into())
}

fn pct(lang: Language, share: Option<f64>) -> String {
    share
        .map(|s| l::percent(lang, s))
        .unwrap_or_else(|| "–".into())
}

/// "(−5 pts)" style change of a share; empty when either side is missing.
fn rate_change(lang: Language, now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(n), Some(b)) => l::points(lang, n - b),
        _ => String::new(),
    }
}

fn time_change(lang: Language, now: Option<f64>, before: Option<f64>) -> String {
    match (now, before) {
        (Some(n), Some(b)) => l::duration_delta(lang, n - b),
        _ => String::new(),
    }
}

/// The headline and the network figures, one sentence per line.
pub fn summary_lines(d: &Digest) -> Vec<String> {
    let lang = d.language;
    let (n, p) = (&d.network, &d.previous);
    let mut out = Vec::new();
    let e = &n.email;
    if e.visits > 0 {
        let change = rate_change(lang, e.reply_rate(), p.email.reply_rate());
        let before = match p.email.reply_rate() {
            Some(b) => match lang {
                Language::Fr => format!(
                    " ({change} ; {} la période précédente)",
                    l::percent(lang, b)
                ),
                Language::En => format!(" ({change}; {} the period before)", l::percent(lang, b)),
            },
            None => String::new(),
        };
        out.push(match lang {
            Language::Fr => format!(
                "E-mails : {} des demandes ont reçu une réponse ({} sur {}){before}.",
                pct(lang, e.reply_rate()),
                l::integer(lang, e.replied),
                l::integer(lang, e.reachable)
            ),
            Language::En => format!(
                "Emails: {} of enquiries were answered ({} of {}){before}.",
                pct(lang, e.reply_rate()),
                l::integer(lang, e.replied),
                l::integer(lang, e.reachable)
            ),
        });
        let q = &e.time_to_reply_business;
        if q.n > 0 {
            let c = time_change(lang, q.median, p.email.time_to_reply_business.median);
            let c = if c.is_empty() { c } else { format!(" ({c})") };
            out.push(match lang {
                Language::Fr => format!(
                    "Délai de réponse en heures ouvrées : médiane {}{c}, 90e centile {}.",
                    dur(lang, q.median),
                    dur(lang, q.p90)
                ),
                Language::En => format!(
                    "Time to reply in business hours: median {}{c}, 90th percentile {}.",
                    dur(lang, q.median),
                    dur(lang, q.p90)
                ),
            });
        }
        let q = &e.time_to_reply;
        if q.n > 0 {
            let c = time_change(lang, q.median, p.email.time_to_reply.median);
            let c = if c.is_empty() { c } else { format!(" ({c})") };
            out.push(match lang {
                Language::Fr => format!(
                    "Délai de réponse calendaire : médiane {}{c}, 90e centile {}.",
                    dur(lang, q.median),
                    dur(lang, q.p90)
                ),
                Language::En => format!(
                    "Time to reply, calendar time: median {}{c}, 90th percentile {}.",
                    dur(lang, q.median),
                    dur(lang, q.p90)
                ),
            });
        }
        let score = match (e.mean_score(), p.email.mean_score()) {
            (Some(s), Some(b)) => format!(
                "{} / 100 ({}{})",
                l::decimal(lang, s, 0),
                if s - b >= 0.0 { "+" } else { "" },
                l::decimal(lang, s - b, 0)
            ),
            (Some(s), None) => format!("{} / 100", l::decimal(lang, s, 0)),
            _ => "–".into(),
        };
        out.push(match lang {
            Language::Fr => format!(
                "Accusés de réception automatiques : {} ; rebonds : {} ; note moyenne des réponses : {score}.",
                pct(lang, e.ack_rate()),
                l::integer(lang, e.bounced)
            ),
            Language::En => format!(
                "Automatic acknowledgements: {}; bounces: {}; mean score of replies: {score}.",
                pct(lang, e.ack_rate()),
                l::integer(lang, e.bounced)
            ),
        });
    }
    let c = &n.call;
    if c.calls > 0 {
        let change = rate_change(lang, c.answer_rate(), p.call.answer_rate());
        let change = if change.is_empty() {
            change
        } else {
            format!(" ({change})")
        };
        out.push(match lang {
            Language::Fr => format!(
                "Appels : {} décrochés ({} sur {}){change} ; occupé {}, sans réponse {}, injoignable {}, refusé {}.",
                pct(lang, c.answer_rate()),
                l::integer(lang, c.answered),
                l::integer(lang, c.reachable),
                l::integer(lang, c.busy),
                l::integer(lang, c.no_answer),
                l::integer(lang, c.unreachable),
                l::integer(lang, c.rejected)
            ),
            Language::En => format!(
                "Calls: {} answered ({} of {}){change}; busy {}, no answer {}, unreachable {}, rejected {}.",
                pct(lang, c.answer_rate()),
                l::integer(lang, c.answered),
                l::integer(lang, c.reachable),
                l::integer(lang, c.busy),
                l::integer(lang, c.no_answer),
                l::integer(lang, c.unreachable),
                l::integer(lang, c.rejected)
            ),
        });
        if c.answer.n > 0 {
            let ch = time_change(lang, c.answer.median, p.call.answer.median);
            let ch = if ch.is_empty() {
                ch
            } else {
                format!(" ({ch})")
            };
            out.push(match lang {
                Language::Fr => format!(
                    "Délai de décroché : médiane {}{ch}, 90e centile {} ; tonalité (PDD) médiane {} ; premier mot médian {}.",
                    dur(lang, c.answer.median),
                    dur(lang, c.answer.p90),
                    dur(lang, c.pdd.median),
                    dur(lang, c.greeting.median)
                ),
                Language::En => format!(
                    "Time to answer: median {}{ch}, 90th percentile {}; median post-dial delay {}; median greeting {}.",
                    dur(lang, c.answer.median),
                    dur(lang, c.answer.p90),
                    dur(lang, c.pdd.median),
                    dur(lang, c.greeting.median)
                ),
            });
        }
    }
    if c.scored > 0 {
        let score = l::decimal(lang, c.mean_score().unwrap_or(0.0), 0);
        out.push(match (lang, c.greeting_checked > 0) {
            (Language::Fr, true) => format!(
                "Au téléphone : accueil conforme dans {} des appels écoutés ({} sur {}) ; note moyenne des appels : {score} / 100.",
                pct(lang, c.greeting_rate()),
                l::integer(lang, c.greeted),
                l::integer(lang, c.greeting_checked)
            ),
            (Language::En, true) => format!(
                "On the phone: greeting as required in {} of the calls heard ({} of {}); mean call score: {score} / 100.",
                pct(lang, c.greeting_rate()),
                l::integer(lang, c.greeted),
                l::integer(lang, c.greeting_checked)
            ),
            (Language::Fr, false) => format!("Au téléphone : note moyenne des appels écoutés : {score} / 100."),
            (Language::En, false) => format!("On the phone: mean score of the calls heard: {score} / 100."),
        });
    }
    let f = &n.form;
    if f.visits > 0 {
        let change = rate_change(lang, f.reply_rate(), p.form.reply_rate());
        let change = if change.is_empty() {
            change
        } else {
            format!(" ({change})")
        };
        out.push(match lang {
            Language::Fr => format!(
                "Formulaires de contact : {} des formulaires envoyés ont reçu une réponse ({} sur {}){change}, délai médian {} ; refusés par le site {}, bloqués par un CAPTCHA {}, site injoignable {}.",
                pct(lang, f.reply_rate()),
                l::integer(lang, f.replied),
                l::integer(lang, f.submitted),
                dur(lang, f.time_to_reply.median),
                l::integer(lang, f.form_failed),
                l::integer(lang, f.blocked),
                l::integer(lang, f.unreachable)
            ),
            Language::En => format!(
                "Contact forms: {} of the forms sent were answered ({} of {}){change}, median time {}; refused by the site {}, blocked by a CAPTCHA {}, site unreachable {}.",
                pct(lang, f.reply_rate()),
                l::integer(lang, f.replied),
                l::integer(lang, f.submitted),
                dur(lang, f.time_to_reply.median),
                l::integer(lang, f.form_failed),
                l::integer(lang, f.blocked),
                l::integer(lang, f.unreachable)
            ),
        });
    }
    let pending = n.email.pending + n.call.pending + n.form.pending;
    if pending > 0 {
        out.push(match lang {
            Language::Fr => format!(
                "{} visite(s) attendent encore leur résultat et ne sont pas comptées.",
                l::integer(lang, pending)
            ),
            Language::En => format!(
                "{} visit(s) still await their outcome and are not counted.",
                l::integer(lang, pending)
            ),
        });
    }
    out
}

/// The one-sentence headline: the network's response this period against the last.
pub fn headline(d: &Digest) -> String {
    let lang = d.language;
    let now = response_rate(&d.network);
    let before = response_rate(&d.previous);
    let branches = match (lang, d.rows.len()) {
        (Language::Fr, 1) => "1 agence visitée".to_owned(),
        (Language::Fr, n) => format!("{n} agences visitées"),
        (Language::En, 1) => "1 branch visited".to_owned(),
        (Language::En, n) => format!("{n} branches visited"),
    };
    match (now, before) {
        (Some(n), Some(b)) => {
            let verb = if n > b + 0.005 {
                tr(lang, "mieux", "better")
            } else if n < b - 0.005 {
                tr(lang, "moins bien", "worse")
            } else {
                tr(lang, "aussi bien", "as well")
            };
            match lang {
                Language::Fr => format!(
                    "Le réseau a répondu {verb} que la période précédente : {} des demandes et appels ont eu une réponse, contre {} ({}).",
                    l::percent(lang, n),
                    l::percent(lang, b),
                    branches
                ),
                Language::En => format!(
                    "The network answered {verb} than the period before: {} of enquiries and calls got an answer, against {} ({}).",
                    l::percent(lang, n),
                    l::percent(lang, b),
                    branches
                ),
            }
        }
        (Some(n), None) => match lang {
            Language::Fr => format!(
                "{} des demandes et appels ont eu une réponse ({} ; pas de période précédente à comparer).",
                l::percent(lang, n),
                branches
            ),
            Language::En => format!(
                "{} of enquiries and calls got an answer ({}; no earlier period to compare).",
                l::percent(lang, n),
                branches
            ),
        },
        _ => tr(
            lang,
            "Aucune visite n'a encore de résultat pour cette période.",
            "No visit of this period has its outcome yet.",
        )
        .to_owned(),
    }
}

pub fn empty_sentence(d: &Digest) -> String {
    let p = l::period(
        d.language,
        d.timezone,
        at(d.period.start_ms),
        at(d.period.end_ms),
    );
    match d.language {
        Language::Fr => format!(
            "Aucune visite n'a eu lieu pour {} {p} : il n'y a rien à comparer cette fois.",
            d.group_name
        ),
        Language::En => format!(
            "No visit took place for {} {p}: there is nothing to compare this time.",
            d.group_name
        ),
    }
}

/// One branch's cells, shared by the text and HTML tables.
struct Cells {
    rank: String,
    name: String,
    flag: bool,
    emails: String,
    median: String,
    median_change: String,
    calls: String,
    answer: String,
    score: String,
}

fn cells(lang: Language, r: &BranchRow) -> Cells {
    let f = &r.figures;
    let ratio_cell = |num: i64, den: i64, share: Option<f64>| {
        if den == 0 {
            "–".to_owned()
        } else {
            format!("{num}/{den} {}", pct(lang, share))
        }
    };
    let median_change = match (&r.previous, median_time(f)) {
        (Some(p), Some(now)) => median_time(p)
            .map(|b| l::duration_delta(lang, now - b))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Cells {
        rank: r.rank.to_string(),
        name: r.name.clone(),
        flag: r.misses_reply_target || r.misses_answer_target,
        emails: ratio_cell(f.email.replied, f.email.reachable, f.email.reply_rate()),
        median: dur(lang, median_time(f)),
        median_change,
        calls: ratio_cell(f.call.answered, f.call.reachable, f.call.answer_rate()),
        answer: dur(lang, f.call.answer.median),
        score: f
            .email
            .mean_score()
            .map(|s| l::decimal(lang, s, 0))
            .unwrap_or_else(|| "–".into()),
    }
}

/// Wraps prose at `TEXT_WIDTH` columns; continuation lines are indented by `indent` spaces.
fn wrap(s: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in s.split(' ') {
        let n = word.chars().count();
        if col > indent && col + 1 + n > TEXT_WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += n;
    }
    out.push('\n');
    out
}

const TEXT_WIDTH: usize = 78;

fn pad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        format!("{s}{}", " ".repeat(w - n))
    }
}

fn lpad(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n >= w {
        s.to_owned()
    } else {
        format!("{}{s}", " ".repeat(w - n))
    }
}

fn change_line(lang: Language, c: &Change) -> String {
    let mut parts = Vec::new();
    if let (Some(b), Some(n)) = (c.rate_before, c.rate_now) {
        parts.push(format!(
            "{} {} → {} ({})",
            tr(lang, "réponses", "answers"),
            l::percent(lang, b),
            l::percent(lang, n),
            l::points(lang, n - b)
        ));
    }
    if let (Some(b), Some(n)) = (c.median_before, c.median_now) {
        parts.push(format!(
            "{} {} → {} ({})",
            tr(lang, "délai médian", "median time"),
            l::duration(lang, b),
            l::duration(lang, n),
            l::duration_delta(lang, n - b)
        ));
    }
    let sep = tr(lang, " ; ", "; ");
    format!("{}{} {}", c.name, tr(lang, " :", ":"), parts.join(sep))
}

/// Says what the table's median is, under the table.
fn median_note(lang: Language) -> &'static str {
    tr(
        lang,
        "Délai médian : de la demande à la première réponse humaine, compté dans les heures d'ouverture de l'agence (en temps calendaire si elle n'a pas d'horaires) ; décroché : délai médian avant qu'on décroche.",
        "Median time: from the enquiry to the first human reply, counted in the branch's opening hours (calendar time when it has none); answer: median time before the call was picked up.",
    )
}

fn target_line(d: &Digest) -> Option<String> {
    let lang = d.language;
    let mut t = Vec::new();
    if let Some((ms, business)) = d.reply_within {
        let b = if business {
            tr(lang, " ouvrées", " business time")
        } else {
            ""
        };
        t.push(format!(
            "{} {}{b}",
            tr(lang, "réponse sous", "reply within"),
            l::duration(lang, ms as f64)
        ));
    }
    if let Some(ms) = d.answer_within_ms {
        t.push(format!(
            "{} {}",
            tr(lang, "décroché sous", "answer within"),
            l::duration(lang, ms as f64)
        ));
    }
    if t.is_empty() {
        return None;
    }
    Some(match lang {
        Language::Fr => format!(
            "⚠ = objectif de service manqué ({}) sur plus d'une visite sur dix.",
            t.join(", ")
        ),
        Language::En => format!(
            "⚠ = service target missed ({}) on more than one visit in ten.",
            t.join(", ")
        ),
    })
}

fn missed_rules_lines(d: &Digest) -> Vec<String> {
    let lang = d.language;
    d.network
        .missed_rules
        .iter()
        .take(5)
        .map(|r| match lang {
            Language::Fr => format!(
                "{} : manquée {} fois sur {}",
                r.rule_id,
                l::integer(lang, r.missed),
                l::integer(lang, r.evaluated)
            ),
            Language::En => format!(
                "{}: missed {} times out of {}",
                r.rule_id,
                l::integer(lang, r.missed),
                l::integer(lang, r.evaluated)
            ),
        })
        .collect()
}

/// Per branch whose calls were heard: call score and greeting compliance.
fn phone_lines(d: &Digest) -> Vec<String> {
    let lang = d.language;
    d.rows
        .iter()
        .filter(|r| r.figures.call.scored > 0)
        .map(|r| {
            let c = &r.figures.call;
            let score = l::decimal(lang, c.mean_score().unwrap_or(0.0), 0);
            let greeting = (c.greeting_checked > 0).then(|| match lang {
                Language::Fr => format!(
                    " ; accueil conforme {} sur {}",
                    l::integer(lang, c.greeted),
                    l::integer(lang, c.greeting_checked)
                ),
                Language::En => format!(
                    "; greeting as required {} of {}",
                    l::integer(lang, c.greeted),
                    l::integer(lang, c.greeting_checked)
                ),
            });
            match lang {
                Language::Fr => format!(
                    "{} : note des appels {score} / 100{}",
                    r.name,
                    greeting.unwrap_or_default()
                ),
                Language::En => format!(
                    "{}: call score {score} / 100{}",
                    r.name,
                    greeting.unwrap_or_default()
                ),
            }
        })
        .collect()
}

fn never_answered(d: &Digest) -> Vec<&BranchRow> {
    d.rows.iter().filter(|r| r.never_answered()).collect()
}

fn never_line(lang: Language, r: &BranchRow) -> String {
    let f = &r.figures;
    let mut what = Vec::new();
    if f.email.reachable > 0 {
        what.push(match lang {
            Language::Fr => format!("{} demande(s) sans réponse", f.email.reachable),
            Language::En => format!("{} enquiry(ies) unanswered", f.email.reachable),
        });
    }
    if f.call.reachable > 0 {
        what.push(match lang {
            Language::Fr => format!("{} appel(s) sans décroché", f.call.reachable),
            Language::En => format!("{} call(s) not answered", f.call.reachable),
        });
    }
    format!("{} ({})", r.name, what.join(", "))
}

pub fn histogram_labels(lang: Language) -> Vec<String> {
    let e = HISTOGRAM_EDGES;
    let d = |ms: i64| l::duration(lang, ms as f64);
    vec![
        format!("< {}", d(e[0])),
        format!("{}–{}", d(e[0]), d(e[1])),
        format!("{}–{}", d(e[1]), d(e[2])),
        format!("{}–{}", d(e[2]), d(e[3])),
        format!("> {}", d(e[3])),
        tr(lang, "sans réponse", "no reply").to_owned(),
    ]
}

pub fn text(d: &Digest) -> String {
    let lang = d.language;
    let mut s = String::new();
    s.push_str(&subject(d));
    s.push_str("\n\n");
    if is_empty(d) {
        s.push_str(&wrap(&empty_sentence(d), 0));
        return s;
    }
    s.push_str(&wrap(&headline(d), 0));
    s.push('\n');
    for line in summary_lines(d) {
        s.push_str(&wrap(&format!("- {line}"), 2));
    }
    s.push_str(&format!(
        "\n{}\n\n",
        tr(lang, "Classement des agences", "Branches ranked")
    ));
    s.push_str(&format!(
        "{} {} {} {} {} {} {} {}\n",
        lpad("#", 3),
        pad(tr(lang, "Agence", "Branch"), 24),
        lpad(tr(lang, "E-mails", "Emails"), 10),
        lpad(tr(lang, "Délai méd.", "Median"), 11),
        lpad(tr(lang, "Évol.", "Change"), 9),
        lpad(tr(lang, "Appels", "Calls"), 10),
        lpad(tr(lang, "Décroché", "Answer"), 9),
        lpad(tr(lang, "Note", "Score"), 5),
    ));
    for r in &d.rows {
        let c = cells(lang, r);
        let name = if c.flag {
            format!("{} ⚠", c.name)
        } else {
            c.name.clone()
        };
        s.push_str(&format!(
            "{} {} {} {} {} {} {} {}\n",
            lpad(&c.rank, 3),
            pad(&name, 24),
            lpad(&c.emails, 10),
            lpad(&c.median, 11),
            lpad(&c.median_change, 9),
            lpad(&c.calls, 10),
            lpad(&c.answer, 9),
            lpad(&c.score, 5),
        ));
    }
    s.push('\n');
    s.push_str(&wrap(median_note(lang), 0));
    let pages: Vec<(&str, &String)> = d
        .rows
        .iter()
        .filter_map(|r| Some((r.name.as_str(), d.branch_pages.get(&r.id)?)))
        .collect();
    if !pages.is_empty() {
        s.push_str(&format!(
            "\n{}\n",
            tr(lang, "Page de chaque agence :", "Each branch's page:")
        ));
        let sep = tr(lang, " : ", ": ");
        for (name, url) in pages {
            s.push_str(&format!("  {name}{sep}{url}\n"));
        }
    }
    if let Some(t) = target_line(d) {
        s.push_str(&wrap(&t, 0));
    }
    let never = never_answered(d);
    if !never.is_empty() {
        s.push_str(&format!(
            "\n{}\n",
            tr(
                lang,
                "Aucune réponse de toute la période",
                "Never answered this period"
            )
        ));
        for r in never {
            s.push_str(&wrap(&format!("- {}", never_line(lang, r)), 2));
        }
    }
    let phone = phone_lines(d);
    if !phone.is_empty() {
        s.push_str(&format!(
            "\n{}\n",
            tr(lang, "Au téléphone, par agence", "On the phone, by branch")
        ));
        for line in phone {
            s.push_str(&wrap(&format!("- {line}"), 2));
        }
    }
    for (title, list) in [
        (
            tr(lang, "Plus fortes baisses", "Biggest regressions"),
            &d.regressions,
        ),
        (
            tr(lang, "Plus fortes progressions", "Biggest improvements"),
            &d.improvements,
        ),
    ] {
        if !list.is_empty() {
            s.push_str(&format!("\n{title}\n"));
            for c in list {
                s.push_str(&wrap(&format!("- {}", change_line(lang, c)), 2));
            }
        }
    }
    let rules = missed_rules_lines(d);
    if !rules.is_empty() {
        s.push_str(&format!(
            "\n{}\n",
            tr(
                lang,
                "Attentes les plus souvent manquées",
                "Expectations most often missed"
            )
        ));
        for r in rules {
            s.push_str(&format!("- {r}\n"));
        }
    }
    if !d.not_visited.is_empty() {
        s.push('\n');
        s.push_str(&wrap(
            &format!(
                "{} {}",
                tr(
                    lang,
                    "Agences sans visite cette période :",
                    "Branches not visited this period:"
                ),
                d.not_visited.join(", ")
            ),
            0,
        ));
    }
    if d.network.email.reachable > 0 {
        s.push_str(&format!(
            "\n{}\n",
            tr(
                lang,
                "Délai de réponse (nombre de demandes)",
                "Time to reply (number of enquiries)"
            )
        ));
        for (label, n) in histogram_labels(lang).iter().zip(&d.histogram) {
            s.push_str(&format!(
                "  {} {}\n",
                pad(label, 16),
                lpad(&l::integer(lang, *n), 6)
            ));
        }
    }
    s
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const GOOD: &str = "#1b7f3b";
const BAD: &str = "#b3261e";

fn colored_change(change: &str, lower_is_better: bool) -> String {
    if change.is_empty() || change.starts_with('±') {
        return esc(change);
    }
    let up = change.starts_with('+');
    let good = up != lower_is_better;
    format!(
        "<span style=\"color:{}\">{}</span>",
        if good { GOOD } else { BAD },
        esc(change)
    )
}

/// The HTML version; `chart_src` is `cid:…` in the mail, a `data:` URI in a preview, None
/// when there is no chart.
pub fn html(d: &Digest, chart_src: Option<&str>) -> String {
    let lang = d.language;
    let mut h = String::new();
    let lang_attr = tr(lang, "fr", "en");
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"{lang_attr}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title></head>\n\
         <body style=\"margin:0;padding:0;background:#f3f4f6;\">\n\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f3f4f6;\"><tr><td align=\"center\" style=\"padding:16px 8px;\">\n\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:760px;background:#ffffff;border-radius:8px;font-family:Helvetica,Arial,sans-serif;color:#1f2937;font-size:14px;line-height:1.45;\">\n\
         <tr><td style=\"padding:20px 24px 8px 24px;\">\
         <div style=\"font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.05em;\">{}</div>\
         <h1 style=\"font-size:20px;margin:4px 0 0 0;\">{}</h1>\
         <div style=\"color:#4b5563;\">{}</div></td></tr>\n",
        esc(&subject(d)),
        esc(tr(lang, "Synthèse client mystère", "Mystery-contact digest")),
        esc(&d.group_name),
        esc(&l::period(lang, d.timezone, at(d.period.start_ms), at(d.period.end_ms)))
    ));
    let section = |h: &mut String, title: &str| {
        h.push_str(&format!(
            "<tr><td style=\"padding:16px 24px 4px 24px;\"><h2 style=\"font-size:16px;margin:0;border-bottom:1px solid #e5e7eb;padding-bottom:4px;\">{}</h2></td></tr>\n",
            esc(title)
        ));
    };
    if is_empty(d) {
        h.push_str(&format!(
            "<tr><td style=\"padding:16px 24px 24px 24px;font-size:15px;\">{}</td></tr>\n",
            esc(&empty_sentence(d))
        ));
        h.push_str("</table></td></tr></table></body></html>\n");
        return h;
    }
    h.push_str(&format!(
        "<tr><td style=\"padding:12px 24px;\"><div style=\"background:#eef2ff;border-left:4px solid #4f46e5;padding:10px 12px;font-size:15px;\">{}</div></td></tr>\n",
        esc(&headline(d))
    ));
    h.push_str("<tr><td style=\"padding:0 24px;\"><ul style=\"margin:4px 0;padding-left:20px;\">");
    for line in summary_lines(d) {
        h.push_str(&format!("<li>{}</li>", esc(&line)));
    }
    h.push_str("</ul></td></tr>\n");
    section(
        &mut h,
        tr(lang, "Classement des agences", "Branches ranked"),
    );
    let th = |t: &str, align: &str| {
        format!(
            "<th style=\"text-align:{align};padding:6px 6px;font-size:12px;color:#6b7280;border-bottom:1px solid #e5e7eb;\">{}</th>",
            esc(t)
        )
    };
    h.push_str("<tr><td style=\"padding:4px 24px;\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse:collapse;font-size:13px;\"><tr>");
    h.push_str(&th("#", "right"));
    h.push_str(&th(tr(lang, "Agence", "Branch"), "left"));
    h.push_str(&th(tr(lang, "E-mails", "Emails"), "right"));
    h.push_str(&th(tr(lang, "Délai médian", "Median time"), "right"));
    h.push_str(&th(tr(lang, "Évol.", "Change"), "right"));
    h.push_str(&th(tr(lang, "Appels", "Calls"), "right"));
    h.push_str(&th(tr(lang, "Décroché", "Answer"), "right"));
    h.push_str(&th(tr(lang, "Note", "Score"), "right"));
    h.push_str("</tr>\n");
    for (i, r) in d.rows.iter().enumerate() {
        let c = cells(lang, r);
        let bg = if i % 2 == 1 { "#f9fafb" } else { "#ffffff" };
        let td = |v: &str, align: &str| {
            format!(
                "<td style=\"text-align:{align};padding:5px 6px;white-space:nowrap;border-bottom:1px solid #f3f4f6;\">{v}</td>"
            )
        };
        let flag = if c.flag {
            format!(
                " <span title=\"{}\" style=\"color:{BAD};\">⚠</span>",
                esc(tr(
                    lang,
                    "objectif de service manqué",
                    "service target missed"
                ))
            )
        } else {
            String::new()
        };
        let shown = match d.branch_pages.get(&r.id) {
            Some(url) => format!(
                "<a href=\"{}\" style=\"color:inherit;\">{}</a>",
                esc(url),
                esc(&c.name)
            ),
            None => esc(&c.name),
        };
        let name = if r.never_answered() {
            format!("<span style=\"color:{BAD};\">{shown}</span>{flag}")
        } else {
            format!("{shown}{flag}")
        };
        h.push_str(&format!("<tr style=\"background:{bg};\">"));
        h.push_str(&td(&esc(&c.rank), "right"));
        h.push_str(&td(&name, "left"));
        h.push_str(&td(&esc(&c.emails), "right"));
        h.push_str(&td(&esc(&c.median), "right"));
        h.push_str(&td(&colored_change(&c.median_change, true), "right"));
        h.push_str(&td(&esc(&c.calls), "right"));
        h.push_str(&td(&esc(&c.answer), "right"));
        h.push_str(&td(&esc(&c.score), "right"));
        h.push_str("</tr>\n");
    }
    h.push_str("</table></td></tr>\n");
    let mut notes = vec![median_note(lang).to_owned()];
    notes.extend(target_line(d));
    for t in notes {
        h.push_str(&format!(
            "<tr><td style=\"padding:2px 24px;font-size:12px;color:#6b7280;\">{}</td></tr>\n",
            esc(&t)
        ));
    }
    let phone = phone_lines(d);
    if !phone.is_empty() {
        section(
            &mut h,
            tr(lang, "Au téléphone, par agence", "On the phone, by branch"),
        );
        h.push_str(
            "<tr><td style=\"padding:0 24px;\"><ul style=\"margin:4px 0;padding-left:20px;\">",
        );
        for line in phone {
            h.push_str(&format!("<li>{}</li>", esc(&line)));
        }
        h.push_str("</ul></td></tr>\n");
    }
    let never = never_answered(d);
    if !never.is_empty() {
        section(
            &mut h,
            tr(
                lang,
                "Aucune réponse de toute la période",
                "Never answered this period",
            ),
        );
        h.push_str(
            "<tr><td style=\"padding:0 24px;\"><ul style=\"margin:4px 0;padding-left:20px;\">",
        );
        for r in never {
            h.push_str(&format!(
                "<li style=\"color:{BAD};\">{}</li>",
                esc(&never_line(lang, r))
            ));
        }
        h.push_str("</ul></td></tr>\n");
    }
    for (title, list) in [
        (
            tr(lang, "Plus fortes baisses", "Biggest regressions"),
            &d.regressions,
        ),
        (
            tr(lang, "Plus fortes progressions", "Biggest improvements"),
            &d.improvements,
        ),
    ] {
        if !list.is_empty() {
            section(&mut h, title);
            h.push_str(
                "<tr><td style=\"padding:0 24px;\"><ul style=\"margin:4px 0;padding-left:20px;\">",
            );
            for c in list {
                h.push_str(&format!("<li>{}</li>", esc(&change_line(lang, c))));
            }
            h.push_str("</ul></td></tr>\n");
        }
    }
    let rules = missed_rules_lines(d);
    if !rules.is_empty() {
        section(
            &mut h,
            tr(
                lang,
                "Attentes les plus souvent manquées",
                "Expectations most often missed",
            ),
        );
        h.push_str(
            "<tr><td style=\"padding:0 24px;\"><ul style=\"margin:4px 0;padding-left:20px;\">",
        );
        for r in rules {
            h.push_str(&format!("<li>{}</li>", esc(&r)));
        }
        h.push_str("</ul></td></tr>\n");
    }
    if let Some(src) = chart_src {
        section(
            &mut h,
            tr(
                lang,
                "Délai de réponse aux e-mails",
                "Time to reply to emails",
            ),
        );
        let alt: Vec<String> = histogram_labels(lang)
            .iter()
            .zip(&d.histogram)
            .map(|(label, n)| format!("{label}: {n}"))
            .collect();
        h.push_str(&format!(
            "<tr><td style=\"padding:8px 24px;\"><img src=\"{}\" width=\"640\" style=\"max-width:100%;height:auto;display:block;\" alt=\"{}\"></td></tr>\n",
            esc(src),
            esc(&alt.join(tr(lang, " ; ", "; ")))
        ));
    }
    if !d.not_visited.is_empty() {
        h.push_str(&format!(
            "<tr><td style=\"padding:8px 24px;color:#4b5563;\">{} {}</td></tr>\n",
            esc(tr(
                lang,
                "Agences sans visite cette période :",
                "Branches not visited this period:"
            )),
            esc(&d.not_visited.join(", "))
        ));
    }
    h.push_str(&format!(
        "<tr><td style=\"padding:16px 24px 20px 24px;font-size:12px;color:#9ca3af;\">{}</td></tr>\n",
        esc(tr(
            lang,
            "Délais comptés de l'envoi de la demande à l'arrivée de la première réponse humaine ; médianes et 90e centiles par interpolation linéaire.",
            "Times run from the enquiry's sending to the arrival of the first human reply; medians and 90th percentiles by linear interpolation."
        ))
    ));
    h.push_str("</table></td></tr></table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Group, ServiceTargets};
    use crate::digest::model::{build, Inputs};
    use crate::store::{Aggregate, EmailFigures, Period, Quantiles};

    fn digest(lang: Language, with_visits: bool) -> Digest {
        let group = Group {
            id: "nord".into(),
            name: "Nord & <Co>".into(),
            digest: None,
            targets: ServiceTargets {
                reply_within: Some((std::time::Duration::from_secs(8 * 3600), true)),
                answer_within: None,
            },
        };
        let mut current = Aggregate::default();
        if with_visits {
            let f = Figures {
                email: EmailFigures {
                    visits: 2,
                    reachable: 2,
                    replied: 1,
                    no_reply: 1,
                    time_to_reply_business: Quantiles {
                        n: 1,
                        median: Some(11_520_000.0),
                        p90: Some(11_520_000.0),
                    },
                    ..Default::default()
                },
                ..Default::default()
            };
            current.network = f.clone();
            current.businesses.insert("lille".into(), f);
        }
        build(Inputs {
            group: &group,
            branches: vec![("lille".into(), "Lille <Centre>".into())],
            language: lang,
            timezone: chrono_tz::Europe::Paris,
            period: Period {
                start_ms: 1_794_812_400_000,
                end_ms: 1_795_417_200_000,
            },
            current,
            previous: Aggregate::default(),
            histogram: vec![0, 0, 1, 0, 0, 1],
        })
    }

    #[test]
    fn issue10_form_visits_get_their_own_line_in_both_languages() {
        for (lang, want) in [
            (Language::Fr, "Formulaires de contact : 50 %"),
            (Language::En, "Contact forms: 50%"),
        ] {
            let mut d = digest(lang, true);
            d.network.form = crate::store::FormFigures {
                visits: 4,
                submitted: 2,
                replied: 1,
                no_reply: 1,
                blocked: 1,
                unreachable: 1,
                ..Default::default()
            };
            let lines = summary_lines(&d).join("\n");
            assert!(squash(&lines).contains(&squash(want)), "{lines}");
            assert!(lines.contains("CAPTCHA 1"), "{lines}");
        }
    }

    fn squash(s: &str) -> String {
        s.replace(['\u{a0}', '\u{202f}'], " ")
    }

    #[test]
    fn the_html_escapes_names_and_loads_nothing_remote() {
        for lang in [Language::Fr, Language::En] {
            let h = html(&digest(lang, true), Some("cid:chart"));
            assert!(h.contains("Lille &lt;Centre&gt;"));
            assert!(h.contains("Nord &amp; &lt;Co&gt;"));
            assert!(!h.contains("Lille <Centre>"));
            assert!(!h.contains("src=\"http") && !h.contains("url("));
            assert!(h.contains("<img src=\"cid:chart\""));
        }
    }

    #[test]
    fn with_a_public_url_branch_names_link_to_their_pages() {
        for lang in [Language::Fr, Language::En] {
            let plain = digest(lang, true);
            assert!(!html(&plain, None).contains("<a "));
            assert!(!text(&plain).contains("https://"));
            let mut d = plain.clone();
            d.branch_pages.insert(
                "lille".into(),
                "https://m.test/businesses/lille?a=1&b=\"2\"".into(),
            );
            let h = html(&d, None);
            assert!(
                h.contains(
                    "<a href=\"https://m.test/businesses/lille?a=1&amp;b=&quot;2&quot;\" style=\"color:inherit;\">Lille &lt;Centre&gt;</a>"
                ),
                "{h}"
            );
            let t = text(&d);
            let sep = if lang == Language::Fr { " : " } else { ": " };
            assert!(
                t.contains(&format!(
                    "  Lille <Centre>{sep}https://m.test/businesses/lille?a=1&b=\"2\"\n"
                )),
                "{t}"
            );
        }
    }

    #[test]
    fn every_sentence_is_in_the_digest_language() {
        let fr = text(&digest(Language::Fr, true));
        let en = text(&digest(Language::En, true));
        assert!(fr.contains("Classement des agences") && !fr.contains("Branches ranked"));
        assert!(en.contains("Branches ranked") && !en.contains("Classement"));
        assert!(fr.contains("3\u{a0}h 12\u{a0}min"), "{fr}");
        assert!(fr.contains("50\u{202f}%") && en.contains("50%"));
        for english in ["Emails", "reply", "Never", "median"] {
            assert!(
                !fr.contains(english),
                "{english} in the French digest:\n{fr}"
            );
        }
        for french in ["E-mails", "réponse", "Aucune", "médian"] {
            assert!(
                !en.contains(french),
                "{french} in the English digest:\n{en}"
            );
        }
    }

    #[test]
    fn an_empty_period_says_so_instead_of_an_empty_table() {
        let d = digest(Language::Fr, false);
        let t = text(&d);
        assert!(
            t.contains("Aucune visite n'a eu lieu pour Nord & <Co>"),
            "{t}"
        );
        assert!(!t.contains("Classement"));
        assert!(!html(&d, None).contains("<img"));
    }
}
