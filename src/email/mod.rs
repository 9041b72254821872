//! The email channel: compose → send → inbox → (message, classify, correlate, quote) → score.

pub mod classify;
pub mod compose;
#[cfg(test)]
mod corpus;
pub mod correlate;
pub mod inbox;
pub mod message;
pub mod quote;
pub mod send;
