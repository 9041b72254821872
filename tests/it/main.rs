//! The one integration-test binary: modules by subject, tests named as sentences.

mod call;
mod call_visit;
mod cli;
mod common;
mod config_check;
mod digest;
mod email_lab;
mod planning;
mod report;
mod secrets;
mod store;
mod tls;
