//! Scores a reply's new text against a scenario's expectations, keeping the evidence.
//!
//! OWNER: email-analysis helper. Contract below.

use crate::email::quote::ReplyText;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Builtin {
    /// The reply uses the persona's name.
    Personalised,
    /// A signature with a name or a phone number.
    Signed,
    /// Replied within this time.
    AnswersWithin(Duration),
}

#[derive(Debug, Clone)]
pub enum Rule {
    Any(Vec<String>),
    All(Vec<String>),
    Regex(regex::Regex),
    /// Forbidden words: hit when none appears.
    None(Vec<String>),
    Builtin(Builtin),
}

#[derive(Debug, Clone)]
pub struct Expectation {
    pub id: String,
    pub rule: Rule,
    pub weight: u32,
}

pub struct ScoreInput<'a> {
    pub reply: &'a ReplyText,
    pub persona_name: &'a str,
    pub time_to_reply: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    pub id: String,
    pub hit: bool,
    pub weight: u32,
    /// The snippet that decided (a few words around the match), or why it missed.
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    /// 0–100: 100 × Σ weight of hits / Σ weights (100 when there are no rules).
    pub score: f64,
    pub rules: Vec<RuleOutcome>,
}

pub fn score(_expect: &[Expectation], _input: &ScoreInput<'_>) -> Scorecard {
    todo!("email-analysis helper")
}
