//! The one integration-test binary: modules by subject, tests named as sentences.

mod common;
mod config_check;
mod digest;
mod email_lab;
mod report;
mod store;
