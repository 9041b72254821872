//! Named fault points for the crash tests, compiled in only with the `fault-injection` feature
//! (which the test build turns on through the crate's dev-dependency on itself): a release
//! build carries no hook, and the code of a step never tests for a fault itself.

/// Set in the environment of a build with `fault-injection`, makes the process abort right
/// after an SMTP server's 250 to the final dot, before anyone records it (as `kill -9` would).
pub const ABORT_AFTER_SEND: &str = "MYSTERY_FAULT_ABORT_AFTER_SEND";

/// The server has just accepted a message and the caller does not know yet.
#[inline]
pub fn after_smtp_accepted() {
    #[cfg(feature = "fault-injection")]
    if std::env::var_os(ABORT_AFTER_SEND).is_some() {
        std::process::abort();
    }
}
