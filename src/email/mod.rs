//! The email channel: compose → send → inbox → (message, classify, correlate, quote) → score.

pub mod classify;
pub mod compose;
pub mod correlate;
pub mod inbox;
pub mod message;
pub mod quote;
pub mod reply;
pub mod send;
#[cfg(test)]
mod corpus;
