//! Delimited text → a grid: the separator (`,` `;` or tab) is the one the header line uses,
//! quoted values may hold separators and line breaks, and every value keeps the line it
//! starts on in the file (CRLF or LF), so messages name the line an editor shows.

use super::decode::decode;
use super::{Cell, Grid, Location, Problem};

pub(super) fn read(bytes: &[u8]) -> Grid {
    let (text, encoding) = decode(bytes);
    let delimiter = delimiter(&text);
    let shown = match delimiter {
        b'\t' => "tab".to_owned(),
        d => format!("'{}'", d as char),
    };
    let mut grid = Grid {
        format: format!("text, {encoding}, separator {shown}"),
        header: Vec::new(),
        rows: Vec::new(),
        problems: Vec::new(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut first = true;
    let mut lines = LineCounter::new(&text);
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record
                    .position()
                    .map_or(0, |p| lines.line_of_record_at(p.byte() as usize));
                let cells = cells(&record, line);
                if first {
                    grid.header = cells;
                    first = false;
                } else {
                    grid.rows.push((Location::Line(line), cells));
                }
            }
            Err(e) => {
                let line = e
                    .position()
                    .map_or(0, |p| lines.line_of_record_at(p.byte() as usize));
                grid.problems.push(Problem {
                    at: Location::Line(line),
                    message: format!("unreadable row: {e}"),
                });
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
            }
        }
    }
    grid
}

/// Lines of records from their byte offsets. csv's own line count is one short after a CRLF
/// (the `\n` of a record's terminator is read with the next record: the bug of issue 12 that
/// called the first data row line 1); here a record starts at its first byte that is not a
/// line break, and its line is the line breaks before it, plus one.
struct LineCounter<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            at: 0,
            line: 1,
        }
    }

    /// Offsets must not decrease between calls (records come in order).
    fn line_of_record_at(&mut self, byte: usize) -> usize {
        let mut start = byte.min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.at {
            self.line += self.text[self.at..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.at = start;
        }
        self.line
    }
}

/// The values of a record, trimmed, each with the line it starts on.
fn cells(record: &csv::StringRecord, first_line: usize) -> Vec<Cell> {
    let mut line = first_line;
    record
        .iter()
        .map(|v| {
            let cell = Cell {
                text: v.trim().to_owned(),
                at: Location::Line(line),
            };
            line += v.matches('\n').count();
            cell
        })
        .collect()
}

/// The separator the header line uses most, outside quotes; `,` when it uses none.
fn delimiter(text: &str) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' if !quoted => break,
            ',' if !quoted => counts[0] += 1,
            ';' if !quoted => counts[1] += 1,
            '\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let best = (0..3).max_by_key(|i| (counts[*i], *i)).unwrap_or(0);
    if counts[best] == 0 {
        b','
    } else {
        candidates[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(grid: &Grid) -> Vec<usize> {
        grid.rows.iter().map(|(at, _)| at.line()).collect()
    }

    #[test]
    fn the_separator_is_the_one_the_header_uses() {
        assert_eq!(delimiter("id;nom;ville\r\n"), b';');
        assert_eq!(delimiter("id,nom\n1;2;3;4\n"), b',');
        assert_eq!(delimiter("id\tnom\n"), b'\t');
        assert_eq!(delimiter("\"a;b\",c\n"), b',');
        assert_eq!(delimiter("id\n"), b',');
    }

    #[test]
    fn line_numbers_are_the_files_own_with_quoted_line_breaks_and_crlf() {
        let text =
            "id;nom;horaires\r\na;\"A\r\nbis\";x\r\nb;B;\"Lun 9-12\r\n\r\nMar 9-12\"\r\nc;C;y\r\n";
        let grid = read(text.as_bytes());
        assert_eq!(lines(&grid), [2, 4, 7]);
        // A value after a quoted line break starts on the next line.
        assert_eq!(grid.rows[0].1[2].at, Location::Line(3));
        assert_eq!(grid.rows[1].1[2].text, "Lun 9-12\r\n\r\nMar 9-12");
    }
}
