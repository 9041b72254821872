//! `mystery export branches`: the imported businesses in the columns `import` reads, as CSV
//! (standard output by default) or .xlsx, so a list goes to a spreadsheet and back unchanged.
//! Every value is written as text: a phone stays `+33321000000`, never a number.

use crate::clock::Clock;
use crate::config::branch_list::Field;
use crate::config::Business;
use crate::Context;
use anyhow::{bail, Context as _, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Xlsx,
}

#[derive(Debug, Clone)]
pub struct ExportArgs {
    pub format: ExportFormat,
    /// Where to write; CSV goes to standard output without it.
    pub output: Option<PathBuf>,
    /// CSV: start with a UTF-8 BOM (Excel reads accents right).
    pub bom: bool,
    /// CSV: the separator (';' for French spreadsheets).
    pub separator: u8,
}

/// Writes the businesses imported into the store (the list `import` maintains; those of
/// `mystery.toml` are not on it). Returns the exit code.
pub async fn export_branches(
    config_path: &Path,
    args: &ExportArgs,
    out: &mut dyn Write,
) -> Result<i32> {
    let cx = Context::open(config_path, Clock::system()).await?;
    let businesses = cx.store.imported_businesses().await?;
    match (args.format, &args.output) {
        (ExportFormat::Xlsx, None) => {
            bail!("an .xlsx file is binary: give --output FILE.xlsx")
        }
        (ExportFormat::Xlsx, Some(path)) => {
            write_xlsx(&businesses, path)?;
        }
        (ExportFormat::Csv, None) => write_csv(&businesses, args, out)?,
        (ExportFormat::Csv, Some(path)) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_csv(&businesses, args, &mut file)?;
        }
    }
    if let Some(path) = &args.output {
        writeln!(
            out,
            "{}: {} branches written",
            path.display(),
            businesses.len()
        )?;
    }
    Ok(0)
}

/// A business's values in `Field::ALL` order, empty where absent.
pub fn values(b: &Business) -> [String; 10] {
    Field::ALL.map(|f| {
        match f {
            Field::Id => Some(b.id.clone()),
            Field::Name => Some(b.name.clone()),
            Field::Group => b.group.clone(),
            Field::Email => b.email.clone(),
            Field::Phone => b.phone.clone(),
            Field::Timezone => Some(b.timezone.name().to_owned()),
            Field::City => b.city.clone(),
            Field::Hours => b.hours_text.clone(),
            Field::FormUrl => b.form_url.clone(),
            Field::Country => Some(b.country.clone()),
        }
        .unwrap_or_default()
    })
}

pub fn write_csv(businesses: &[Business], args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
    if args.bom {
        out.write_all(b"\xEF\xBB\xBF")?;
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(args.separator)
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    w.write_record(Field::ALL.map(Field::name))?;
    for b in businesses {
        w.write_record(values(b))?;
    }
    w.flush()?;
    Ok(())
}

pub fn write_xlsx(businesses: &[Business], path: &Path) -> Result<()> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("branches")?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (c, f) in Field::ALL.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, f.name(), &bold)?;
    }
    for (r, b) in businesses.iter().enumerate() {
        for (c, v) in values(b).iter().enumerate() {
            if !v.is_empty() {
                sheet.write_string(r as u32 + 1, c as u16, v)?;
            }
        }
    }
    sheet.set_freeze_panes(1, 0)?;
    sheet.autofit();
    book.save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
