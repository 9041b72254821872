//! The one integration-test binary: modules by subject, tests named as sentences.

mod alerts;
mod browser;
mod call;
mod call_visit;
mod cli;
mod common;
mod config_check;
mod day_counts;
mod digest;
mod email_lab;
mod form;
mod governance;
mod import;
mod ingest;
mod operations;
mod planning;
mod report;
mod rollups;
mod secrets;
mod send_faults;
mod store;
mod tls;
mod transcribe;
mod trust;
mod web;
