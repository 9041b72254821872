//! Enquiry templates (MiniJinja over business, persona, visit), compiled and rendered.
//!
//! Owned by `config` so that `mystery check` can compile and render every scenario for every
//! business it targets without calling up into `email`; `email::compose` renders enquiries
//! through here. Invariant: a rendered subject never holds a CR or LF (header injection is
//! refused), an undefined variable is an error (never an empty string), nothing is
//! HTML-escaped, and the body is plain text the way a person's mail client sends it.

use super::{Business, Persona, Scenario};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// What the templates see as `visit`.
#[derive(Debug, Clone, Serialize)]
pub struct VisitContext {
    pub id: String,
    /// The short human-looking reference code, e.g. `K7QM-4Z`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub scenario: String,
    /// The local date of the visit in the business's time zone, `dd/mm/yyyy`.
    pub date: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("template {which}: {source}")]
    Template {
        which: &'static str,
        #[source]
        source: minijinja::Error,
    },
    #[error("field {key:?}: {source}")]
    Field {
        key: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("the subject would contain a line break (header injection refused): {0:?}")]
    HeaderInjection(String),
}

/// A fresh environment per template: templates come from the config and are few and small.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Enquiries are plain text; HTML escaping would show `&amp;` to the branch.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env
}

/// One compiled template with the enquiry settings (strict undefined, no escaping).
pub struct Template {
    env: Environment<'static>,
}

impl Template {
    const NAME: &'static str = "t";

    pub fn compile(source: &str) -> Result<Self, minijinja::Error> {
        let mut env = environment();
        env.add_template_owned(Self::NAME, source.to_owned())?;
        Ok(Self { env })
    }

    pub fn render(&self, ctx: &minijinja::Value) -> Result<String, minijinja::Error> {
        self.env.get_template(Self::NAME)?.render(ctx)
    }
}

/// Compiles a template alone, for `mystery check`.
pub fn compile_check(source: &str) -> Result<(), minijinja::Error> {
    Template::compile(source).map(|_| ())
}

pub fn render(
    scenario: &Scenario,
    business: &Business,
    persona: &Persona,
    visit: &VisitContext,
) -> Result<Rendered, ComposeError> {
    let ctx = minijinja::context! {
        business => business,
        persona => PersonaContext::from(persona),
        visit => visit,
    };
    let render = |which: &'static str, src: &str| {
        Template::compile(src)
            .and_then(|t| t.render(&ctx))
            .map_err(|source| ComposeError::Template { which, source })
    };
    let subject = render("subject", &scenario.subject)?;
    if subject.contains(['\r', '\n']) {
        return Err(ComposeError::HeaderInjection(subject));
    }
    let body = render("body", &scenario.body)?;
    Ok(Rendered {
        subject: subject.trim().to_owned(),
        body: normalise_body(&body),
    })
}

/// The values a form visit types, each field's template rendered over the same `business`,
/// `persona` and `visit` as an enquiry (an undefined variable is an error), in key order.
pub fn render_fields(
    scenario: &Scenario,
    business: &Business,
    persona: &Persona,
    visit: &VisitContext,
) -> Result<Vec<(String, String)>, ComposeError> {
    let ctx = minijinja::context! {
        business => business,
        persona => PersonaContext::from(persona),
        visit => visit,
    };
    scenario
        .fields
        .iter()
        .map(|(key, src)| {
            Template::compile(src)
                .and_then(|t| t.render(&ctx))
                .map(|v| (key.clone(), v.trim_end_matches('\n').to_owned()))
                .map_err(|source| ComposeError::Field {
                    key: key.clone(),
                    source,
                })
        })
        .collect()
}

#[derive(Serialize)]
struct PersonaContext<'a> {
    id: &'a str,
    name: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    email: &'a str,
    phone: Option<&'a str>,
}

impl<'a> From<&'a Persona> for PersonaContext<'a> {
    fn from(p: &'a Persona) -> Self {
        let (first, last) = p.name.split_once(' ').unwrap_or((&p.name, ""));
        Self {
            id: &p.id,
            name: &p.name,
            first_name: first,
            last_name: last,
            email: &p.email,
            phone: p.phone.as_deref(),
        }
    }
}

/// CRLF-agnostic, no trailing spaces (they would turn on format=flowed in some readers), one
/// final newline: the way a person's mail client sends plain text.
fn normalise_body(body: &str) -> String {
    let mut out: String = body
        .replace("\r\n", "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n");
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scenario(subject: &str, body: &str) -> Scenario {
        Scenario {
            id: "devis".into(),
            channel: super::super::Channel::Email,
            persona: "claire".into(),
            subject: subject.into(),
            body: body.into(),
            reply_deadline: Duration::from_secs(3600),
            expect: vec![],
            ring_timeout: Duration::from_secs(30),
            script: vec![],
            language: None,
            fields: vec![],
            typing_delay: Duration::ZERO,
        }
    }

    fn business(city: &str) -> Business {
        Business {
            id: "lille".into(),
            name: "Agence Lille & Co".into(),
            group: None,
            email: Some("contact@lille.test".into()),
            phone: None,
            timezone: chrono_tz::Europe::Paris,
            city: Some(city.into()),
            hours: None,
            hours_text: None,
            form_url: None,
            country: "FR".into(),
        }
    }

    fn persona() -> Persona {
        Persona {
            id: "claire".into(),
            name: "Claire Dupont".into(),
            email: "claire.dupont@robot.test".into(),
            phone: None,
            language: None,
        }
    }

    fn visit() -> VisitContext {
        VisitContext {
            id: "v1".into(),
            reference: "K7QM-4Z".into(),
            scenario: "devis".into(),
            date: "25/11/2026".into(),
        }
    }

    #[test]
    fn templates_see_business_persona_and_visit_without_html_escaping() {
        let s = scenario(
            "Demande de devis – {{ business.city }}",
            "Bonjour {{ business.name }},\nRéf. {{ visit.ref }}  \n{{ persona.first_name }}",
        );
        let r = render(&s, &business("Lille"), &persona(), &visit()).unwrap();
        assert_eq!(r.subject, "Demande de devis – Lille");
        assert_eq!(r.body, "Bonjour Agence Lille & Co,\nRéf. K7QM-4Z\nClaire\n");
    }

    #[test]
    fn a_value_that_would_break_the_subject_header_is_refused() {
        let s = scenario("Devis {{ business.city }}", "x");
        let err = render(
            &s,
            &business("Lille\r\nBcc: x@evil.test"),
            &persona(),
            &visit(),
        );
        assert!(matches!(err, Err(ComposeError::HeaderInjection(_))));
    }

    #[test]
    fn a_misspelt_variable_is_an_error_not_an_empty_string() {
        let s = scenario("Devis {{ business.cty }}", "x");
        assert!(render(&s, &business("Lille"), &persona(), &visit()).is_err());
    }
}
