//! Column names as people write them, in French or English, with or without accents, case,
//! underscores or punctuation → the field they mean. A name that means nothing here is kept
//! as an unknown column (a warning), never dropped silently.

use super::Field;
use unicode_normalization::UnicodeNormalization;

/// The field a header names, if any.
pub fn field_of(header: &str) -> Option<Field> {
    let key = normalise(header);
    ALIASES
        .iter()
        .find(|(_, names)| names.contains(&key.as_str()))
        .map(|(f, _)| *f)
}

/// Lower case, accents dropped, any run of other characters one space: "Code Agence",
/// "code_agence" and "CODE-AGENCE " all read "code agence"; "Téléphone" reads "telephone".
pub fn normalise(header: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in header.nfd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

const ALIASES: &[(Field, &[&str])] = &[
    (
        Field::Id,
        &[
            "id",
            "code",
            "code agence",
            "code site",
            "code magasin",
            "identifiant",
            "ref",
            "reference",
            "branch id",
        ],
    ),
    (
        Field::Name,
        &[
            "name",
            "nom",
            "agence",
            "nom agence",
            "nom de l agence",
            "magasin",
            "site",
            "enseigne",
            "raison sociale",
            "branch",
            "branch name",
        ],
    ),
    (
        Field::Group,
        &["group", "groupe", "reseau", "region", "network"],
    ),
    (
        Field::Email,
        &[
            "email",
            "e mail",
            "courriel",
            "mail",
            "adresse email",
            "adresse e mail",
            "adresse mail",
            "email address",
        ],
    ),
    (
        Field::Phone,
        &[
            "phone",
            "telephone",
            "tel",
            "numero",
            "numero de telephone",
            "telephone fixe",
            "phone number",
        ],
    ),
    (
        Field::Timezone,
        &["timezone", "time zone", "tz", "fuseau", "fuseau horaire"],
    ),
    (
        Field::City,
        &["city", "ville", "commune", "localite", "town"],
    ),
    (
        Field::Hours,
        &[
            "hours",
            "horaires",
            "horaires d ouverture",
            "heures d ouverture",
            "opening hours",
        ],
    ),
    (
        Field::FormUrl,
        &[
            "form url",
            "formulaire",
            "url formulaire",
            "url du formulaire",
            "formulaire de contact",
            "contact form",
            "form",
        ],
    ),
    (Field::Country, &["country", "pays", "code pays"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_and_english_names_are_read_whatever_their_case_and_accents() {
        for (header, field) in [
            ("Code agence", Field::Id),
            ("CODE_AGENCE", Field::Id),
            ("Nom", Field::Name),
            ("Réseau", Field::Group),
            ("E-mail", Field::Email),
            ("Courriel", Field::Email),
            ("Téléphone", Field::Phone),
            ("Tél.", Field::Phone),
            ("Fuseau horaire", Field::Timezone),
            ("Ville", Field::City),
            ("Horaires d'ouverture", Field::Hours),
            ("form_url", Field::FormUrl),
            ("Formulaire", Field::FormUrl),
            ("Pays", Field::Country),
        ] {
            assert_eq!(field_of(header), Some(field), "{header}");
        }
        assert_eq!(field_of("Fax"), None);
    }
}
