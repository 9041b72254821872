//! A spreadsheet (.xlsx, .ods) → a grid: the first sheet or the one named, values read back
//! as the text the user typed (a phone the spreadsheet made a number `33321000000.0` reads
//! `33321000000`, a date `2026-09-01`, a time `09:00`), each with its cell (`Feuil1!C5`).

use super::{Cell, Grid, Location, ReadError};
use calamine::{Data, Reader};
use std::path::Path;

pub(super) fn read(file: &Path, wanted: Option<&str>) -> Result<Grid, ReadError> {
    let spreadsheet_error = |e: calamine::Error| ReadError::Spreadsheet {
        file: file.to_path_buf(),
        message: e.to_string(),
    };
    let mut book = calamine::open_workbook_auto(file).map_err(|e| match e {
        calamine::Error::Io(source) => ReadError::Io {
            file: file.to_path_buf(),
            source,
        },
        e => spreadsheet_error(e),
    })?;
    let names = book.sheet_names();
    let sheet = match wanted {
        Some(name) => names
            .iter()
            .find(|n| n.as_str() == name)
            .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(name)))
            .cloned()
            .ok_or_else(|| ReadError::NoSheet {
                file: file.to_path_buf(),
                name: name.to_owned(),
                available: names.clone(),
            })?,
        None => names.first().cloned().ok_or_else(|| ReadError::Empty {
            file: file.to_path_buf(),
        })?,
    };
    let range = book.worksheet_range(&sheet).map_err(spreadsheet_error)?;
    let kind = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("spreadsheet")
        .to_ascii_lowercase();
    let mut grid = Grid {
        format: format!("{kind}, sheet {sheet}"),
        header: Vec::new(),
        rows: Vec::new(),
        problems: Vec::new(),
    };
    let (top, left) = range.start().unwrap_or((0, 0));
    let (top, left) = (top as usize, left as usize);
    for (i, values) in range.rows().enumerate() {
        let row = top + i + 1;
        let cells: Vec<Cell> = values
            .iter()
            .enumerate()
            .map(|(j, v)| Cell {
                text: typed_text(v),
                at: Location::Cell {
                    sheet: sheet.clone(),
                    column: left + j,
                    row,
                },
            })
            .collect();
        let at = Location::Cell {
            sheet: sheet.clone(),
            column: left,
            row,
        };
        if grid.header.is_empty() {
            // Rows above the header (a title, blank lines) are skipped.
            if cells.iter().any(|c| !c.text.is_empty()) {
                grid.header = cells;
            }
        } else {
            grid.rows.push((at, cells));
        }
    }
    Ok(grid)
}

/// The text a value was typed as.
pub(super) fn typed_text(value: &Data) -> String {
    match value {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_owned(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => float_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Data::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            let time = if s == 0 {
                format!("{h:02}:{mi:02}")
            } else {
                format!("{h:02}:{mi:02}:{s:02}")
            };
            if dt.is_duration() || dt.as_f64().abs() < 1.0 {
                time
            } else if (h, mi, s) == (0, 0, 0) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {time}")
            }
        }
        Data::DateTimeIso(s) => match s.split_once('T') {
            None => s.clone(),
            Some((day, "00:00:00")) => day.to_owned(),
            Some((day, time)) => format!("{day} {}", time.strip_suffix(":00").unwrap_or(time)),
        },
        Data::DurationIso(s) => iso_duration_as_time(s).unwrap_or_else(|| s.clone()),
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// `33321000000.0` → `33321000000`; `1.5` → `1.5`.
fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e17 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// LibreOffice's time cells: `PT09H00M00S` → `09:00`.
fn iso_duration_as_time(s: &str) -> Option<String> {
    let rest = s.strip_prefix("PT")?;
    let (h, rest) = rest.split_once('H')?;
    let (m, rest) = rest.split_once('M')?;
    let secs = rest.strip_suffix('S').unwrap_or(rest);
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    let s: f64 = if secs.is_empty() {
        0.0
    } else {
        secs.parse().ok()?
    };
    Some(if s == 0.0 {
        format!("{h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}:{:02}", s as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

    #[test]
    fn numbers_and_dates_read_back_as_typed() {
        assert_eq!(typed_text(&Data::Float(33321000000.0)), "33321000000");
        assert_eq!(typed_text(&Data::Float(321000000.0)), "321000000");
        assert_eq!(typed_text(&Data::Float(1.5)), "1.5");
        let date = ExcelDateTime::new(46266.0, ExcelDateTimeType::DateTime, false);
        assert_eq!(typed_text(&Data::DateTime(date)), "2026-09-01");
        let time = ExcelDateTime::new(0.375, ExcelDateTimeType::DateTime, false);
        assert_eq!(typed_text(&Data::DateTime(time)), "09:00");
        assert_eq!(
            typed_text(&Data::DateTimeIso("2026-09-01".into())),
            "2026-09-01"
        );
        assert_eq!(
            typed_text(&Data::DateTimeIso("2026-09-01T09:30:00".into())),
            "2026-09-01 09:30"
        );
        assert_eq!(
            typed_text(&Data::DurationIso("PT09H00M00S".into())),
            "09:00"
        );
    }
}
