//! What the page says after a click: pure judgement of two observations (before and after),
//! in DESIGN.md's order. A CAPTCHA or bot wall blocks; an HTTP 5xx or a browser error page is
//! the site being unreachable; an HTTP 4xx or a visible validation error fails the form with
//! the page's own words; a new confirmation text, a new address or the form gone is a
//! submission; new empty fields are the next step of a multi-step form.

use crate::text::fold;
use serde::Deserialize;

/// One look at the page, as `page.js` `observe()` returns it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Observation {
    pub url: String,
    /// The HTTP status of the document's navigation (0 when unknown, e.g. an error page).
    pub status: u16,
    pub title: String,
    /// The visible text of the page (bounded).
    pub text: String,
    /// Visible error messages (alerts, `.error`, `aria-invalid` descriptions).
    pub errors: Vec<String>,
    /// The browser's own validation messages of visible invalid fields.
    pub invalid: Vec<String>,
    /// Non-empty when a CAPTCHA or bot check is on the page (what was seen).
    pub captcha: String,
    pub visible_fields: usize,
    /// Visible empty fields that were not filled (the next step of a form shows some).
    pub empty_fields: usize,
    /// Filled fields still shown.
    pub filled_shown: usize,
    pub ready: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The site confirmed; the page's words.
    Submitted(String),
    /// `form_failed`, with the page's message.
    Failed(String),
    /// `form_blocked`.
    Blocked(String),
    /// `unreachable`.
    Unreachable(String),
    /// More fields to fill: a multi-step form.
    NextStep,
    /// Nothing decisive yet.
    Pending,
}

/// Confirmation phrases (folded). "merci" alone counts unless it asks for something
/// ("merci de remplir…").
const SUCCESS: &[&str] = &[
    "message envoye",
    "message a bien ete",
    "demande a bien ete",
    "bien ete envoye",
    "bien ete transmis",
    "bien ete recu",
    "bien recu",
    "nous avons recu",
    "nous avons bien recu",
    "merci pour votre",
    "merci de votre message",
    "merci de votre demande",
    "merci de nous avoir contacte",
    "nous vous recontacterons",
    "nous vous contacterons",
    "nous reviendrons vers vous",
    "nous vous repondrons",
    "votre message a ete",
    "votre demande a ete",
    "thank you",
    "thanks for",
    "message has been sent",
    "message was sent",
    "we have received",
    "we received your",
    "we will get back",
    "we ll get back",
    "been received",
];

fn words(text: &str) -> String {
    fold(text)
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line of `text` holding a confirmation phrase, if any: the longest of them (a heading
/// "Merci" says less than the sentence under it), at most 200 characters.
pub fn confirmation(text: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let w = format!(" {} ", words(line));
        let thanks = w.contains(" merci ")
            && ![
                "merci de remplir",
                "merci de renseigner",
                "merci de saisir",
                "merci d indiquer",
                "merci de verifier",
                "merci de corriger",
                "merci de completer",
                "merci de patienter",
                "merci de bien vouloir",
                "merci d accepter",
                "merci de cocher",
                "merci de choisir",
                "merci de selectionner",
                "merci de preciser",
            ]
            .iter()
            .any(|p| w.contains(&format!(" {p} ")));
        if (thanks || SUCCESS.iter().any(|p| w.contains(&format!(" {p} "))))
            && found
                .as_ref()
                .is_none_or(|f| line.chars().count() > f.chars().count())
        {
            found = Some(line.chars().take(200).collect());
        }
    }
    found
}

/// Judges the page `after` a click, knowing what it showed `before` it. `settled`: the page
/// has had time to react (validation bubbles and scripts), so a silent page now means the
/// browser refused to send (its own validation) or nothing will happen.
pub fn judge(before: &Observation, after: &Observation, settled: bool) -> Verdict {
    if !after.captcha.is_empty() {
        return Verdict::Blocked(format!("the site asked for {}", after.captcha));
    }
    if after.url.starts_with("chrome-error://") {
        return Verdict::Unreachable(format!(
            "the browser could not reach the site ({})",
            first_line(&after.text, &after.title)
        ));
    }
    if after.status >= 500 {
        return Verdict::Unreachable(format!(
            "HTTP {} from the site: {}",
            after.status,
            first_line(&after.text, &after.title)
        ));
    }
    if (400..500).contains(&after.status) {
        let message = after
            .errors
            .first()
            .cloned()
            .unwrap_or_else(|| first_line(&after.text, &after.title));
        return Verdict::Failed(format!("HTTP {}: {message}", after.status));
    }
    let new_errors: Vec<&String> = after
        .errors
        .iter()
        .filter(|e| !before.errors.contains(e) && !e.trim().is_empty())
        .collect();
    let confirmed = confirmation(&after.text).filter(|c| !before.text.contains(c.as_str()));
    if !new_errors.is_empty() && confirmed.is_none() {
        return Verdict::Failed(
            new_errors
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(" / "),
        );
    }
    if let Some(c) = confirmed {
        return Verdict::Submitted(c);
    }
    let moved = after.url != before.url && !after.url.is_empty();
    if moved && after.ready == "complete" && after.empty_fields == 0 {
        return Verdict::Submitted(first_line(&after.text, &after.title));
    }
    if after.filled_shown == 0
        && after.empty_fields == 0
        && before.filled_shown > 0
        && after.ready == "complete"
    {
        return Verdict::Submitted(first_line(&after.text, &after.title));
    }
    if after.empty_fields > 0 && after.filled_shown < before.filled_shown {
        return Verdict::NextStep;
    }
    if after.empty_fields > before.empty_fields {
        return Verdict::NextStep;
    }
    if settled && !after.invalid.is_empty() {
        return Verdict::Failed(after.invalid.join(" / "));
    }
    Verdict::Pending
}

/// A short quote of the page: its first line of text, else its title.
fn first_line(text: &str, title: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(title)
        .trim();
    let line = if line.is_empty() { title } else { line };
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(text: &str) -> Observation {
        Observation {
            url: "http://x.test/contact".into(),
            status: 200,
            text: text.into(),
            visible_fields: 4,
            filled_shown: 4,
            ready: "complete".into(),
            ..Observation::default()
        }
    }

    #[test]
    fn a_new_thank_you_text_is_a_submission_and_a_request_to_fill_is_not() {
        let before = page("Contactez-nous.\nMerci de remplir tous les champs");
        assert_eq!(
            judge(
                &before,
                &page("Merci de remplir tous les champs, svp"),
                false
            ),
            Verdict::Pending
        );
        let after = page("Contact\nMerci ! Votre message a bien été envoyé.");
        assert_eq!(
            judge(&before, &after, false),
            Verdict::Submitted("Merci ! Votre message a bien été envoyé.".into())
        );
        assert_eq!(
            confirmation("Contact\nThank you. Your message has been sent"),
            Some("Thank you. Your message has been sent".into())
        );
    }

    #[test]
    fn a_visible_error_fails_the_form_with_the_page_words() {
        let before = page("Contact");
        let mut after = page("Contact");
        after.errors = vec!["Le numéro doit commencer par +33".into()];
        assert_eq!(
            judge(&before, &after, false),
            Verdict::Failed("Le numéro doit commencer par +33".into())
        );
    }

    #[test]
    fn statuses_captchas_and_error_pages_decide_first() {
        let before = page("Contact");
        let mut a = page("Internal Server Error");
        a.status = 500;
        assert!(matches!(judge(&before, &a, false), Verdict::Unreachable(_)));
        a.status = 403;
        assert!(
            matches!(judge(&before, &a, false), Verdict::Failed(m) if m.starts_with("HTTP 403"))
        );
        let mut c = page("Merci");
        c.captcha = "a CAPTCHA (g-recaptcha)".into();
        assert!(matches!(judge(&before, &c, false), Verdict::Blocked(_)));
        let mut e = page("This site can't be reached");
        e.url = "chrome-error://chromewebdata/".into();
        e.status = 0;
        assert!(matches!(judge(&before, &e, false), Verdict::Unreachable(_)));
    }

    #[test]
    fn new_fields_are_a_next_step_and_a_vanished_form_a_submission() {
        let before = page("Étape 1");
        let mut next = page("Étape 2");
        next.filled_shown = 0;
        next.empty_fields = 3;
        assert_eq!(judge(&before, &next, false), Verdict::NextStep);
        let mut gone = page("À bientôt");
        gone.filled_shown = 0;
        gone.visible_fields = 0;
        assert!(matches!(
            judge(&before, &gone, false),
            Verdict::Submitted(_)
        ));
    }

    #[test]
    fn the_browser_refusing_to_send_is_a_failure_once_settled() {
        let before = page("Contact");
        let mut after = page("Contact");
        after.invalid = vec!["Code postal: Veuillez renseigner ce champ.".into()];
        assert_eq!(judge(&before, &after, false), Verdict::Pending);
        assert!(matches!(judge(&before, &after, true), Verdict::Failed(_)));
    }
}
