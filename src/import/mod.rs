//! `mystery import FILE` and `mystery export branches`: a branch list kept in a spreadsheet
//! ↔ the businesses imported into the store.
//!
//! An import is one change, read in full before anything is written: every row validated
//! like a `[[businesses]]` table, the change printed line by line, then applied in one
//! transaction — all rows or none, unless `--partial` keeps the good ones. Exit 0 when every
//! row was good, 2 when any was rejected (STYLE.md 7), 1 when the import failed.

pub mod change;
pub mod export;

use crate::clock::Clock;
use crate::commands::EXIT_PARTIAL;
use crate::config::branch_list::{self, Field, Location, Problem};
use crate::config::{self, Business};
use crate::Context;
use anyhow::Result;
use change::Change;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use export::{export_branches, ExportArgs, ExportFormat};

#[derive(Debug, Clone, Default)]
pub struct ImportArgs {
    pub file: PathBuf,
    /// The sheet of a spreadsheet (default: the first).
    pub sheet: Option<String>,
    /// Print the change; write nothing.
    pub dry_run: bool,
    /// Import the good rows even when some are rejected.
    pub partial: bool,
    /// Archive imported businesses that are not in the file.
    pub prune: bool,
}

/// `mystery import`: read, validate, plan, print, apply. Returns the exit code.
pub async fn import(config_path: &Path, args: &ImportArgs, out: &mut dyn Write) -> Result<i32> {
    let list = branch_list::read(&args.file, args.sheet.as_deref())?;
    // The configuration may already name the branches of this list (a schedule's targets).
    let incoming = list
        .rows
        .iter()
        .filter_map(|r| {
            let mut b = config::Business::placeholder(r.get(Field::Id)?);
            b.email = r.get(Field::Email).map(str::to_owned);
            b.phone = r.get(Field::Phone).map(str::to_owned);
            b.form_url = r.get(Field::FormUrl).map(str::to_owned);
            Some(b)
        })
        .collect();
    let cx = Context::open_with(config_path, Clock::system(), incoming).await?;
    let file = args.file.display().to_string();
    writeln!(out, "{file}: {} rows ({})", list.rows.len(), list.format)?;
    for w in &list.warnings {
        writeln!(out, "{file}:{}: warning: {}", w.at, w.message)?;
    }
    let rows = judge(&list, &cx.config);
    for w in &rows.warnings {
        writeln!(out, "{file}:{}: warning: {}", w.at, w.message)?;
    }
    let mut rejected = rows.rejected;
    rejected.sort_by_key(|p| (p.at.line(), p.at.to_string()));
    for p in &rejected {
        writeln!(out, "{file}:{}: {}", p.at, p.message)?;
    }
    let rejected_rows = rows.rejected_rows;
    let listed = cx.store.listed_businesses().await?;
    let plan = change::plan(&listed, rows.good, args.prune, &rows.rejected_ids);
    for c in &plan.changes {
        writeln!(out, "{c}")?;
    }
    let adds = plan.count(|c| matches!(c, Change::Add { .. }));
    let updates = plan.count(|c| matches!(c, Change::Update { .. }));
    let unchanged = plan.count(|c| matches!(c, Change::Unchanged { .. }));
    let removes = plan.count(|c| matches!(c, Change::Remove { .. }));
    let counts = format!(
        "{adds} to add, {updates} to update, {unchanged} unchanged, {removes} to remove, {rejected_rows} row(s) rejected"
    );
    let blocked = rejected_rows > 0 && !args.partial;
    if args.dry_run {
        writeln!(out, "dry run: {counts}; nothing written")?;
    } else if blocked {
        writeln!(
            out,
            "{counts}: nothing written (correct the rows, or use --partial to import the good ones)"
        )?;
    } else {
        cx.store
            .apply_branch_change(&plan.upsert, &plan.archive, cx.now_ms())
            .await?;
        writeln!(
            out,
            "{adds} added, {updates} updated, {unchanged} unchanged, {removes} archived, {rejected_rows} row(s) rejected"
        )?;
    }
    Ok(if rejected_rows > 0 { EXIT_PARTIAL } else { 0 })
}

/// The rows, judged.
#[derive(Debug)]
pub struct Judged {
    /// The good rows' businesses, in file order.
    pub good: Vec<Business>,
    /// Every problem of a rejected row, at its line or cell.
    pub rejected: Vec<Problem>,
    pub rejected_rows: usize,
    /// Ids of rejected rows, which `--prune` must not take for removals.
    pub rejected_ids: HashSet<String>,
    pub warnings: Vec<Problem>,
}

/// Validates every row like a `[[businesses]]` table, and the list as a whole: an id twice,
/// or an id `mystery.toml` defines, is refused at its line or cell.
pub fn judge(list: &branch_list::BranchList, config: &config::Config) -> Judged {
    let mut rows = Judged {
        good: Vec::new(),
        rejected: list.problems.clone(),
        rejected_rows: list.problems.len(),
        rejected_ids: list.unreadable_ids.iter().cloned().collect(),
        warnings: Vec::new(),
    };
    let mut first_at: HashMap<String, Location> = HashMap::new();
    for row in &list.rows {
        let mut verdict = config::business_from_row(row, &config.groups);
        rows.warnings.append(&mut verdict.warnings);
        if let Some(id) = row.get(Field::Id) {
            if config.business(id).is_some() && !config.imported.contains(id) {
                verdict.problems.push(Problem {
                    at: row.at(Field::Id).clone(),
                    message: format!(
                        "id {id:?} is defined in {}: a business is configured there or imported, not both",
                        config.source.display()
                    ),
                });
            }
            match first_at.get(id) {
                Some(first) => verdict.problems.push(Problem {
                    at: row.at(Field::Id).clone(),
                    message: format!("duplicate id {id:?} (first at {first})"),
                }),
                None => {
                    first_at.insert(id.to_owned(), row.at(Field::Id).clone());
                }
            }
        } else {
            verdict.problems = vec![Problem {
                at: row.at(Field::Id).clone(),
                message: "no id: every row needs one (the \"id\" or \"code agence\" column)".into(),
            }];
        }
        match verdict.business {
            Some(b) if verdict.problems.is_empty() => rows.good.push(b),
            _ => {
                rows.rejected_rows += 1;
                if let Some(id) = row.get(Field::Id) {
                    rows.rejected_ids.insert(id.to_owned());
                }
                rows.rejected.append(&mut verdict.problems);
            }
        }
    }
    rows
}
