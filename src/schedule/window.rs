//! Where in the day visits may run: anywhere, the business's opening hours, or fixed times.
//!
//! Invariant: a window is always evaluated in the business's time zone, and resolves to
//! either "no constraint" or one `Hours` value, so the planner has a single rule to apply.

use super::hours::Hours;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// `always` / `any`: no constraint.
    Always,
    /// `business-hours`: the business's own opening hours; always, if it has none.
    BusinessHours,
    /// `09:00-17:00` (every day) or any opening-hours text (`Mon-Fri 10:00-16:00`), in the
    /// business's time zone, whatever its opening hours.
    Fixed(Hours),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid window {text:?}: {reason}")]
pub struct WindowError {
    pub text: String,
    pub reason: String,
}

impl Window {
    /// The hours a visit to a business with `business_hours` must fall in; `None` when
    /// unconstrained (including 24/7 hours).
    pub fn allowed<'a>(&'a self, business_hours: Option<&'a Hours>) -> Option<&'a Hours> {
        let hours = match self {
            Window::Always => None,
            Window::BusinessHours => business_hours,
            Window::Fixed(hours) => Some(hours),
        };
        hours.filter(|h| !h.is_always())
    }
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "always" | "any" => Ok(Window::Always),
            "business-hours" | "business_hours" => Ok(Window::BusinessHours),
            _ => s
                .parse()
                .map(Window::Fixed)
                .map_err(|e: super::hours::HoursError| WindowError {
                    text: s.into(),
                    reason: format!(
                    "expected \"always\", \"business-hours\" or times like \"09:00-17:00\" ({})",
                    e.reason
                ),
                }),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Always => f.write_str("always"),
            Window::BusinessHours => f.write_str("business-hours"),
            Window::Fixed(hours) => write!(f, "{hours}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_times_parse() {
        assert_eq!(
            "business-hours".parse::<Window>().ok(),
            Some(Window::BusinessHours)
        );
        assert_eq!(" Always ".parse::<Window>().ok(), Some(Window::Always));
        assert_eq!("any".parse::<Window>().ok(), Some(Window::Always));
        let fixed = "09:00-17:00".parse::<Window>().ok();
        assert_eq!(
            fixed,
            "Mon-Sun 09:00-17:00"
                .parse::<Hours>()
                .ok()
                .map(Window::Fixed)
        );
        assert!(matches!(
            "Mon-Fri 10:00-16:00".parse::<Window>(),
            Ok(Window::Fixed(_))
        ));
    }

    #[test]
    fn a_bad_window_says_what_is_expected() {
        let err = "business hours!"
            .parse::<Window>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("expected \"always\", \"business-hours\""),
            "{err}"
        );
        assert!(err.contains("\"business hours!\""), "{err}");
    }

    #[test]
    fn business_hours_without_hours_and_24_7_mean_unconstrained() {
        let hours: Hours = "Mon-Fri 09:00-18:00"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Window::BusinessHours.allowed(Some(&hours)), Some(&hours));
        assert_eq!(Window::BusinessHours.allowed(None), None);
        assert_eq!(Window::BusinessHours.allowed(Some(&Hours::always())), None);
        assert_eq!(Window::Always.allowed(Some(&hours)), None);
    }
}
