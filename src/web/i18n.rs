//! How the dashboard speaks to one viewer: French or English (`?lang=`, then a cookie, then
//! `Accept-Language`, French by default) and their time zone (`?tz=`, then a cookie, Paris by
//! default). Numbers, durations and dates go through `digest::locale`, as in digests.

use crate::config::{Language, DEFAULT_TIMEZONE};
use crate::digest::locale;
use axum::http::HeaderMap;
use chrono::TimeZone;
use chrono_tz::Tz;
use std::collections::BTreeMap;

pub const LANG_COOKIE: &str = "mystery_lang";
pub const TZ_COOKIE: &str = "mystery_tz";

/// The viewer's language and zone, and the cookies that remember an override.
#[derive(Debug, Clone)]
pub struct Locale {
    pub lang: Language,
    pub tz: Tz,
    pub set_cookies: Vec<String>,
}

fn parse_lang(s: &str) -> Option<Language> {
    match s.trim().to_ascii_lowercase().get(..2)? {
        "fr" => Some(Language::Fr),
        "en" => Some(Language::En),
        _ => None,
    }
}

/// The first of French or English in `Accept-Language`, by quality then order.
pub fn accept_language(header: &str) -> Option<Language> {
    let mut best: Option<(f32, usize, Language)> = None;
    for (i, item) in header.split(',').enumerate().take(32) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(lang) = parse_lang(tag) {
            if q > 0.0 && best.is_none_or(|(bq, _, _)| q > bq) {
                best = Some((q, i, lang));
            }
        }
    }
    best.map(|(_, _, l)| l)
}

impl Locale {
    pub fn of(headers: &HeaderMap, lang: Option<&str>, tz: Option<&str>, secure: bool) -> Locale {
        let mut set_cookies = Vec::new();
        let year = 365 * 86_400;
        let lang = match lang.and_then(parse_lang) {
            Some(l) => {
                let v = if l == Language::Fr { "fr" } else { "en" };
                set_cookies.push(super::auth::set_cookie(LANG_COOKIE, v, "/", year, secure));
                l
            }
            None => super::auth::cookie(headers, LANG_COOKIE)
                .and_then(parse_lang)
                .or_else(|| {
                    headers
                        .get(axum::http::header::ACCEPT_LANGUAGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(accept_language)
                })
                .unwrap_or(Language::Fr),
        };
        let tz = match tz.and_then(|t| t.parse::<Tz>().ok()) {
            Some(t) => {
                // Zone names are ASCII letters, digits, '/', '_', '-', '+': safe in a cookie.
                set_cookies.push(super::auth::set_cookie(
                    TZ_COOKIE,
                    t.name(),
                    "/",
                    year,
                    secure,
                ));
                t
            }
            None => super::auth::cookie(headers, TZ_COOKIE)
                .and_then(|t| t.parse::<Tz>().ok())
                .unwrap_or(DEFAULT_TIMEZONE),
        };
        Locale {
            lang,
            tz,
            set_cookies,
        }
    }

    pub fn code(&self) -> &'static str {
        match self.lang {
            Language::Fr => "fr",
            Language::En => "en",
        }
    }

    pub fn pct(&self, share: Option<f64>) -> String {
        share.map_or_else(|| "—".into(), |s| locale::percent(self.lang, s))
    }
    pub fn dur(&self, ms: Option<f64>) -> String {
        ms.map_or_else(|| "—".into(), |m| locale::duration(self.lang, m))
    }
    pub fn dur_ms(&self, ms: Option<i64>) -> String {
        self.dur(ms.map(|m| m as f64))
    }
    pub fn score(&self, s: Option<f64>) -> String {
        s.map_or_else(|| "—".into(), |s| locale::decimal(self.lang, s, 0))
    }
    pub fn points(&self, delta: Option<f64>) -> String {
        delta.map_or_else(String::new, |d| locale::points(self.lang, d))
    }
    pub fn dur_delta(&self, delta: Option<f64>) -> String {
        delta.map_or_else(String::new, |d| locale::duration_delta(self.lang, d))
    }
    /// A moment in the viewer's zone, to the second ("23/11/2026 08:00:05").
    pub fn when(&self, ms: Option<i64>) -> String {
        let Some(ms) = ms else { return "—".into() };
        match chrono::Utc.timestamp_millis_opt(ms).single() {
            Some(t) => {
                let local = t.with_timezone(&self.tz);
                format!(
                    "{}{}",
                    locale::date_time_short(self.lang, self.tz, t),
                    local.format(":%S")
                )
            }
            None => "—".into(),
        }
    }
    pub fn date(&self, ms: i64) -> String {
        chrono::Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| locale::date(self.lang, self.tz, t))
            .unwrap_or_default()
    }

    /// A channel as a reader says it (filters keep the code as the value).
    pub fn channel(&self, c: &str) -> String {
        let (fr, en) = match c {
            "email" => ("e-mail", "email"),
            "call" => ("appel", "call"),
            "form" => ("formulaire", "contact form"),
            other => (other, other),
        };
        match self.lang {
            Language::Fr => fr.to_owned(),
            Language::En => en.to_owned(),
        }
    }

    /// Every word of the pages in this language.
    pub fn words(&self) -> BTreeMap<&'static str, &'static str> {
        WORDS
            .iter()
            .map(|(k, fr, en)| {
                (
                    *k,
                    match self.lang {
                        Language::Fr => *fr,
                        Language::En => *en,
                    },
                )
            })
            .collect()
    }

    /// An outcome or state as a reader says it.
    pub fn outcome(&self, o: &str) -> String {
        let fr = match o {
            "replied" => "réponse",
            "acknowledged_only" => "accusé de réception seul",
            "bounced" => "rejeté (bounce)",
            "no_reply" => "sans réponse",
            "send_failed" => "échec d'envoi",
            "answered" => "décroché",
            "busy" => "occupé",
            "no_answer" => "pas de réponse",
            "rejected" => "refusé",
            "unreachable" => "injoignable",
            "failed" => "échec (de notre côté)",
            "form_blocked" => "bloqué (CAPTCHA)",
            "form_failed" => "refusé par le site",
            "pending" => "en cours",
            other => other,
        };
        match self.lang {
            Language::Fr => fr.to_owned(),
            Language::En => o.replace('_', " "),
        }
    }
}

/// (key, French, English).
const WORDS: &[(&str, &str, &str)] = &[
    ("title", "Client mystère", "Mystery shopper"),
    ("overview", "Vue d'ensemble", "Overview"),
    ("login", "Connexion", "Log in"),
    ("logout", "Déconnexion", "Log out"),
    ("user", "Utilisateur", "User"),
    ("password", "Mot de passe", "Password"),
    (
        "bad_login",
        "Utilisateur ou mot de passe incorrect.",
        "Wrong user or password.",
    ),
    (
        "throttled",
        "Trop d'essais : réessayez plus tard.",
        "Too many attempts: try again later.",
    ),
    ("groups", "Réseaux", "Groups"),
    ("group", "Réseau", "Group"),
    ("branch", "Agence", "Branch"),
    ("branches", "Agences", "Branches"),
    ("visits", "Visites", "Visits"),
    ("visit", "Visite", "Visit"),
    (
        "reply_rate",
        "Taux de réponse (e-mail)",
        "Reply rate (email)",
    ),
    (
        "answer_rate",
        "Taux de décroché (appels)",
        "Answer rate (calls)",
    ),
    (
        "median_reply",
        "Délai médian de réponse",
        "Median time to reply",
    ),
    (
        "median_answer",
        "Délai médian de décroché",
        "Median time to answer",
    ),
    ("score", "Note moyenne", "Mean score"),
    ("trend", "Tendance", "Trend"),
    (
        "vs_previous",
        "par rapport à la période précédente",
        "vs the previous period",
    ),
    ("period", "Période", "Period"),
    ("since", "Depuis", "Since"),
    ("channel", "Canal", "Channel"),
    ("outcome", "Résultat", "Outcome"),
    ("all", "Tous", "All"),
    ("filter", "Filtrer", "Filter"),
    ("csv", "Exporter en CSV", "Export as CSV"),
    ("rank", "Rang", "Rank"),
    ("target", "Objectif", "Target"),
    ("misses_target", "Objectif manqué", "Target missed"),
    (
        "not_visited",
        "Agences sans visite sur la période",
        "Branches not visited in the period",
    ),
    ("timeline", "Historique", "Timeline"),
    ("date", "Date", "Date"),
    ("scenario", "Scénario", "Scenario"),
    ("time", "Délai", "Time"),
    ("previous", "Précédent", "Previous"),
    ("next", "Suivant", "Next"),
    ("page", "Page", "Page"),
    ("none", "Aucune visite.", "No visit."),
    ("enquiry", "Demande envoyée", "Enquiry as sent"),
    ("replies", "Messages reçus", "Messages received"),
    ("quoted", "Historique cité", "Quoted history"),
    ("signature", "Signature", "Signature"),
    ("rules", "Critères", "Rules"),
    ("evidence", "Preuve", "Evidence"),
    ("hit", "atteint", "hit"),
    ("miss", "manqué", "missed"),
    ("weight", "Poids", "Weight"),
    ("correlation", "Rapprochement", "Correlation"),
    ("classification", "Classement", "Classification"),
    ("bounce", "Diagnostic de rejet", "Bounce diagnostic"),
    ("call", "Appel", "Call"),
    ("recording", "Enregistrement", "Recording"),
    ("form", "Formulaire", "Contact form"),
    ("screenshots", "Captures d'écran", "Screenshots"),
    ("transcript", "Transcription", "Transcript"),
    ("segments", "Passages", "Segments"),
    ("measures", "Mesures", "Measurements"),
    (
        "purged",
        "Supprimé (durée de conservation)",
        "Purged (retention)",
    ),
    (
        "no_audio",
        "Votre navigateur ne lit pas l'audio.",
        "Your browser cannot play audio.",
    ),
    ("timezone", "Fuseau horaire", "Time zone"),
    ("language", "Langue", "Language"),
    ("email", "e-mail", "email"),
    ("phone", "appel", "call"),
    ("weeks12", "12 dernières semaines", "Last 12 weeks"),
    (
        "delays",
        "Délais visite par visite",
        "Delays visit by visit",
    ),
    ("sip_timeline", "Déroulé SIP", "SIP timeline"),
    ("sip_event", "Étape", "Event"),
    ("sip_offset", "Depuis l'INVITE", "From the INVITE"),
    (
        "sip_invite",
        "INVITE envoyé (numérotation)",
        "INVITE sent (dialed)",
    ),
    (
        "sip_first_18x",
        "Première réponse 18x (sonnerie)",
        "First 18x (ringing)",
    ),
    ("sip_ring", "Sonnerie", "Ring"),
    (
        "sip_ring_estimated",
        "estimée d'après la cadence de sonnerie",
        "estimated from the ring cadence",
    ),
    ("sip_answer", "200 OK (décroché)", "200 OK (answered)"),
    ("sip_final", "Réponse finale", "Final response"),
    (
        "sip_greeting",
        "Accueil (première voix)",
        "Greeting (first voice)",
    ),
    ("sip_bye", "BYE (fin d'appel)", "BYE (hang-up)"),
    ("not_recorded", "non enregistré", "not recorded"),
    ("forms", "Formulaires de contact", "Contact forms"),
    ("form_submitted", "Envoyés", "Submitted"),
    (
        "form_reply_rate",
        "Taux de réponse (formulaires)",
        "Reply rate (forms)",
    ),
    ("form_acknowledged", "Accusés de réception", "Acknowledged"),
    ("form_no_reply", "Sans réponse", "No reply"),
    ("form_refused", "Refusés par le site", "Refused by the site"),
    ("form_blocked", "Bloqués (CAPTCHA)", "Blocked (CAPTCHA)"),
    ("form_unreachable", "Site injoignable", "Site unreachable"),
    (
        "p90_reply",
        "Délai de réponse (90 %)",
        "Time to reply (90th percentile)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_french_or_english_by_quality() {
        assert_eq!(
            accept_language("fr-FR,fr;q=0.9,en;q=0.8"),
            Some(Language::Fr)
        );
        assert_eq!(
            accept_language("de-DE, en-GB;q=0.7, fr;q=0.5"),
            Some(Language::En)
        );
        assert_eq!(accept_language("en;q=0.4, fr-CA;q=0.6"), Some(Language::Fr));
        assert_eq!(accept_language("de, it"), None);
        assert_eq!(accept_language("fr;q=0"), None);
    }

    #[test]
    fn a_query_override_wins_and_is_remembered_in_a_cookie() {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ACCEPT_LANGUAGE, "fr".parse().unwrap());
        let l = Locale::of(&h, Some("en"), Some("America/New_York"), false);
        assert_eq!(l.lang, Language::En);
        assert_eq!(l.tz, chrono_tz::America::New_York);
        assert_eq!(l.set_cookies.len(), 2);
        h.insert(
            axum::http::header::COOKIE,
            "mystery_lang=en; mystery_tz=Asia/Tokyo".parse().unwrap(),
        );
        let l = Locale::of(&h, None, Some("Not/AZone"), false);
        assert_eq!((l.lang, l.tz), (Language::En, chrono_tz::Asia::Tokyo));
        assert!(l.set_cookies.is_empty());
        let l = Locale::of(&HeaderMap::new(), None, None, false);
        assert_eq!((l.lang, l.tz), (Language::Fr, DEFAULT_TIMEZONE));
    }

    #[test]
    fn dates_show_in_the_viewers_zone() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 3, 2, 8, 30, 5)
            .unwrap()
            .timestamp_millis();
        let paris = Locale::of(&HeaderMap::new(), Some("fr"), None, false);
        assert_eq!(paris.when(Some(t)), "02/03/2026 09:30:05");
        let ny = Locale::of(
            &HeaderMap::new(),
            Some("en"),
            Some("America/New_York"),
            false,
        );
        assert_eq!(ny.when(Some(t)), "2 Mar 2026 03:30:05");
    }

    #[test]
    fn form_outcomes_and_channels_are_worded_in_both_languages() {
        let fr = Locale::of(&HeaderMap::new(), Some("fr"), None, false);
        let en = Locale::of(&HeaderMap::new(), Some("en"), None, false);
        assert_eq!(fr.outcome("form_blocked"), "bloqué (CAPTCHA)");
        assert_eq!(fr.outcome("form_failed"), "refusé par le site");
        assert_eq!(en.outcome("form_failed"), "form failed");
        assert_eq!(fr.channel("form"), "formulaire");
        assert_eq!(en.channel("form"), "contact form");
        assert_eq!(fr.words()["forms"], "Formulaires de contact");
        assert_eq!(en.words()["form_reply_rate"], "Reply rate (forms)");
    }

    #[test]
    fn every_word_has_both_languages_and_keys_are_unique() {
        let mut keys = std::collections::HashSet::new();
        for (k, fr, en) in WORDS {
            assert!(keys.insert(k), "duplicate key {k}");
            assert!(!fr.is_empty() && !en.is_empty(), "{k}");
        }
    }
}
