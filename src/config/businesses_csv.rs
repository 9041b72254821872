//! The businesses CSV (`id,name,group,email,phone,timezone,city,hours`): one row a branch,
//! each bad row reported with its line, the good ones kept.

use std::path::Path;

/// One row, as text; validated like an inline `[[businesses]]` table.
#[derive(Debug, Clone, Default)]
pub struct CsvBusiness {
    pub line: usize,
    pub id: String,
    pub name: String,
    pub group: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub city: Option<String>,
    pub hours: Option<String>,
}

const COLUMNS: [&str; 8] = [
    "id", "name", "group", "email", "phone", "timezone", "city", "hours",
];

/// Parses the CSV; returns the rows and every problem as (line, message).
pub fn parse_businesses_csv(path: &Path) -> (Vec<CsvBusiness>, Vec<(usize, String)>) {
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(&bytes),
        Err(e) => (Vec::new(), vec![(0, format!("cannot read: {e}"))]),
    }
}

pub(crate) fn parse_bytes(bytes: &[u8]) -> (Vec<CsvBusiness>, Vec<(usize, String)>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    // Spreadsheets save a BOM and, in French locales, `;` as the separator.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let delimiter = if first_line.contains(&b';') && !first_line.contains(&b',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return (rows, vec![(1, format!("unreadable header: {e}"))]),
    };
    let mut index = [None; 8];
    for (i, h) in headers.iter().enumerate() {
        let h = h.to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == h) {
            Some(c) => index[c] = Some(i),
            None => errors.push((1, format!("unknown column {h:?} (expected {COLUMNS:?})"))),
        }
    }
    for required in [0, 1] {
        if index[required].is_none() {
            errors.push((1, format!("missing column {:?}", COLUMNS[required])));
        }
    }
    if !errors.is_empty() {
        return (rows, errors);
    }
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                errors.push((line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.len() != headers.len() {
            errors.push((
                line,
                format!("{} fields, expected {}", record.len(), headers.len()),
            ));
            continue;
        }
        let get = |c: usize| -> Option<String> {
            index[c]
                .and_then(|i| record.get(i))
                .map(str::to_owned)
                .filter(|v| !v.is_empty())
        };
        let (Some(id), Some(name)) = (get(0), get(1)) else {
            errors.push((line, "id and name are required".into()));
            continue;
        };
        rows.push(CsvBusiness {
            line,
            id,
            name,
            group: get(2),
            email: get(3),
            phone: get(4),
            timezone: get(5),
            city: get(6),
            hours: get(7),
        });
    }
    (rows, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_french_excel_export_with_bom_and_semicolons_is_read() {
        let csv = "\u{feff}id;name;email;city\nlille;Agence Lille;contact@lille.test;Lille\n";
        let (rows, errors) = parse_bytes(csv.as_bytes());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows[0].city.as_deref(), Some("Lille"));
        assert_eq!(rows[0].line, 2);
    }

    #[test]
    fn bad_rows_are_reported_with_their_line_and_good_rows_kept() {
        let csv = "id,name,email\na,A,a@x.test\nb\n,C,c@x.test\nd,D,d@x.test\n";
        let (rows, errors) = parse_bytes(csv.as_bytes());
        assert_eq!(
            rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "d"]
        );
        assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn an_unknown_column_is_an_error() {
        let (_, errors) = parse_bytes(b"id,name,fax\n");
        assert!(errors[0].1.contains("fax"));
    }
}
