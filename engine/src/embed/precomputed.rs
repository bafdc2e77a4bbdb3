//! Precomputed vectors: a float32 `.npy` matrix whose rows follow a sibling ids file.
//!
//! Inputs: `vectors.npy` of shape (N, D) and `vectors.ids.txt`, one sample id per line (N lines),
//! and the dataset's sample ids. Output: a [`Vectors`] whose row `i` is the row of the file whose id
//! is `dataset_ids[i]`. Rows of samples the dataset does not hold are ignored; a dataset sample
//! without a row is an error, and so is a used row that is non-finite or all zeros (its cosine
//! similarity would be undefined).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use super::{EmbedError, Vectors, npy};
use crate::dataset::SampleId;

/// The ids file that goes with a vectors file: `dir/vectors.npy` → `dir/vectors.ids.txt`.
pub fn ids_path_for(npy: &Path) -> PathBuf {
    npy.with_extension("ids.txt")
}

/// Reads `npy` and its `ids` file and returns the rows of `dataset_ids`, in that order.
pub fn load(npy: &Path, ids: &Path, dataset_ids: &[SampleId]) -> Result<Vectors, EmbedError> {
    let matrix = npy::read_f32(npy)?;
    let row_ids = read_ids(ids)?;
    if row_ids.len() != matrix.n {
        return Err(EmbedError::IdCount {
            npy: npy.into(),
            ids: ids.into(),
            n_ids: row_ids.len(),
            n_rows: matrix.n,
        });
    }
    let row_of: HashMap<&str, usize> = row_ids
        .iter()
        .enumerate()
        .map(|(row, id)| (id.0.as_str(), row))
        .collect();

    let rows: Vec<Option<usize>> = dataset_ids
        .iter()
        .map(|id| row_of.get(id.0.as_str()).copied())
        .collect();
    let missing = rows.iter().filter(|row| row.is_none()).count();
    if let Some(first) = rows.iter().position(Option::is_none) {
        return Err(EmbedError::MissingRows {
            npy: npy.into(),
            ids: ids.into(),
            first: dataset_ids[first].clone(),
            missing,
            n_samples: dataset_ids.len(),
        });
    }

    let mut data = Vec::with_capacity(dataset_ids.len() * matrix.dim);
    for (id, row) in dataset_ids.iter().zip(rows.into_iter().flatten()) {
        let values = matrix.row(row);
        if !values.iter().all(|x| x.is_finite()) {
            return Err(EmbedError::NonFiniteRow {
                path: npy.into(),
                row,
                id: id.clone(),
            });
        }
        if values.iter().all(|&x| x == 0.0) {
            return Err(EmbedError::ZeroRow {
                path: npy.into(),
                row,
                id: id.clone(),
            });
        }
        data.extend_from_slice(values);
    }
    Ok(Vectors {
        n: dataset_ids.len(),
        dim: matrix.dim,
        data,
    })
}

/// One id per line; `\n` or `\r\n` endings, the last one optional. Ids are taken exactly as
/// written (no trimming): they must equal the dataset's ids.
fn read_ids(path: &Path) -> Result<Vec<SampleId>, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Read {
        path: path.into(),
        source,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    let mut ids = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let id = line.strip_suffix('\r').unwrap_or(line);
        if id.is_empty() {
            return Err(EmbedError::EmptyId {
                path: path.into(),
                line: line_no,
            });
        }
        match first_line.entry(id) {
            Entry::Occupied(first) => {
                return Err(EmbedError::DuplicateId {
                    path: path.into(),
                    line: line_no,
                    first_line: *first.get(),
                    id: SampleId(id.to_owned()),
                });
            }
            Entry::Vacant(slot) => {
                slot.insert(line_no);
            }
        }
        ids.push(SampleId(id.to_owned()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir holding `v.npy` (rows as given) and `v.ids.txt` (text as given).
    struct Files {
        _dir: tempfile::TempDir,
        npy: PathBuf,
        ids: PathBuf,
    }

    fn files(rows: &[[f32; 2]], ids_text: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("v.npy");
        let ids = ids_path_for(&npy);
        let data = rows.iter().flatten().copied().collect();
        npy::write_f32(
            &npy,
            &Vectors {
                n: rows.len(),
                dim: 2,
                data,
            },
        )
        .unwrap();
        std::fs::write(&ids, ids_text).unwrap();
        Files {
            _dir: dir,
            npy,
            ids,
        }
    }

    fn sample_ids(ids: &[&str]) -> Vec<SampleId> {
        ids.iter().map(|id| SampleId(id.to_string())).collect()
    }

    /// The error message with the temp dir replaced by `DIR`.
    fn load_err(f: &Files, dataset: &[&str]) -> String {
        let dir = f.npy.parent().unwrap().display().to_string();
        load(&f.npy, &f.ids, &sample_ids(dataset))
            .unwrap_err()
            .to_string()
            .replace(&dir, "DIR")
    }

    #[test]
    fn ids_file_is_the_sibling() {
        assert_eq!(
            ids_path_for(Path::new("dir/vectors.npy")),
            Path::new("dir/vectors.ids.txt")
        );
        assert_eq!(ids_path_for(Path::new("a.b.npy")), Path::new("a.b.ids.txt"));
    }

    #[test]
    fn matches_rows_by_id_and_ignores_extra_rows() {
        let f = files(
            &[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]],
            "a\r\nb\nextra\nc",
        );
        let v = load(&f.npy, &f.ids, &sample_ids(&["c", "a", "b"])).unwrap();
        assert_eq!(
            v,
            Vectors {
                n: 3,
                dim: 2,
                data: vec![4.0, 0.0, 1.0, 0.0, 2.0, 0.0]
            }
        );
    }

    #[test]
    fn empty_dataset_and_empty_files() {
        let f = files(&[], "");
        let v = load(&f.npy, &f.ids, &[]).unwrap();
        assert_eq!(
            v,
            Vectors {
                n: 0,
                dim: 2,
                data: vec![]
            }
        );
    }

    #[test]
    fn counts_must_agree() {
        let f = files(&[[1.0, 0.0], [2.0, 0.0]], "a\nb\nc\n");
        assert_eq!(
            load_err(&f, &["a"]),
            "DIR/v.ids.txt: 3 ids but DIR/v.npy has 2 rows"
        );
    }

    #[test]
    fn rejects_bad_ids_files() {
        let f = files(&[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], "a\n\nc\n");
        assert_eq!(
            load_err(&f, &["a"]),
            "DIR/v.ids.txt:2: empty line (each line must be one sample id)"
        );
        let f = files(&[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], "a\r\n\r\nc\r\n");
        assert_eq!(
            load_err(&f, &["a"]),
            "DIR/v.ids.txt:2: empty line (each line must be one sample id)"
        );
        let f = files(&[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], "139\nb\n139\n");
        assert_eq!(
            load_err(&f, &["b"]),
            "DIR/v.ids.txt:3: duplicate id \"139\" (first on line 1)"
        );
    }

    #[test]
    fn names_the_first_missing_sample_and_the_count() {
        let f = files(&[[1.0, 0.0], [2.0, 0.0]], "a\nb\n");
        assert_eq!(
            load_err(&f, &["a", "x", "b", "y"]),
            "DIR/v.npy: no row for dataset sample \"x\" (2 of 4 samples missing from DIR/v.ids.txt)"
        );
    }

    #[test]
    fn rejects_non_finite_and_zero_rows_that_are_used() {
        let f = files(
            &[
                [1.0, f32::NAN],
                [0.0, 0.0],
                [1.0, f32::NEG_INFINITY],
                [1.0, 2.0],
            ],
            "n\nz\ni\nok\n",
        );
        assert_eq!(
            load_err(&f, &["ok", "n"]),
            "DIR/v.npy: row 0 (sample \"n\") contains NaN or infinity"
        );
        assert_eq!(
            load_err(&f, &["i"]),
            "DIR/v.npy: row 2 (sample \"i\") contains NaN or infinity"
        );
        assert_eq!(
            load_err(&f, &["ok", "z"]),
            "DIR/v.npy: row 1 (sample \"z\") is all zeros (cosine similarity is undefined)"
        );
        // Bad rows of samples outside the dataset do not matter.
        let v = load(&f.npy, &f.ids, &sample_ids(&["ok"])).unwrap();
        assert_eq!(v.data, vec![1.0, 2.0]);
    }

    #[test]
    fn npy_errors_pass_through() {
        let f = files(&[[1.0, 0.0]], "a\n");
        std::fs::write(&f.npy, b"not numpy").unwrap();
        assert_eq!(
            load_err(&f, &["a"]),
            "DIR/v.npy: not a .npy file (missing the \\x93NUMPY magic bytes)"
        );
    }
}
