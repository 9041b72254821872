//! Which value goes in which field: pure matching of the page's controls (as `page.js`
//! describes them) against the scenario's values, the way a person reads a form.
//!
//! Invariants: a field the visitor cannot see (hidden, zero-sized, off-screen, under
//! `aria-hidden`) or that asks to be left empty is never filled (honeypots); a password is never
//! typed; a consent box (RGPD) or any required box is ticked, an optional one (newsletter) is
//! not; a key of `fields` that is not canonical is matched literally against a field's name, id
//! or label before any synonym, so a scenario can always name a field exactly.

use crate::text::fold;
use serde::Deserialize;

/// One control of the page, as `page.js` `describe()` returns it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct FieldInfo {
    /// Position in `document.querySelectorAll("input, textarea, select")`.
    pub index: usize,
    pub tag: String,
    /// `text`, `email`, `tel`, `checkbox`, `radio`, `hidden`, `submit`…, `textarea`, `select`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub id: String,
    pub label: String,
    pub aria: String,
    pub placeholder: String,
    pub title: String,
    pub autocomplete: String,
    pub required: bool,
    pub visible: bool,
    pub disabled: bool,
    pub value: String,
    pub checked: bool,
    pub options: Vec<OptionInfo>,
    /// Radio buttons: the question of the group (legend, group label).
    pub group: String,
    /// Index of its form in `document.forms`, -1 outside any.
    pub form: i64,
    pub tabindex: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OptionInfo {
    pub text: String,
    pub value: String,
    pub disabled: bool,
}

/// The canonical keys of a form scenario's `fields` (README, "Form scenarios").
pub const CANONICAL: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "subject",
    "message",
    "zip",
    "city",
];

/// What to do to one control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Type `value` into a text field or text area.
    Type {
        index: usize,
        key: String,
        value: String,
    },
    /// Pick the option at `option` (index into the select's options).
    Select {
        index: usize,
        key: String,
        option: usize,
    },
    /// Tick a check box (consent, or required).
    Check { index: usize, why: String },
    /// Click one radio button of a group.
    Choose { index: usize, key: String },
}

impl Action {
    pub fn index(&self) -> usize {
        match self {
            Action::Type { index, .. }
            | Action::Select { index, .. }
            | Action::Check { index, .. }
            | Action::Choose { index, .. } => *index,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Fields left empty on purpose: invisible or "leave this empty" (honeypots).
    pub honeypots: Vec<usize>,
    /// Visible required fields no value was found for (their label).
    pub missing: Vec<String>,
}

/// The values a visit has to type: the scenario's rendered `fields`, then the persona's for
/// the canonical keys the scenario leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub entries: Vec<(String, String)>,
}

impl Values {
    /// `fields` first; `name`, `first_name`, `last_name`, `email`, `phone` completed from the
    /// persona (a given `name` also gives the first and last names, split at the first space).
    pub fn new(
        fields: Vec<(String, String)>,
        persona_name: &str,
        email: &str,
        phone: Option<&str>,
    ) -> Self {
        let mut entries = fields;
        let has = |e: &Vec<(String, String)>, k: &str| e.iter().any(|(x, _)| x == k);
        let full = entries
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| persona_name.to_owned());
        let (first, last) = full.split_once(' ').unwrap_or((full.as_str(), ""));
        let (first, last) = (first.to_owned(), last.trim().to_owned());
        let mut add = |k: &str, v: String| {
            if !has(&entries, k) && !v.is_empty() {
                entries.push((k.to_owned(), v));
            }
        };
        add("name", full.clone());
        add("first_name", first);
        add("last_name", last);
        add("email", email.to_owned());
        add("phone", phone.unwrap_or_default().to_owned());
        Values { entries }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Folded words of a text: lower case, no accents, every non-alphanumeric a separator, and
/// `camelCase` / `snake_case` names split (`firstName` → `first name`).
pub fn words(text: &str) -> String {
    let mut spaced = String::with_capacity(text.len() + 8);
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_uppercase() && prev_lower {
            spaced.push(' ');
        }
        prev_lower = c.is_lowercase();
        spaced.push(c);
    }
    fold(&spaced)
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `phrase` (folded words) as whole words of `text` (folded words).
fn has_phrase(text: &str, phrase: &str) -> bool {
    !phrase.is_empty() && format!(" {text} ").contains(&format!(" {phrase} "))
}

/// Synonyms per canonical key, most specific first (checked in this order, the first hit
/// wins): French and English, as labels, placeholders, names and ids write them.
const SYNONYMS: &[(&str, &[&str])] = &[
    (
        "name",
        &[
            "nom complet",
            "nom et prenom",
            "nom prenom",
            "prenom et nom",
            "prenom nom",
            "full name",
            "fullname",
            "your name",
            "votre nom",
            "nom prenoms",
        ],
    ),
    (
        "first_name",
        &[
            "prenom",
            "first name",
            "firstname",
            "given name",
            "fname",
            "forename",
        ],
    ),
    (
        "last_name",
        &[
            "nom de famille",
            "last name",
            "lastname",
            "surname",
            "family name",
            "lname",
        ],
    ),
    (
        "email",
        &[
            "courriel",
            "e mail",
            "email",
            "mail",
            "adresse electronique",
            "adresse mail",
            "mel",
            "mail address",
        ],
    ),
    (
        "phone",
        &[
            "telephone",
            "tel",
            "phone",
            "mobile",
            "portable",
            "gsm",
            "numero de telephone",
            "phone number",
            "telefone",
        ],
    ),
    (
        "zip",
        &[
            "code postal",
            "cp",
            "zip",
            "zipcode",
            "postal code",
            "postcode",
            "postal",
        ],
    ),
    ("city", &["ville", "city", "commune", "localite", "town"]),
    (
        "subject",
        &[
            "objet",
            "sujet",
            "subject",
            "motif",
            "type de demande",
            "nature de la demande",
            "topic",
            "raison",
        ],
    ),
    (
        "message",
        &[
            "message",
            "votre message",
            "demande",
            "votre demande",
            "commentaire",
            "commentaires",
            "comment",
            "comments",
            "question",
            "questions",
            "enquiry",
            "inquiry",
            "precisions",
            "details",
            "remarques",
        ],
    ),
    // "Nom" alone: a full name, or the last name when the form also asks for the first name
    // (resolved in `plan`).
    ("nom", &["nom", "name", "nom usuel"]),
];

/// Labels that name something else than the person (a company name is not "Nom").
const NOT_THE_PERSON: &[&str] = &[
    "societe",
    "entreprise",
    "company",
    "raison sociale",
    "organisation",
    "organization",
    "etablissement",
    "enseigne",
    "agence",
    "magasin",
    "username",
    "utilisateur",
    "identifiant",
    "login",
    "mot de passe",
    "password",
    "recherche",
    "search",
    "captcha",
    "code de securite",
];

/// What a honeypot says to people (and not to robots that read names only).
const LEAVE_EMPTY: &[&str] = &[
    "laissez ce champ vide",
    "laisser ce champ vide",
    "laisser vide",
    "laissez vide",
    "ne pas remplir",
    "ne remplissez pas",
    "leave this field empty",
    "leave this field blank",
    "leave empty",
    "leave blank",
    "do not fill",
    "dont fill",
    "don t fill",
    "honeypot",
    "if you are human",
];

/// Boxes a person ticks to be allowed to send: data protection, terms.
const CONSENT: &[&str] = &[
    "rgpd",
    "gdpr",
    "j accepte",
    "accepte",
    "consens",
    "consent",
    "donnees personnelles",
    "politique de confidentialite",
    "confidentialite",
    "privacy",
    "conditions generales",
    "cgu",
    "cgv",
    "terms",
    "i agree",
    "agree",
    "autorise",
    "mentions legales",
    "traitement de mes donnees",
];

/// Boxes a person leaves alone unless required: marketing.
const OPTIONAL_BOX: &[&str] = &[
    "newsletter",
    "offres",
    "offers",
    "promotions",
    "partenaires",
    "partners",
    "marketing",
    "sms",
    "lettre d information",
];

/// The texts of a field, most telling first: what a person reads, then what a developer wrote.
fn texts(f: &FieldInfo) -> Vec<String> {
    [
        &f.label,
        &f.aria,
        &f.placeholder,
        &f.title,
        &f.autocomplete,
        &f.name,
        &f.id,
    ]
    .iter()
    .map(|t| words(t))
    .filter(|t| !t.is_empty())
    .collect()
}

fn any_phrase(text: &str, list: &[&str]) -> bool {
    list.iter().any(|p| has_phrase(text, p))
}

/// The canonical key a field asks for, by its texts then its type (`nom` unresolved).
fn canonical_of(f: &FieldInfo) -> Option<&'static str> {
    let ts = texts(f);
    if ts.iter().any(|t| any_phrase(t, NOT_THE_PERSON)) {
        return None;
    }
    // Autocomplete tokens are exact (HTML's autofill names).
    let ac = f.autocomplete.to_ascii_lowercase();
    let by_autocomplete = match ac.split_whitespace().last().unwrap_or("") {
        "name" => Some("name"),
        "given-name" => Some("first_name"),
        "family-name" => Some("last_name"),
        "email" => Some("email"),
        "tel" | "tel-national" => Some("phone"),
        "postal-code" => Some("zip"),
        "address-level2" => Some("city"),
        _ => None,
    };
    if by_autocomplete.is_some() {
        return by_autocomplete;
    }
    for t in &ts {
        for (key, list) in SYNONYMS {
            if any_phrase(t, list) {
                return Some(key);
            }
        }
    }
    match f.kind.as_str() {
        "email" => Some("email"),
        "tel" => Some("phone"),
        "textarea" => Some("message"),
        _ => None,
    }
}

/// A key of `fields` that is not canonical, matched literally: the field's name or id equal to
/// it, or its label (or placeholder, ARIA label) holding it as words.
fn literal_match(f: &FieldInfo, key: &str) -> bool {
    if f.name == key || f.id == key {
        return true;
    }
    let k = words(key);
    if k.is_empty() {
        return false;
    }
    [&f.label, &f.aria, &f.placeholder, &f.group, &f.name, &f.id]
        .iter()
        .any(|t| has_phrase(&words(t), &k))
}

fn is_text_like(f: &FieldInfo) -> bool {
    f.tag == "textarea"
        || (f.tag == "input"
            && matches!(
                f.kind.as_str(),
                "text" | "email" | "tel" | "search" | "url" | "number" | "" | "date"
            ))
}

/// Left empty on purpose: a person cannot see it, or is told to leave it empty.
fn is_honeypot(f: &FieldInfo) -> bool {
    !f.visible || texts(f).iter().any(|t| any_phrase(t, LEAVE_EMPTY))
}

/// The option of a select that says `value`: same text, or one holding the other.
fn pick_option(f: &FieldInfo, value: &str) -> Option<usize> {
    let v = words(value);
    if v.is_empty() {
        return None;
    }
    let usable = |o: &&OptionInfo| !o.disabled && !o.value.trim().is_empty();
    let opts: Vec<(usize, &OptionInfo)> = f
        .options
        .iter()
        .enumerate()
        .filter(|(_, o)| usable(o))
        .collect();
    opts.iter()
        .find(|(_, o)| words(&o.text) == v || words(&o.value) == v)
        .or_else(|| {
            opts.iter().find(|(_, o)| {
                let t = words(&o.text);
                !t.is_empty() && (has_phrase(&v, &t) || has_phrase(&t, &v))
            })
        })
        .map(|(i, _)| *i)
}

/// The first real choice of a required select (not "Choisir…", not an empty value).
fn first_real_option(f: &FieldInfo) -> Option<usize> {
    f.options
        .iter()
        .position(|o| !o.disabled && !o.value.trim().is_empty())
}

/// Decides what to do to every control of one document (or frame).
pub fn plan(fields: &[FieldInfo], values: &Values) -> Plan {
    let mut out = Plan::default();
    let literal_keys: Vec<&(String, String)> = values
        .entries
        .iter()
        .filter(|(k, _)| !CANONICAL.contains(&k.as_str()))
        .collect();
    let usable: Vec<&FieldInfo> = fields
        .iter()
        .filter(|f| !f.disabled && f.kind != "hidden" && f.kind != "password")
        .filter(|f| {
            !matches!(
                f.kind.as_str(),
                "submit" | "button" | "image" | "reset" | "file"
            )
        })
        .collect();
    for f in &usable {
        if is_honeypot(f) {
            out.honeypots.push(f.index);
        }
    }
    let live: Vec<&FieldInfo> = usable.into_iter().filter(|f| !is_honeypot(f)).collect();
    // "Nom" is the last name when the same form asks for a first name, else the full name.
    let asks_first_name = live.iter().any(|f| canonical_of(f) == Some("first_name"));
    let mut radio_groups_done: Vec<String> = Vec::new();
    for f in &live {
        let literal = literal_keys.iter().find(|(k, _)| literal_match(f, k));
        let canonical = canonical_of(f).map(|k| match k {
            "nom" if asks_first_name => "last_name",
            "nom" => "name",
            k => k,
        });
        let wanted: Option<(String, String)> = match literal {
            Some((k, v)) => Some((k.clone(), v.clone())),
            None => canonical.and_then(|k| values.get(k).map(|v| (k.to_owned(), v.to_owned()))),
        };
        match f.kind.as_str() {
            "checkbox" => {
                if f.checked {
                    continue;
                }
                let ts = texts(f).join(" ");
                let truthy = wanted.as_ref().is_some_and(|(_, v)| {
                    matches!(words(v).as_str(), "oui" | "yes" | "true" | "1" | "on" | "x")
                });
                if truthy {
                    out.actions.push(Action::Check {
                        index: f.index,
                        why: "asked".into(),
                    });
                } else if wanted.is_some() && literal.is_some() {
                    // Named in `fields` with a false value: left alone.
                } else if any_phrase(&ts, CONSENT) && !any_phrase(&ts, OPTIONAL_BOX) {
                    out.actions.push(Action::Check {
                        index: f.index,
                        why: "consent".into(),
                    });
                } else if f.required {
                    out.actions.push(Action::Check {
                        index: f.index,
                        why: "required".into(),
                    });
                }
            }
            "radio" => {
                let group = if f.name.is_empty() {
                    f.group.clone()
                } else {
                    f.name.clone()
                };
                if radio_groups_done.contains(&group) {
                    continue;
                }
                let members: Vec<&&FieldInfo> = live
                    .iter()
                    .filter(|g| {
                        g.kind == "radio"
                            && (if f.name.is_empty() {
                                g.group == f.group
                            } else {
                                g.name == f.name
                            })
                    })
                    .collect();
                if members.iter().any(|m| m.checked) {
                    radio_groups_done.push(group);
                    continue;
                }
                let key_value = literal_keys
                    .iter()
                    .find(|(k, _)| f.name == *k || has_phrase(&words(&f.group), &words(k)))
                    .map(|(k, v)| (k.clone(), v.clone()));
                let chosen = key_value.as_ref().and_then(|(_, v)| {
                    let v = words(v);
                    members
                        .iter()
                        .find(|m| words(&m.label) == v || words(&m.value) == v)
                        .or_else(|| members.iter().find(|m| has_phrase(&words(&m.label), &v)))
                });
                let required = members.iter().any(|m| m.required);
                let pick = chosen.or(if required { members.first() } else { None });
                if let Some(m) = pick {
                    let key = key_value
                        .map(|(k, _)| k)
                        .unwrap_or_else(|| "required".into());
                    out.actions.push(Action::Choose {
                        index: m.index,
                        key,
                    });
                } else if required {
                    out.missing.push(f.group.clone());
                }
                radio_groups_done.push(group);
            }
            "select" => {
                let choice = match &wanted {
                    Some((k, v)) => pick_option(f, v).map(|o| (k.clone(), o)),
                    None => None,
                };
                let choice = choice.or_else(|| {
                    f.required
                        .then(|| first_real_option(f))
                        .flatten()
                        .map(|o| ("required".to_owned(), o))
                });
                match choice {
                    Some((key, option)) => out.actions.push(Action::Select {
                        index: f.index,
                        key,
                        option,
                    }),
                    None if f.required => out.missing.push(label_of(f)),
                    None => {}
                }
            }
            _ if is_text_like(f) => match wanted {
                // Already holding the value (a site that remembers it): left as it is.
                Some((_, value)) if !value.is_empty() && f.value.trim() == value.trim() => {}
                Some((key, value)) if !value.is_empty() => {
                    out.actions.push(Action::Type {
                        index: f.index,
                        key,
                        value,
                    });
                }
                _ if f.required && f.value.trim().is_empty() => out.missing.push(label_of(f)),
                _ => {}
            },
            _ => {}
        }
    }
    out
}

/// How a field is named to a person (for `missing`).
pub fn label_of(f: &FieldInfo) -> String {
    [&f.label, &f.aria, &f.placeholder, &f.name, &f.id]
        .iter()
        .find(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| format!("field {}", f.index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(index: usize, kind: &str, label: &str) -> FieldInfo {
        FieldInfo {
            index,
            tag: if kind == "textarea" || kind == "select" {
                kind.into()
            } else {
                "input".into()
            },
            kind: kind.into(),
            label: label.into(),
            visible: true,
            form: 0,
            ..FieldInfo::default()
        }
    }

    fn values() -> Values {
        Values::new(
            vec![("message".into(), "Bonjour, Réf. K7QM-4Z".into())],
            "Claire Dupont",
            "claire.dupont@robot.test",
            Some("+33612345678"),
        )
    }

    fn typed(p: &Plan) -> Vec<(usize, String)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Type { index, key, .. } => Some((*index, key.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn words_fold_accents_case_and_developer_names() {
        assert_eq!(words("Prénom*"), "prenom");
        assert_eq!(words("firstName"), "first name");
        assert_eq!(words("contact_e-mail[0]"), "contact e mail 0");
        assert_eq!(words("  Adresse  électronique : "), "adresse electronique");
    }

    #[test]
    fn nom_is_the_last_name_beside_a_first_name_and_the_full_name_alone() {
        let with_first = [field(0, "text", "Prénom"), field(1, "text", "Nom")];
        assert_eq!(
            typed(&plan(&with_first, &values())),
            vec![(0, "first_name".into()), (1, "last_name".into())]
        );
        let alone = [field(0, "text", "Nom")];
        assert_eq!(typed(&plan(&alone, &values())), vec![(0, "name".into())]);
        let company = [field(0, "text", "Nom de la société")];
        assert!(plan(&company, &values()).actions.is_empty());
    }

    #[test]
    fn a_literal_key_wins_over_synonyms() {
        let mut f = field(0, "text", "Nom de la société");
        f.name = "company".into();
        let v = Values::new(
            vec![("company".into(), "ACME".into())],
            "Claire Dupont",
            "c@r.test",
            None,
        );
        assert_eq!(
            plan(&[f], &v).actions,
            vec![Action::Type {
                index: 0,
                key: "company".into(),
                value: "ACME".into()
            }]
        );
    }

    #[test]
    fn hidden_and_leave_empty_fields_are_honeypots_and_never_filled() {
        let mut hidden = field(0, "text", "Website");
        hidden.visible = false;
        let told = field(1, "text", "Laissez ce champ vide");
        let p = plan(&[hidden, told, field(2, "email", "")], &values());
        assert_eq!(p.honeypots, vec![0, 1]);
        assert_eq!(typed(&p), vec![(2, "email".into())]);
    }

    #[test]
    fn consent_and_required_boxes_are_ticked_and_a_newsletter_is_not() {
        let consent = field(
            0,
            "checkbox",
            "J'accepte que mes données soient traitées (RGPD)",
        );
        let news = field(1, "checkbox", "Je souhaite recevoir la newsletter");
        let mut req = field(2, "checkbox", "Je certifie");
        req.required = true;
        let p = plan(&[consent, news, req], &values());
        let ticked: Vec<usize> = p.actions.iter().map(Action::index).collect();
        assert_eq!(ticked, vec![0, 2]);
    }

    #[test]
    fn selects_are_chosen_by_visible_text_and_radios_by_label() {
        let mut s = field(0, "select", "Objet de votre demande");
        s.options = vec![
            OptionInfo {
                text: "Choisissez…".into(),
                value: "".into(),
                disabled: false,
            },
            OptionInfo {
                text: "Réclamation".into(),
                value: "r".into(),
                disabled: false,
            },
            OptionInfo {
                text: "Demande de devis".into(),
                value: "d".into(),
                disabled: false,
            },
        ];
        let mut r1 = field(1, "radio", "Madame");
        r1.name = "civ".into();
        r1.group = "Civilité".into();
        r1.required = true;
        let mut r2 = field(2, "radio", "Monsieur");
        r2.name = "civ".into();
        r2.group = "Civilité".into();
        let v = Values::new(
            vec![
                ("subject".into(), "Demande de devis".into()),
                ("civilite".into(), "Madame".into()),
            ],
            "Claire Dupont",
            "c@r.test",
            None,
        );
        let p = plan(&[s, r1, r2], &v);
        assert_eq!(
            p.actions,
            vec![
                Action::Select {
                    index: 0,
                    key: "subject".into(),
                    option: 2
                },
                Action::Choose {
                    index: 1,
                    key: "civilite".into()
                },
            ]
        );
    }

    #[test]
    fn a_required_field_without_a_value_is_reported_missing() {
        let mut f = field(0, "text", "Code postal");
        f.required = true;
        let p = plan(&[f], &values());
        assert_eq!(p.missing, vec!["Code postal".to_owned()]);
    }
}
