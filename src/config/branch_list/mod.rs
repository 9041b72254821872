//! A branch list as people keep it → rows of text, each cell with where it came from.
//!
//! Text files (CSV or tab-separated, in any encoding Excel or LibreOffice saves) and
//! spreadsheets (.xlsx, .ods) are read into one grid; headers in French or English name the
//! columns. Every problem carries a `Location` that is the file's own: a line of a text file
//! (counted as an editor counts them, quoted line breaks included), or a sheet cell.
//! Validation of the values is `config::business_from_row`'s job, not this module's.

pub mod decode;
pub mod headers;
mod sheet;
mod text;

use std::fmt;
use std::path::{Path, PathBuf};

/// The columns of a branch list, in the order `export` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Id,
    Name,
    Group,
    Email,
    Phone,
    Timezone,
    City,
    Hours,
    FormUrl,
    Country,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::Id,
        Field::Name,
        Field::Group,
        Field::Email,
        Field::Phone,
        Field::Timezone,
        Field::City,
        Field::Hours,
        Field::FormUrl,
        Field::Country,
    ];

    /// The name `export` writes and messages use.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::Group => "group",
            Field::Email => "email",
            Field::Phone => "phone",
            Field::Timezone => "timezone",
            Field::City => "city",
            Field::Hours => "hours",
            Field::FormUrl => "form_url",
            Field::Country => "country",
        }
    }
}

/// Where a row or a value is, in the file's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line of a text file, 1 for the header.
    Line(usize),
    /// A cell of a spreadsheet: `column` from 0 (A), `row` from 1 as the sheet shows it.
    Cell {
        sheet: String,
        column: usize,
        row: usize,
    },
}

impl Location {
    /// The line (text) or sheet row (spreadsheet): what `mystery.toml` diagnostics carry.
    pub fn line(&self) -> usize {
        match self {
            Location::Line(l) => *l,
            Location::Cell { row, .. } => *row,
        }
    }
}

impl fmt::Display for Location {
    /// `12`, or `Feuil1!C5` (`'Mes agences'!C5` when the sheet name needs quoting).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(l) => write!(f, "{l}"),
            Location::Cell { sheet, column, row } => {
                if sheet.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    write!(f, "{sheet}!{}{row}", column_letters(*column))
                } else {
                    write!(
                        f,
                        "'{}'!{}{row}",
                        sheet.replace('\'', "''"),
                        column_letters(*column)
                    )
                }
            }
        }
    }
}

/// 0 → A, 25 → Z, 26 → AA.
pub fn column_letters(mut column: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (column % 26) as u8);
        if column < 26 {
            break;
        }
        column = column / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// One value as text, and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub at: Location,
}

/// One branch of the list, as text.
#[derive(Debug, Clone)]
pub struct BranchRow {
    /// The row's first line, or its cell in the id column.
    pub at: Location,
    cells: [Option<Cell>; 10],
}

impl BranchRow {
    /// The value of a column, trimmed; `None` when the column is absent or the cell empty.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.cells[field as usize].as_ref().map(|c| c.text.as_str())
    }
    /// Where a value is (the row's place when the column is absent or the cell empty).
    pub fn at(&self, field: Field) -> &Location {
        self.cells[field as usize]
            .as_ref()
            .map(|c| &c.at)
            .unwrap_or(&self.at)
    }
}

/// A problem of one place of the file (a row that cannot be read, an unknown column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    pub message: String,
}

/// The file, read: its rows, the rows that could not be read, and warnings.
#[derive(Debug, Clone)]
pub struct BranchList {
    pub file: PathBuf,
    /// How it was read, for the user: "CSV, Windows-1252, ';'" or "xlsx, sheet Feuil1".
    pub format: String,
    /// The columns found, in file order.
    pub columns: Vec<Field>,
    pub rows: Vec<BranchRow>,
    /// Rows that could not be read at all: each one a rejected row.
    pub problems: Vec<Problem>,
    /// The ids of those rows, where one could be read (they are on the list, only wrong).
    pub unreadable_ids: Vec<String>,
    /// Unknown columns and the like: nothing is rejected for them.
    pub warnings: Vec<Problem>,
}

/// A file that cannot be read as a branch list at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable spreadsheet: {message}", file.display())]
    Spreadsheet { file: PathBuf, message: String },
    #[error("{}: no sheet {name:?} (sheets: {})", file.display(), available.join(", "))]
    NoSheet {
        file: PathBuf,
        name: String,
        available: Vec<String>,
    },
    #[error("{}: --sheet applies to .xlsx and .ods files only", file.display())]
    SheetOfText { file: PathBuf },
    #[error("{}: the file is empty (no header row)", file.display())]
    Empty { file: PathBuf },
    #[error("{}:{at}: {message}", file.display())]
    Header {
        file: PathBuf,
        at: Location,
        message: String,
    },
}

/// A header and data rows of text, each value with its place: what both readers produce.
pub(crate) struct Grid {
    pub format: String,
    pub header: Vec<Cell>,
    /// Each row: its place, and its values in column order.
    pub rows: Vec<(Location, Vec<Cell>)>,
    pub problems: Vec<Problem>,
}

/// Reads a branch list; `.xlsx`, `.xlsm` and `.ods` as spreadsheets (`sheet`, else the
/// first), anything else as delimited text.
pub fn read(file: &Path, sheet: Option<&str>) -> Result<BranchList, ReadError> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let grid = match ext.as_str() {
        "xlsx" | "xlsm" | "ods" => sheet::read(file, sheet)?,
        _ => {
            if sheet.is_some() {
                return Err(ReadError::SheetOfText {
                    file: file.to_path_buf(),
                });
            }
            let bytes = std::fs::read(file).map_err(|source| ReadError::Io {
                file: file.to_path_buf(),
                source,
            })?;
            text::read(&bytes)
        }
    };
    from_grid(file, grid)
}

/// Reads delimited text from memory (tests, and `mystery.toml`'s `businesses_csv`).
pub fn read_text(file: &Path, bytes: &[u8]) -> Result<BranchList, ReadError> {
    from_grid(file, text::read(bytes))
}

fn from_grid(file: &Path, grid: Grid) -> Result<BranchList, ReadError> {
    let header_error = |at: &Location, message: String| ReadError::Header {
        file: file.to_path_buf(),
        at: at.clone(),
        message,
    };
    if grid.header.is_empty() {
        return Err(ReadError::Empty {
            file: file.to_path_buf(),
        });
    }
    let mut warnings = Vec::new();
    let mut index: [Option<usize>; 10] = [None; 10];
    let mut columns = Vec::new();
    for (i, h) in grid.header.iter().enumerate() {
        if h.text.is_empty() {
            continue;
        }
        match headers::field_of(&h.text) {
            Some(f) => {
                if let Some(first) = index[f as usize] {
                    return Err(header_error(
                        &h.at,
                        format!(
                            "column {:?} means {} like column {:?}: keep one",
                            h.text,
                            f.name(),
                            grid.header[first].text
                        ),
                    ));
                }
                index[f as usize] = Some(i);
                columns.push(f);
            }
            None => warnings.push(Problem {
                at: h.at.clone(),
                message: format!(
                    "unknown column {:?} ignored (known: {})",
                    h.text,
                    Field::ALL.map(Field::name).join(", ")
                ),
            }),
        }
    }
    let missing: Vec<&str> = [Field::Id, Field::Name]
        .into_iter()
        .filter(|f| index[*f as usize].is_none())
        .map(Field::name)
        .collect();
    if !missing.is_empty() {
        let at = grid.header[0].at.clone();
        return Err(header_error(
            &at,
            format!(
                "no {} column in the header ({}); e.g. \"code agence\" or \"id\", \"nom\" or \"name\"",
                missing.join(" and no "),
                grid.header
                    .iter()
                    .map(|h| format!("{:?}", h.text))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut rows = Vec::new();
    let mut problems = grid.problems;
    let mut unreadable_ids = Vec::new();
    for (at, values) in grid.rows {
        if values.iter().all(|c| c.text.is_empty()) {
            continue;
        }
        if let Some(extra) = values
            .iter()
            .skip(grid.header.len())
            .find(|c| !c.text.is_empty())
        {
            if let Some(id) = index[Field::Id as usize].and_then(|i| values.get(i)) {
                unreadable_ids.push(id.text.clone());
            }
            problems.push(Problem {
                at: extra.at.clone(),
                message: format!(
                    "{} values, but the header names {} columns (a separator inside an unquoted value?)",
                    values.len(),
                    grid.header.len()
                ),
            });
            continue;
        }
        let mut cells: [Option<Cell>; 10] = Default::default();
        for f in Field::ALL {
            cells[f as usize] = index[f as usize]
                .and_then(|i| values.get(i))
                .filter(|c| !c.text.is_empty())
                .cloned();
        }
        let at = cells[Field::Id as usize]
            .as_ref()
            .map(|c| match &c.at {
                Location::Cell { .. } => c.at.clone(),
                Location::Line(_) => at.clone(),
            })
            .unwrap_or(at);
        rows.push(BranchRow { at, cells });
    }
    Ok(BranchList {
        file: file.to_path_buf(),
        format: grid.format,
        columns,
        rows,
        problems,
        unreadable_ids,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_named_as_spreadsheets_name_them() {
        let cell = |sheet: &str, column, row| Location::Cell {
            sheet: sheet.into(),
            column,
            row,
        };
        assert_eq!(cell("Feuil1", 2, 5).to_string(), "Feuil1!C5");
        assert_eq!(cell("Mes agences", 27, 3).to_string(), "'Mes agences'!AB3");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
    }
}
