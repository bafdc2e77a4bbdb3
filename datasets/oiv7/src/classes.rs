//! Class descriptions: which display name each label id (`/m/...`) has.
//!
//! The official `oidv7-class-descriptions.csv` starts with the header `LabelName,DisplayName`;
//! the older `class-descriptions-boxable.csv` has no header. Both are accepted: a first row that is
//! exactly the header is skipped. Display names may contain commas inside quotes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use crate::{Error, lines, scan};

/// The header line of the official class descriptions file.
pub const CLASSES_HEADER: &str = "LabelName,DisplayName";

/// Label ids and their display names, in file order; a class is its index.
#[derive(Clone, Debug)]
pub struct Classes {
    path: PathBuf,
    ids: Vec<String>,
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Classes {
    /// The file the classes were read from (named by unknown-label errors).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The class of a label id, if listed.
    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// A class's label id (`/m/...`).
    pub fn id(&self, class: u32) -> &str {
        &self.ids[class as usize]
    }

    /// A class's display name.
    pub fn display_name(&self, class: u32) -> &str {
        &self.names[class as usize]
    }
}

/// Reads a class descriptions CSV. A label id listed twice is an error.
pub fn read_classes(path: &Path) -> Result<Classes, Error> {
    let has_header = lines::first_line(path)?.as_deref() == Some(CLASSES_HEADER);
    let frame = match scan::strings(path, has_header, &["LabelName", "DisplayName"])?.collect() {
        Ok(frame) => frame,
        Err(err) => {
            return Err(blame_row(path, has_header)?.unwrap_or_else(|| Error::scan(path, &err)));
        }
    };
    let column = |name: &str| {
        frame
            .column(name)
            .and_then(|c| c.str())
            .map_err(|e| Error::scan(path, &e))
    };
    let (ids, names) = (column("LabelName")?, column("DisplayName")?);
    let mut classes = Classes {
        path: path.to_path_buf(),
        ids: Vec::with_capacity(ids.len()),
        names: Vec::with_capacity(ids.len()),
        index: HashMap::with_capacity(ids.len()),
    };
    for (id, name) in ids.iter().zip(names.iter()) {
        let (Some(id), Some(name)) = (scan::present(id), scan::present(name)) else {
            return Err(bad_row(path, has_header)?);
        };
        match classes.index.entry(id.to_string()) {
            Entry::Occupied(_) => return Err(duplicate(path, has_header, id)?),
            Entry::Vacant(slot) => {
                slot.insert(classes.ids.len() as u32);
            }
        }
        classes.ids.push(id.to_string());
        classes.names.push(name.to_string());
    }
    Ok(classes)
}

/// What is wrong with a row, if anything.
fn check_row(fields: &[String]) -> Option<String> {
    match fields {
        [id, _] if id.is_empty() => Some("empty LabelName".to_string()),
        [_, name] if name.is_empty() => Some("empty DisplayName".to_string()),
        [_, _] => None,
        _ => Some(format!(
            "expected 2 fields (LabelName,DisplayName), found {} (a display name with a comma \
             must be quoted)",
            fields.len()
        )),
    }
}

fn blame_row(path: &Path, has_header: bool) -> Result<Option<Error>, Error> {
    let found = lines::find_line(path, u64::from(has_header), |_, fields| check_row(fields))?;
    Ok(found.map(|(line, message)| Error::row(path, line, message)))
}

/// The error for a row the scan found bad (falling back to a line-less one if the line-by-line
/// pass disagrees).
fn bad_row(path: &Path, has_header: bool) -> Result<Error, Error> {
    Ok(blame_row(path, has_header)?.unwrap_or_else(|| Error::Scan {
        path: path.to_path_buf(),
        message: "a row lacks its LabelName or DisplayName".to_string(),
    }))
}

fn duplicate(path: &Path, has_header: bool, id: &str) -> Result<Error, Error> {
    let mut first = None;
    let found = lines::find_line(path, u64::from(has_header), |number, fields| {
        if fields.first().map(String::as_str) != Some(id) {
            return None;
        }
        match first {
            None => {
                first = Some(number);
                None
            }
            Some(line) => Some(format!("label id {id} listed twice (first on line {line})")),
        }
    })?;
    Ok(match found {
        Some((line, message)) => Error::row(path, line, message),
        None => Error::Scan {
            path: path.to_path_buf(),
            message: format!("label id {id} listed twice"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn names(classes: &Classes) -> Vec<(&str, &str)> {
        (0..classes.len() as u32)
            .map(|c| (classes.id(c), classes.display_name(c)))
            .collect()
    }

    #[test]
    fn reads_with_and_without_the_header_and_quoted_commas() {
        let body = "/m/011k07,Tortoise\n/m/0120dh,\"Sea lion, Steller\"\n/m/01226z,\"Say \"\"cheese\"\"\"\n";
        for text in [format!("{CLASSES_HEADER}\n{body}"), body.to_string()] {
            let (_dir, path) = write(&text);
            let classes = read_classes(&path).unwrap();
            assert_eq!(
                names(&classes),
                [
                    ("/m/011k07", "Tortoise"),
                    ("/m/0120dh", "Sea lion, Steller"),
                    ("/m/01226z", "Say \"cheese\"")
                ]
            );
            assert_eq!(classes.index_of("/m/0120dh"), Some(1));
            assert_eq!(classes.index_of("/m/nope"), None);
        }
    }

    #[test]
    fn crlf_and_a_byte_order_mark_are_accepted() {
        let (_dir, path) = write("\u{feff}LabelName,DisplayName\r\n/m/01,Cat\r\n");
        assert_eq!(names(&read_classes(&path).unwrap()), [("/m/01", "Cat")]);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let cases = [
            (
                "LabelName,DisplayName\n/m/01,Cat\n/m/02,Sea lion, Steller\n",
                ":3: expected 2 fields (LabelName,DisplayName), found 3 (a display name with a comma must be quoted)",
            ),
            ("/m/01,Cat\n/m/02\n", ":2: expected 2 fields"),
            ("/m/01,Cat\n,Dog\n", ":2: empty LabelName"),
            (
                "/m/01,Cat\n/m/02,Dog\n/m/01,Kitten\n",
                ":3: label id /m/01 listed twice (first on line 1)",
            ),
        ];
        for (text, want) in cases {
            let (_dir, path) = write(text);
            let err = read_classes(&path).unwrap_err().to_string();
            assert!(
                err.starts_with(&path.display().to_string()) && err.contains(want),
                "{text:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let err = read_classes(Path::new("/nonexistent/classes.csv")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
