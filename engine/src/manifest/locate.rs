//! Where in the manifest text a key lives, and what a misspelt key was meant to be.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Name(String),
    Index(usize),
}

/// A key path such as `runs[2].parts[0].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Key>);

impl KeyPath {
    pub fn name(mut self, name: &str) -> KeyPath {
        self.0.push(Key::Name(name.to_string()));
        self
    }

    pub fn index(mut self, index: usize) -> KeyPath {
        self.0.push(Key::Index(index));
        self
    }

    /// Parses a dotted path where numeric segments index arrays (`parts.1.weight`).
    pub fn parse_dotted(dotted: &str) -> KeyPath {
        KeyPath(
            dotted
                .split('.')
                .map(|seg| match seg.parse::<usize>() {
                    Ok(i) => Key::Index(i),
                    Err(_) => Key::Name(seg.to_string()),
                })
                .collect(),
        )
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            match key {
                Key::Name(name) if i == 0 => write!(f, "{name}")?,
                Key::Name(name) => write!(f, ".{name}")?,
                Key::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A position in a manifest file, printed `file:line:col` (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn at_offset(file: &Path, text: &str, offset: usize) -> Location {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }

    /// The deepest part of `path` that the file spells out: the value itself when written, else
    /// the table that should hold it.
    pub fn of_key(file: &Path, text: &str, path: &KeyPath) -> Location {
        let offset = span_of(text, path).map_or(0, |span| span.start);
        Location::at_offset(file, text, offset)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

fn span_of(text: &str, path: &KeyPath) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table: Option<&DeTable> = Some(root.get_ref());
    let mut value: Option<&DeValue> = None;
    for key in &path.0 {
        let next = match (key, table, value) {
            (Key::Name(name), Some(t), _) => t.get(name.as_str()),
            (Key::Index(i), _, Some(DeValue::Array(items))) => items.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = Some(next.span());
        value = Some(next.get_ref());
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

/// Given serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the closest
/// expected name, if one is close enough to be a likely typo.
pub fn suggestion(message: &str) -> Option<String> {
    let mut names = backticked(message);
    if names.len() < 2 {
        return None;
    }
    let wrong = names.remove(0);
    closest(&wrong, names.iter().map(String::as_str))
}

/// The candidate most similar to `wrong`, if similar enough.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[experiment]\nname = \"x\"\n\n[[runs]]\nname = \"a\"\n\n[[runs]]\nname = \"b\"\nparts = [{ precomputed = \"v.npy\", weight = -1 }]\n";

    #[test]
    fn finds_values_inside_arrays_of_tables() {
        let path = KeyPath::default()
            .name("runs")
            .index(1)
            .name("parts")
            .index(0)
            .name("weight");
        let loc = Location::of_key(Path::new("m.toml"), TEXT, &path);
        assert_eq!((loc.line, loc.column), (9, 44));
    }

    #[test]
    fn falls_back_to_the_enclosing_table() {
        let path = KeyPath::default().name("runs").index(0).name("parts");
        let loc = Location::of_key(Path::new("m.toml"), TEXT, &path);
        assert_eq!(loc.line, 4);
    }

    #[test]
    fn suggests_the_closest_expected_name() {
        let msg = "unknown field `experimnt`, expected one of `experiment`, `dataset`, `runs`";
        assert_eq!(suggestion(msg).as_deref(), Some("experiment"));
        assert_eq!(
            suggestion("unknown field `zzz`, expected `experiment`"),
            None
        );
    }

    #[test]
    fn key_paths_print_like_toml() {
        let p = KeyPath::parse_dotted("runs.2.parts.0.weight");
        assert_eq!(p.to_string(), "runs[2].parts[0].weight");
    }
}
