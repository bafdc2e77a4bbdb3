//! The one way this crate asks polars for a CSV: every column read as text (so that a bad value
//! reaches us as a row we can blame, never as a parse error without a line), quotes honoured.
//!
//! Callers keep every column in the query: polars checks that a row has no more fields than the
//! schema only when no column is projected away, and a row with too many fields must fail.

use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use crate::Error;

/// A lazy scan of `path` whose columns are `columns`, all strings.
pub(crate) fn strings(path: &Path, has_header: bool, columns: &[&str]) -> Result<LazyFrame, Error> {
    let schema: Schema = columns
        .iter()
        .map(|&name| Field::new(name.into(), DataType::String))
        .collect();
    let source = PlRefPath::try_from_path(path).map_err(|e| Error::scan(path, &e))?;
    LazyCsvReader::new(source)
        .with_has_header(has_header)
        .with_schema(Some(Arc::new(schema)))
        .finish()
        .map_err(|e| Error::scan(path, &e))
}

/// A non-empty string cell.
pub(crate) fn present(cell: Option<&str>) -> Option<&str> {
    cell.filter(|s| !s.is_empty())
}
