//! Periodic digests for groups (issue 4): aggregation, rendering and sending.

use crate::Context;
use std::sync::Arc;

/// One round of digest work for the daemon: sends the digests that are due.
pub async fn step(_cx: &Arc<Context>) -> anyhow::Result<()> {
    Ok(())
}

/// `mystery digest GROUP [--send | --preview FILE]`.
pub async fn command(
    _config: &std::path::Path,
    group: &str,
    _send: bool,
    _preview: Option<&std::path::Path>,
    _out: &mut dyn std::io::Write,
) -> anyhow::Result<i32> {
    anyhow::bail!("digests are not built yet (issue 4); group {group:?}")
}
