//! Web-form visits (*internaute mystère*, DESIGN.md "Web-form visits"): the branch's contact
//! form filled in a real headless Chromium over WebDriver, then the answer waited for by email
//! like an email visit's.
//!
//! Reading layers, lowest first: `fields` (which value in which control, pure) and `verdict`
//! (what the page says after a click, pure) ← `browser` (chromedriver and sessions) ←
//! `session` (one visit, start to end). `visit.rs` records each step in the store.

pub mod browser;
pub mod fields;
pub mod session;
pub mod verdict;

pub use browser::{Browser, BrowserSettings};
pub use fields::Values;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What one form visit is asked to do.
#[derive(Debug, Clone)]
pub struct FormJob {
    /// The branch's `form_url`.
    pub url: String,
    pub values: Values,
    pub typing_delay: Duration,
    /// Bound on each page load and on the wait for the site's answer after a click.
    pub page_timeout: Duration,
    /// Where screenshots go (`recordings_dir`); None takes none.
    pub screenshot_dir: Option<PathBuf>,
    /// Names the screenshot files (the visit id).
    pub name: String,
}

/// How a form visit ended on the page (DESIGN.md's form outcomes before any reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormOutcome {
    /// The site confirmed: the visit now waits for the answer by email.
    Submitted,
    FormFailed,
    FormBlocked,
    Unreachable,
    /// Our side: the browser or its driver.
    Failed,
}

impl FormOutcome {
    /// The visit outcome; `Submitted` has none yet (the reply decides).
    pub fn as_str(self) -> &'static str {
        match self {
            FormOutcome::Submitted => "submitted",
            FormOutcome::FormFailed => "form_failed",
            FormOutcome::FormBlocked => "form_blocked",
            FormOutcome::Unreachable => "unreachable",
            FormOutcome::Failed => "failed",
        }
    }
}

/// A screenshot taken during the visit.
#[derive(Debug, Clone)]
pub struct Shot {
    /// `form` (filled, before a click) or `result` (what the site showed after).
    pub kind: String,
    pub path: PathBuf,
    pub taken: Instant,
}

#[derive(Debug, Clone, Default)]
pub struct FormReport {
    /// None: the visit was given up before the first click (its claim was lost).
    pub outcome: Option<FormOutcome>,
    /// The page's own words: the confirmation, the error, the CAPTCHA seen.
    pub message: Option<String>,
    /// Our side's failure.
    pub error: Option<String>,
    /// When the confirmation was seen.
    pub submitted_at: Option<Instant>,
    /// When the first button was pressed.
    pub clicked_at: Option<Instant>,
    pub screenshots: Vec<Shot>,
    /// (key, field label) of every control filled, in order.
    pub filled: Vec<(String, String)>,
    /// Required fields left empty for want of a value.
    pub missing: Vec<String>,
    /// Fields left empty on purpose (hidden or "leave empty").
    pub honeypots: usize,
    /// Pages of the form (1 for a one-page form).
    pub steps: usize,
}
