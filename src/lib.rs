//! mystery: remote mystery-contact visits over email and phone, measured and reported.
//!
//! The modules follow the data flow of DESIGN.md: `config` → `schedule` → `store` →
//! `dispatch` → `visit` (email/call/form) → `score` → `report` / `digest` / `web` (dashboard and /metrics).

#![warn(rust_2018_idioms, unsafe_code, unused_lifetimes)]

pub mod alert;
pub mod call;
pub mod clock;
pub mod commands;
pub mod config;
mod context;
pub mod digest;
pub mod dispatch;
pub mod duration;
pub mod email;
pub mod fault;
pub mod form;
#[cfg(test)]
mod hostile;
pub mod import;
pub mod init;
pub mod outage;
pub mod quote;
pub mod report;
pub mod schedule;
pub mod score;
pub mod secret;
pub mod store;
pub mod text;
pub mod transcribe;
pub mod transcript;
pub mod visit;
pub mod web;
pub use context::Context;
