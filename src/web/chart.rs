//! The dashboard's two charts as inline SVG: a group's weekly response rate (sparkline) and a
//! branch's delays visit by visit. Drawn here rather than with a plotting crate: each is a few
//! lines and circles, and writing them by hand keeps what matters to a reader of a measuring
//! instrument — the figures in the `<title>`/`aria-label` a screen reader reads, the viewer's
//! dates, classes that `style.css` colours (the CSP forbids inline styles) — without fonts or a
//! text-measuring backend on the server.
//!
//! Invariant: every text in the markup goes through `esc`; charts need no JavaScript.

use super::i18n::Locale;
use crate::config::Language;
use crate::store::{Measure, Period, WeekCounts};
use chrono::{Datelike, TimeZone};
use chrono_tz::Tz;
use std::fmt::Write as _;

/// Weeks a sparkline covers.
pub const WEEKS: usize = 12;
/// The most visits a branch chart draws (the newest).
pub const MAX_POINTS: i64 = 400;

/// Text for SVG content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The starts of the last `weeks` weeks in `tz` (Monday 00:00 local time, the last one being
/// the current week) followed by `end_ms`: `weeks + 1` ascending bounds. A week across a clock
/// change lasts 167 or 169 hours.
pub fn week_bounds(tz: Tz, end_ms: i64, weeks: usize) -> Vec<i64> {
    let Some(now) = chrono::Utc.timestamp_millis_opt(end_ms - 1).single() else {
        return Vec::new();
    };
    let today = now.with_timezone(&tz).date_naive();
    let monday = today - chrono::Days::new(u64::from(today.weekday().num_days_from_monday()));
    let mut out: Vec<i64> = (0..weeks as u64)
        .rev()
        .filter_map(|k| {
            let day = monday.checked_sub_days(chrono::Days::new(7 * k))?;
            // Where midnight does not exist (a clock change at 00:00), the day starts at the
            // first instant that does.
            (0..3).find_map(|h| {
                tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?)
                    .earliest()
                    .map(|t| t.timestamp_millis())
            })
        })
        .collect();
    out.push(end_ms);
    out
}

/// A group's response rate week by week (replies and answers over the visits that reached the
/// branch), as a small line; a week without such visits is a gap.
pub fn sparkline(loc: &Locale, bounds: &[i64], weeks: &[WeekCounts]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 28.0;
    const PAD: f64 = 3.0;
    let n = weeks.len().min(bounds.len().saturating_sub(1));
    let x = |i: usize| PAD + i as f64 * (W - 2.0 * PAD) / (n.max(2) - 1) as f64;
    let y = |rate: f64| H - PAD - rate.clamp(0.0, 1.0) * (H - 2.0 * PAD);
    let mut label = match loc.lang {
        Language::Fr => format!("Taux de réponse par semaine, {n} dernières semaines :"),
        Language::En => format!("Response rate per week, last {n} weeks:"),
    };
    let mut lines: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut last = None;
    for (i, w) in weeks.iter().take(n).enumerate() {
        let week_of = match loc.lang {
            Language::Fr => "semaine du",
            Language::En => "week of",
        };
        let rate = (w.reachable > 0).then(|| w.responded as f64 / w.reachable as f64);
        let value = match rate {
            Some(r) => format!("{} ({}/{})", loc.pct(Some(r)), w.responded, w.reachable),
            None => match loc.lang {
                Language::Fr => "aucune visite".to_owned(),
                Language::En => "no visit".to_owned(),
            },
        };
        let sep = if i == 0 { " " } else { " ; " };
        let _ = write!(label, "{sep}{week_of} {} : {value}", loc.date(bounds[i]));
        match rate {
            Some(r) => {
                run.push((x(i), y(r)));
                last = Some((x(i), y(r)));
            }
            None => lines.extend((!run.is_empty()).then(|| std::mem::take(&mut run))),
        }
    }
    if loc.lang == Language::En {
        label = label.replace(" : ", ": ").replace(" ; ", "; ");
    }
    lines.extend((!run.is_empty()).then_some(run));
    let label = esc(&label);
    let mut svg = format!(
        "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>\
         <line class=\"base\" x1=\"{PAD}\" y1=\"{b:.1}\" x2=\"{r:.1}\" y2=\"{b:.1}\"/>",
        b = y(0.0),
        r = W - PAD,
    );
    for l in &lines {
        if l.len() == 1 {
            let _ = write!(
                svg,
                "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\"/>",
                l[0].0, l[0].1
            );
            continue;
        }
        let pts: Vec<String> = l.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = write!(
            svg,
            "<polyline class=\"line\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    if let Some((a, b)) = last {
        let _ = write!(
            svg,
            "<circle class=\"last\" cx=\"{a:.1}\" cy=\"{b:.1}\" r=\"2.5\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The first round duration at or above `max_ms` (so the axis reads 0, half, top in whole
/// seconds, minutes, hours or days).
fn nice_ceiling(max_ms: f64) -> f64 {
    const S: f64 = 1000.0;
    const M: f64 = 60.0 * S;
    const HR: f64 = 60.0 * M;
    const D: f64 = 24.0 * HR;
    [
        2.0 * S,
        10.0 * S,
        20.0 * S,
        30.0 * S,
        M,
        2.0 * M,
        10.0 * M,
        20.0 * M,
        30.0 * M,
        HR,
        2.0 * HR,
        4.0 * HR,
        6.0 * HR,
        12.0 * HR,
        D,
        2.0 * D,
        4.0 * D,
        7.0 * D,
        14.0 * D,
        30.0 * D,
        60.0 * D,
        120.0 * D,
        366.0 * D,
    ]
    .into_iter()
    .find(|v| *v >= max_ms)
    .unwrap_or(max_ms.max(1.0))
}

/// What a delay chart of `channel` shows, and what it calls a visit without an answer.
fn words(loc: &Locale, channel: &str) -> (&'static str, &'static str) {
    match (channel, loc.lang == Language::Fr) {
        ("call", true) => ("Délai de décroché par appel", "sans décroché"),
        ("call", false) => ("Time to answer per call", "not answered"),
        ("form", true) => ("Délai de réponse par formulaire", "sans réponse"),
        ("form", false) => ("Time to reply per contact form", "no reply"),
        (_, true) => ("Délai de réponse par e-mail", "sans réponse"),
        (_, false) => ("Time to reply per email", "no reply"),
    }
}

/// The caption under which a delay chart of `channel` is shown: with three channels, the
/// charts look alike.
pub fn caption(loc: &Locale, channel: &str) -> &'static str {
    words(loc, channel).0
}

/// A branch's delays for one channel ("email": time to reply, "call": time to answer, "form":
/// time to reply from the form's submission), one dot per visit at its date; visits that got no
/// answer are marks along the top. `None` when the period holds no visit of that channel.
pub fn delays(loc: &Locale, channel: &str, period: Period, points: &[Measure]) -> Option<String> {
    const W: f64 = 640.0;
    const H: f64 = 190.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 26.0;
    let points: Vec<&Measure> = points.iter().filter(|p| p.channel == channel).collect();
    if points.is_empty() {
        return None;
    }
    let mut measured: Vec<i64> = points.iter().filter_map(|p| p.ms).collect();
    measured.sort_unstable();
    let missed = points.len() - measured.len();
    let median = crate::store::percentile(&measured, 0.5);
    let top = nice_ceiling(measured.last().copied().unwrap_or(0) as f64);
    let span = (period.end_ms - period.start_ms).max(1) as f64;
    let x =
        |t: i64| LEFT + ((t - period.start_ms) as f64 / span).clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    let y = |ms: f64| H - BOTTOM - (ms / top).clamp(0.0, 1.0) * (H - TOP - BOTTOM);
    let fr = loc.lang == Language::Fr;
    let (what, none) = words(loc, channel);
    let title = if fr {
        format!(
            "{what}, {} → {} : {} visites, médiane {}, {missed} {none}",
            loc.date(period.start_ms),
            loc.date(period.end_ms - 1),
            points.len(),
            loc.dur(median),
        )
    } else {
        format!(
            "{what}, {} → {}: {} visits, median {}, {missed} {none}",
            loc.date(period.start_ms),
            loc.date(period.end_ms - 1),
            points.len(),
            loc.dur(median),
        )
    };
    let desc: Vec<String> = points
        .iter()
        .rev()
        .map(|p| {
            let v =
                p.ms.map_or_else(|| none.to_owned(), |ms| loc.dur_ms(Some(ms)));
            format!("{} {v}", loc.when(Some(p.due_at)))
        })
        .collect();
    let id = format!("chart-{channel}");
    let mut svg = format!(
        "<svg class=\"delays\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
         role=\"img\" aria-labelledby=\"{id}-t {id}-d\"><title id=\"{id}-t\">{}</title>\
         <desc id=\"{id}-d\">{}</desc>",
        esc(&title),
        esc(&desc.join(" ; ")),
    );
    for tick in [0.0, top / 2.0, top] {
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{r}\" y2=\"{yy:.1}\"/>\
             <text class=\"axis\" x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\">{}</text>",
            esc(&loc.dur(Some(tick))),
            yy = y(tick),
            r = W - RIGHT,
            lx = LEFT - 6.0,
            ty = y(tick) + 4.0,
        );
    }
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"{LEFT}\" y=\"{b}\">{}</text>\
         <text class=\"axis\" x=\"{r}\" y=\"{b}\" text-anchor=\"end\">{}</text>",
        esc(&loc.date(period.start_ms)),
        esc(&loc.date(period.end_ms - 1)),
        b = H - 6.0,
        r = W - RIGHT,
    );
    for p in &points {
        let when = loc.when(Some(p.due_at));
        match p.ms {
            Some(ms) => {
                let _ = write!(
                    svg,
                    "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\"><title>{}</title></circle>",
                    x(p.due_at),
                    y(ms as f64),
                    esc(&format!("{when} {}", loc.dur_ms(Some(ms)))),
                );
            }
            None => {
                let (cx, cy) = (x(p.due_at), TOP - 8.0);
                let _ = write!(
                    svg,
                    "<path class=\"miss\" d=\"M{:.1} {:.1}l6 6m0 -6l-6 6\"><title>{}</title></path>",
                    cx - 3.0,
                    cy,
                    esc(&format!("{when} {none}")),
                );
            }
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn loc(lang: &str, tz: &str) -> Locale {
        Locale::of(&HeaderMap::new(), Some(lang), Some(tz), false)
    }

    fn ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn weeks_start_on_local_mondays_and_last_167_hours_across_the_spring_change() {
        // Wednesday 1 April 2026, 10:00 UTC; Paris moved to summer time on Sunday 29 March.
        let b = week_bounds(chrono_tz::Europe::Paris, ms(2026, 4, 1, 10), 3);
        assert_eq!(b.len(), 4);
        // Monday 30 March 00:00 in Paris is 29 March 22:00 UTC (summer time).
        assert_eq!(b[2], ms(2026, 3, 29, 22));
        // Monday 23 March 00:00 in Paris is 22 March 23:00 UTC (winter time).
        assert_eq!(b[1], ms(2026, 3, 22, 23));
        assert_eq!(b[2] - b[1], 167 * 3_600_000);
        assert_eq!(b[1] - b[0], 168 * 3_600_000);
        assert_eq!(b[3], ms(2026, 4, 1, 10));
        // The same instant in New York starts its weeks elsewhere.
        let ny = week_bounds(chrono_tz::America::New_York, ms(2026, 4, 1, 10), 1);
        assert_eq!(ny[0], ms(2026, 3, 30, 4));
    }

    #[test]
    fn the_sparkline_says_each_weeks_rate_and_leaves_a_gap_for_empty_weeks() {
        let b = week_bounds(chrono_tz::Europe::Paris, ms(2026, 4, 1, 10), 3);
        let weeks = [
            WeekCounts {
                reachable: 4,
                responded: 3,
            },
            WeekCounts::default(),
            WeekCounts {
                reachable: 2,
                responded: 2,
            },
        ];
        let fr = sparkline(&loc("fr", "Europe/Paris"), &b, &weeks);
        assert!(fr.contains("role=\"img\""), "{fr}");
        assert!(fr.contains("<title>Taux de réponse par semaine"), "{fr}");
        assert!(fr.contains("75"), "the first week's rate: {fr}");
        assert!(fr.contains("(3/4)") && fr.contains("(2/2)"), "{fr}");
        assert!(fr.contains("aucune visite"), "{fr}");
        // Two lone weeks around a gap: two dots, no line through the empty week.
        assert!(!fr.contains("<polyline"), "{fr}");
        assert_eq!(fr.matches("class=\"dot\"").count(), 2, "{fr}");
        let en = sparkline(&loc("en", "Europe/Paris"), &b, &weeks);
        assert!(
            en.contains("Response rate per week, last 3 weeks: week of"),
            "{en}"
        );
        assert!(en.contains("no visit"), "{en}");
    }

    #[test]
    fn the_delay_chart_lists_every_visit_in_the_viewers_zone_and_marks_the_unanswered() {
        let period = Period {
            start_ms: ms(2026, 3, 1, 0),
            end_ms: ms(2026, 3, 31, 0),
        };
        let p = |due: i64, ms: Option<i64>| Measure {
            due_at: due,
            channel: "email".into(),
            outcome: Some(if ms.is_some() { "replied" } else { "no_reply" }.into()),
            ms,
        };
        let points = [
            p(ms(2026, 3, 10, 8), Some(3_600_000)),
            p(ms(2026, 3, 5, 8), None),
            p(ms(2026, 3, 2, 8), Some(7_200_000)),
        ];
        let svg = delays(&loc("fr", "America/New_York"), "email", period, &points).unwrap();
        assert!(svg.contains("3 visites"), "{svg}");
        assert!(svg.contains("1 sans réponse"), "{svg}");
        assert_eq!(svg.matches("class=\"pt\"").count(), 2);
        assert_eq!(svg.matches("class=\"miss\"").count(), 1);
        // 2 March 08:00 UTC is 03:00 in New York.
        assert!(svg.contains("02/03/2026 03:00:00"), "{svg}");
        assert!(delays(&loc("fr", "Europe/Paris"), "call", period, &points).is_none());
    }

    #[test]
    fn form_visits_get_their_own_chart_of_times_to_reply() {
        let period = Period {
            start_ms: ms(2026, 3, 1, 0),
            end_ms: ms(2026, 3, 31, 0),
        };
        let p = |channel: &str, due: i64, ms: Option<i64>| Measure {
            due_at: due,
            channel: channel.into(),
            outcome: Some(if ms.is_some() { "replied" } else { "no_reply" }.into()),
            ms,
        };
        let points = [
            p("form", ms(2026, 3, 12, 8), Some(5_400_000)),
            p("email", ms(2026, 3, 10, 8), Some(60_000)),
            p("form", ms(2026, 3, 4, 8), None),
        ];
        let fr = delays(&loc("fr", "Europe/Paris"), "form", period, &points).unwrap();
        assert!(fr.contains("Délai de réponse par formulaire"), "{fr}");
        assert!(
            fr.contains("2 visites") && fr.contains("1 sans réponse"),
            "{fr}"
        );
        assert!(fr.contains("id=\"chart-form-t\""), "{fr}");
        assert_eq!(fr.matches("class=\"pt\"").count(), 1, "{fr}");
        let en = delays(&loc("en", "Europe/Paris"), "form", period, &points).unwrap();
        assert!(en.contains("Time to reply per contact form"), "{en}");
        assert!(en.contains("median 1\u{a0}h 30\u{a0}min"), "{en}");
        let email = delays(&loc("fr", "Europe/Paris"), "email", period, &points).unwrap();
        assert!(email.contains("1 visites"), "forms are not emails: {email}");
    }

    #[test]
    fn text_in_charts_is_escaped_and_axes_are_round() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(nice_ceiling(7_200_000.0), 7_200_000.0);
        assert_eq!(nice_ceiling(7_200_001.0), 14_400_000.0);
        assert_eq!(nice_ceiling(8_000.0), 10_000.0);
        assert_eq!(nice_ceiling(0.0), 2_000.0);
    }
}
