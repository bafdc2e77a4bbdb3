//! Plain line-by-line reading of a CSV file, for what a polars scan does not tell: what the header
//! line says, and, on the error path, which line is at fault and why.

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::Error;

/// The file's first line without a UTF-8 byte order mark and line ending; `None` if it is empty.
pub(crate) fn first_line(path: &Path) -> Result<Option<String>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut line = Vec::new();
    BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(|e| Error::io(path, e))?;
    if line.is_empty() {
        return Ok(None);
    }
    Ok(Some(clean(&line).to_string()))
}

/// A raw line as text: lossy UTF-8 (error messages only), no BOM, no `\r\n`.
fn clean(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    String::from_utf8_lossy(raw)
}

/// Splits a CSV line into fields: `,` separates, a field may be quoted with `"`, and `""` inside
/// quotes is one `"`.
pub(crate) fn split(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The first line after the first `skip` lines for which `check` (given the line's 1-based number
/// and fields) returns a complaint, with its number. Blank lines are skipped, as polars skips them.
pub(crate) fn find_line(
    path: &Path,
    skip: u64,
    mut check: impl FnMut(u64, &[String]) -> Option<String>,
) -> Result<Option<(u64, String)>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut raw = Vec::new();
    let mut number = 0;
    loop {
        raw.clear();
        if reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| Error::io(path, e))?
            == 0
        {
            return Ok(None);
        }
        number += 1;
        let line = clean(&raw);
        if number <= skip || line.trim().is_empty() {
            continue;
        }
        if let Some(complaint) = check(number, &split(&line)) {
            return Ok(Some((number, complaint)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_fields() {
        assert_eq!(split("a,b,,c"), ["a", "b", "", "c"]);
        assert_eq!(
            split("/m/01,\"Cat, domestic\",x"),
            ["/m/01", "Cat, domestic", "x"]
        );
        assert_eq!(split("\"say \"\"hi\"\"\",2"), ["say \"hi\"", "2"]);
    }
}
