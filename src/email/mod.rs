//! The email channel: compose → send → inbox → (message, classify, correlate, quote) → score.
//!
//! Reading layers, lowest first: `dsn` (delivery reports) ← `message` (parse) ← `classify`,
//! `correlate`, `quote` ← `reply` (one arrival, start to end). A module only calls down.

pub mod classify;
pub mod compose;
#[cfg(test)]
mod corpus;
pub mod correlate;
pub mod dsn;
pub mod inbox;
pub mod message;
pub mod reply;
pub mod send;
