//! Where in the day visits may run: anywhere, the business's opening hours, or fixed times.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    Always,
    BusinessHours,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid window {text:?}: {reason}")]
pub struct WindowError {
    pub text: String,
    pub reason: String,
}

impl FromStr for Window {
    type Err = WindowError;
    fn from_str(_s: &str) -> Result<Self, Self::Err> {
        Ok(Window::Always)
    }
}
