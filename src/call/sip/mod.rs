//! SIP signalling: transport → transaction → dialog, with digest auth; `call` runs one call
//! through them and `target` says where it goes.
//!
//! Invariant: peer input flows upward only through `message::parse`, so every layer above it
//! sees well-formed `rsip` messages or nothing.

pub mod auth;
pub mod call;
#[cfg(test)]
mod corpus;
pub mod dialog;
#[cfg(test)]
mod hostile;
pub mod message;
pub mod target;
pub mod transaction;
pub mod transport;
