//! `mystery init [DIR]`: a commented starter configuration (`mystery.toml`) and branch list
//! (`branches.csv`) for a French network, which `mystery check` accepts once the secrets'
//! variables are set. Invariant: it never overwrites a file; when either exists, nothing is
//! written.

use anyhow::{bail, Context as _, Result};
use std::io::Write;
use std::path::Path;

/// The starter configuration, every section explained.
pub const CONFIG: &str = include_str!("init/mystery.toml");
/// The starter branch list, as a French spreadsheet saves it (`;`, French headers).
pub const BRANCHES: &str = include_str!("init/branches.csv");

/// Writes both files into `dir` (created if needed) and says what to do next.
pub fn init(dir: &Path, out: &mut dyn Write) -> Result<i32> {
    let files = [("mystery.toml", CONFIG), ("branches.csv", BRANCHES)];
    let existing: Vec<String> = files
        .iter()
        .map(|(name, _)| dir.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "{} already exist(s): nothing written (move it away, or choose another folder: `mystery init DIR`)",
            existing.join(" and ")
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        // create_new: a file that appeared since the look above is not overwritten either.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "written: {}", path.display())?;
    }
    writeln!(
        out,
        "next: put your servers, addresses and branches in them, set MYSTERY_SMTP_PASSWORD, \
         MYSTERY_IMAP_PASSWORD and MYSTERY_METRICS_TOKEN, then run `mystery check --config {}`",
        dir.join("mystery.toml").display()
    )?;
    Ok(0)
}
