//! The one integration-test binary: modules by subject, tests named as sentences.

mod common;
mod cli;
mod config_check;
mod email_lab;
mod store;
