//! NumPy `.npy` files holding one 2-D float32 matrix.
//!
//! Reads format versions 1.0, 2.0 and 3.0 (the header dict is parsed as the Python literal it is:
//! any whitespace, key order and trailing commas), accepts only little-endian float32 (`<f4`, or
//! `=f4` on a little-endian machine) of two dimensions, and turns Fortran-order data into the
//! row-major [`Vectors`] everything downstream expects. Writes version 1.0, `<f4`, C order, with
//! the header padded to 64 bytes exactly as `np.save` pads it.
//!
//! Format reference: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::{EmbedError, Vectors};

const MAGIC: &[u8] = b"\x93NUMPY";
/// `np.save` pads the preamble plus header to a multiple of this.
const ALIGN: usize = 64;

/// Reads a 2-D float32 `.npy` file into a row-major matrix.
pub fn read_f32(path: &Path) -> Result<Vectors, EmbedError> {
    let bytes = std::fs::read(path).map_err(|source| EmbedError::Read {
        path: path.into(),
        source,
    })?;
    decode_f32(&bytes, path)
}

/// Writes `vectors` as a version 1.0, `<f4`, C-order `.npy` file (not atomically).
pub fn write_f32(path: &Path, vectors: &Vectors) -> Result<(), EmbedError> {
    std::fs::write(path, encode_f32(vectors)).map_err(|source| EmbedError::Write {
        path: path.into(),
        source,
    })
}

/// The bytes of a `.npy` file holding `vectors`: what [`write_f32`] writes.
pub fn encode_f32(vectors: &Vectors) -> Vec<u8> {
    debug_assert_eq!(vectors.data.len(), vectors.n * vectors.dim);
    let data = vectors.data.iter().flat_map(|x| x.to_le_bytes());
    encode_matrix("<f4", vectors.n, vectors.dim, data)
}

/// The bytes of a `.npy` file holding a row-major `rows × cols` matrix of `u32` (`<u4`), such as
/// neighbour indices or label-set ids handed to another tool.
pub fn encode_u32(rows: usize, cols: usize, data: &[u32]) -> Vec<u8> {
    debug_assert_eq!(data.len(), rows * cols);
    encode_matrix("<u4", rows, cols, data.iter().flat_map(|x| x.to_le_bytes()))
}

/// A version 1.0, C-order `.npy` file of `descr` elements whose little-endian bytes are `data`.
fn encode_matrix(descr: &str, rows: usize, cols: usize, data: impl Iterator<Item = u8>) -> Vec<u8> {
    let dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Preamble (magic, version, u16 length) + dict + padding + '\n' is a multiple of ALIGN.
    let preamble = MAGIC.len() + 2 + 2;
    let unpadded = preamble + dict.len() + 1;
    let header_len = dict.len() + 1 + (ALIGN - unpadded % ALIGN) % ALIGN;
    let mut out = Vec::with_capacity(preamble + header_len + 4 * rows * cols);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(preamble + header_len - 1, b' ');
    out.push(b'\n');
    out.extend(data);
    out
}

/// Parses the bytes of a `.npy` file; `path` only names the file in errors.
pub fn decode_f32(bytes: &[u8], path: &Path) -> Result<Vectors, EmbedError> {
    let layout = layout(bytes, path)?;
    check_data_len(&layout, bytes.len() - layout.data_start, path)?;
    let (n, dim) = (layout.n, layout.dim);
    let values: Vec<f32> = bytes[layout.data_start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let data = if layout.fortran_order {
        transpose(&values, n, dim)
    } else {
        values
    };
    Ok(Vectors { n, dim, data })
}

/// The `(rows, dim)` of a `.npy` file, reading only its header (and checking its length).
pub fn read_shape(path: &Path) -> Result<(usize, usize), EmbedError> {
    let read = |source| EmbedError::Read {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let file_len = file.metadata().map_err(read)?.len() as usize;
    let mut prefix = Vec::new();
    file.take(MAX_HEADER_READ)
        .read_to_end(&mut prefix)
        .map_err(read)?;
    let layout = layout(&prefix, path)?;
    check_data_len(&layout, file_len - layout.data_start, path)?;
    Ok((layout.n, layout.dim))
}

/// Bytes [`read_shape`] reads; real headers are far shorter.
const MAX_HEADER_READ: u64 = 1 << 20;

/// What the header says: shape, order, and where the data starts.
struct Layout {
    n: usize,
    dim: usize,
    shape: Vec<usize>,
    fortran_order: bool,
    data_start: usize,
}

fn layout(bytes: &[u8], path: &Path) -> Result<Layout, EmbedError> {
    let malformed = |reason: String| EmbedError::MalformedHeader {
        path: path.into(),
        reason,
    };
    if !bytes.starts_with(MAGIC) {
        return Err(EmbedError::NotNpy { path: path.into() });
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(malformed("file ends inside the preamble".into())),
    };
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(EmbedError::UnsupportedVersion {
                path: path.into(),
                major,
                minor,
            });
        }
    };
    let start = 8 + len_bytes;
    let Some(len_field) = bytes.get(8..start) else {
        return Err(malformed("file ends inside the preamble".into()));
    };
    let header_len = len_field
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let Some(header) = bytes.get(start..start + header_len) else {
        return Err(malformed(format!(
            "header length {header_len} runs past the end of the file ({} bytes)",
            bytes.len()
        )));
    };
    let header = match major {
        // Versions 1 and 2 encode the header in latin-1, version 3 in UTF-8.
        3 => std::str::from_utf8(header)
            .map_err(|_| malformed("header is not valid UTF-8".into()))?
            .to_owned(),
        _ => header.iter().map(|&b| b as char).collect(),
    };
    let header = Header::parse(&header).map_err(malformed)?;

    if header.descr != "<f4" && !(header.descr == "=f4" && cfg!(target_endian = "little")) {
        return Err(EmbedError::WrongDtype {
            path: path.into(),
            descr: header.descr,
        });
    }
    let &[n, dim] = header.shape.as_slice() else {
        return Err(EmbedError::WrongDimensions {
            path: path.into(),
            shape: header.shape,
        });
    };
    Ok(Layout {
        n,
        dim,
        shape: header.shape,
        fortran_order: header.fortran_order,
        data_start: start + header_len,
    })
}

fn check_data_len(layout: &Layout, actual: usize, path: &Path) -> Result<(), EmbedError> {
    let (n, dim) = (layout.n, layout.dim);
    let expected = n
        .checked_mul(dim)
        .and_then(|count| count.checked_mul(4))
        .ok_or_else(|| EmbedError::MalformedHeader {
            path: path.into(),
            reason: format!("shape ({n}, {dim}) is too large"),
        })?;
    let shape = layout.shape.clone();
    if actual < expected {
        return Err(EmbedError::Truncated {
            path: path.into(),
            shape,
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(EmbedError::TrailingBytes {
            path: path.into(),
            shape,
            expected,
            actual,
        });
    }
    Ok(())
}

/// Column-major `n × dim` (element `(i, j)` at `j * n + i`) to row-major.
fn transpose(column_major: &[f32], n: usize, dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * dim];
    for (j, column) in column_major.chunks_exact(n.max(1)).enumerate().take(dim) {
        for (i, &x) in column.iter().enumerate() {
            out[i * dim + j] = x;
        }
    }
    out
}

/// The three keys every `.npy` header dict has, and only those.
#[derive(Debug, PartialEq)]
struct Header {
    /// The dtype as written; a structured dtype is rendered back as its Python literal.
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    fn parse(text: &str) -> Result<Header, String> {
        let mut parser = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let literal = parser.value()?;
        parser.skip_whitespace();
        if parser.pos != text.len() {
            return Err(format!(
                "unexpected text after the dict at byte {}",
                parser.pos
            ));
        }
        let Literal::Dict(entries) = literal else {
            return Err(format!("expected a dict, found {literal}"));
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        for (key, value) in entries {
            match key.as_str() {
                "descr" if descr.is_none() => descr = Some(value),
                "fortran_order" if fortran_order.is_none() => fortran_order = Some(value),
                "shape" if shape.is_none() => shape = Some(value),
                "descr" | "fortran_order" | "shape" => {
                    return Err(format!("duplicate key '{key}'"));
                }
                _ => return Err(format!("unexpected key '{key}'")),
            }
        }
        let missing = |key: &str| format!("missing key '{key}'");
        let descr = match descr.ok_or_else(|| missing("descr"))? {
            Literal::Str(s) => s,
            structured => structured.to_string(),
        };
        let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
            Literal::Bool(b) => b,
            other => {
                return Err(format!(
                    "'fortran_order' must be True or False, found {other}"
                ));
            }
        };
        let shape = match shape.ok_or_else(|| missing("shape"))? {
            Literal::Tuple(dims) => dims
                .into_iter()
                .map(|d| match d {
                    Literal::Int(d) => {
                        usize::try_from(d).map_err(|_| format!("dimension {d} is too large"))
                    }
                    other => Err(format!("'shape' must hold integers, found {other}")),
                })
                .collect::<Result<Vec<usize>, String>>()?,
            other => return Err(format!("'shape' must be a tuple, found {other}")),
        };
        Ok(Header {
            descr,
            fortran_order,
            shape,
        })
    }
}

/// The subset of Python literals a `.npy` header can contain.
#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(String, Literal)>),
}

/// Renders a literal as Python's `repr` would (near enough for error messages).
impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn items(f: &mut fmt::Formatter<'_>, items: &[Literal]) -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{item}")?;
            }
            Ok(())
        }
        match self {
            Literal::Str(s) => write!(f, "'{s}'"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Bool(true) => f.write_str("True"),
            Literal::Bool(false) => f.write_str("False"),
            Literal::None => f.write_str("None"),
            Literal::Tuple(v) if v.len() == 1 => write!(f, "({},)", v[0]),
            Literal::Tuple(v) => {
                f.write_str("(")?;
                items(f, v)?;
                f.write_str(")")
            }
            Literal::List(v) => {
                f.write_str("[")?;
                items(f, v)?;
                f.write_str("]")
            }
            Literal::Dict(entries) => {
                f.write_str("{")?;
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "'{key}': {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A recursive-descent parser over the header text; errors say what was expected where.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Containers open around `pos`.
    depth: usize,
}

/// How deep containers may nest. Real headers nest a few levels (the dict, its shape tuple, a
/// structured dtype's lists of field tuples); without a bound, a header of 5 000 '(' overflowed the
/// stack (run through the `npy` fuzz target).
const MAX_DEPTH: usize = 32;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    /// Skips whitespace, then consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(c);
        if found {
            self.pos += c.len_utf8();
        }
        found
    }

    fn unexpected(&self, expected: &str) -> String {
        match self.peek() {
            Some(c) => format!("expected {expected} at byte {}, found '{c}'", self.pos),
            None => format!("expected {expected}, found the end of the header"),
        }
    }

    fn value(&mut self) -> Result<Literal, String> {
        self.skip_whitespace();
        match self.peek() {
            Some('\'' | '"') => self.string().map(Literal::Str),
            Some('0'..='9') => self.int(),
            Some(open @ ('(' | '[' | '{')) => self.container(open),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            _ => Err(self.unexpected("a value")),
        }
    }

    /// A tuple, list or dict, `open` next, nested at most [`MAX_DEPTH`] deep.
    fn container(&mut self, open: char) -> Result<Literal, String> {
        if self.depth == MAX_DEPTH {
            return Err(format!(
                "containers nest more than {MAX_DEPTH} deep at byte {}",
                self.pos
            ));
        }
        self.depth += 1;
        let literal = match open {
            '(' => self.sequence(')').map(Literal::Tuple),
            '[' => self.sequence(']').map(Literal::List),
            _ => self.dict(),
        };
        self.depth -= 1;
        literal
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek().ok_or_else(|| self.unexpected("a string"))?;
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut escaped = false;
        for (offset, c) in self.text[self.pos..].char_indices() {
            match c {
                _ if escaped => {
                    out.push(c);
                    escaped = false;
                }
                '\\' => escaped = true,
                _ if c == quote => {
                    self.pos += offset + 1;
                    return Ok(out);
                }
                _ => out.push(c),
            }
        }
        Err(format!("unterminated string starting at byte {start}"))
    }

    fn int(&mut self) -> Result<Literal, String> {
        let start = self.pos;
        let digits = self.text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        self.pos += digits;
        let value = self.text[start..self.pos]
            .parse()
            .map_err(|_| format!("integer at byte {start} is too large"))?;
        // Python 2 numpy wrote long integers as `3L`.
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        Ok(Literal::Int(value))
    }

    fn word(&mut self) -> Result<Literal, String> {
        let start = self.pos;
        let len = self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .count();
        self.pos += len;
        match &self.text[start..self.pos] {
            "True" => Ok(Literal::Bool(true)),
            "False" => Ok(Literal::Bool(false)),
            "None" => Ok(Literal::None),
            word => Err(format!("unexpected name '{word}' at byte {start}")),
        }
    }

    /// Items separated by commas up to `close`, a trailing comma allowed; the opener comes next.
    fn sequence(&mut self, close: char) -> Result<Vec<Literal>, String> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(',') {
                return Err(self.unexpected(&format!("',' or '{close}'")));
            }
        }
    }

    fn dict(&mut self) -> Result<Literal, String> {
        self.pos += 1;
        let mut entries = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(Literal::Dict(entries));
            }
            self.skip_whitespace();
            if !matches!(self.peek(), Some('\'' | '"')) {
                return Err(self.unexpected("a string key"));
            }
            let key = self.string()?;
            if !self.eat(':') {
                return Err(self.unexpected("':'"));
            }
            entries.push((key, self.value()?));
            if self.eat('}') {
                return Ok(Literal::Dict(entries));
            }
            if !self.eat(',') {
                return Err(self.unexpected("',' or '}'"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("vectors/text.npy")
    }

    /// A `.npy` file built by hand, independently of [`encode_f32`]: the preamble of `version`,
    /// `dict` padded with spaces to a multiple of 64 bytes and ending in '\n', then `data`.
    fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let len_bytes = if version == 1 { 2 } else { 4 };
        let preamble = 8 + len_bytes;
        let total = (preamble + dict.len() + 1).div_ceil(64) * 64;
        let header_len = total - preamble;
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[version, 0]);
        out.extend_from_slice(&(header_len as u32).to_le_bytes()[..len_bytes]);
        out.extend_from_slice(format!("{dict:<width$}\n", width = header_len - 1).as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn decode_err(bytes: &[u8]) -> String {
        decode_f32(bytes, &path()).unwrap_err().to_string()
    }

    const DICT_2X3: &str = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

    #[test]
    fn writes_the_bytes_numpy_writes() {
        // np.save of np.arange(6, dtype=np.float32).reshape(2, 3): 10-byte preamble, a 118-byte
        // header (0x76 = b'v'), 24 bytes of data.
        let mut want = b"\x93NUMPY\x01\x00v\x00".to_vec();
        want.extend_from_slice(DICT_2X3.as_bytes());
        want.extend_from_slice(&[b' '; 58]);
        want.push(b'\n');
        assert_eq!(want.len(), 128);
        want.extend_from_slice(&le_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));

        let v = Vectors {
            n: 2,
            dim: 3,
            data: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        };
        assert_eq!(encode_f32(&v), want);
        assert_eq!(decode_f32(&want, &path()).unwrap(), v);
    }

    #[test]
    fn writes_u32_matrices_as_numpy_does() {
        let data = [0u32, 7, u32::MAX, 42, 1, 2];
        let dict = "{'descr': '<u4', 'fortran_order': False, 'shape': (3, 2), }";
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(encode_u32(3, 2, &data), npy(1, dict, &bytes));
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.npy");
        let v = Vectors {
            n: 3,
            dim: 2,
            data: vec![1.5, -2.0, f32::MIN_POSITIVE, 1e30, 0.0, -0.25],
        };
        write_f32(&file, &v).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!((bytes.len() - 24) % 64, 0, "header is padded to 64 bytes");
        assert_eq!(read_f32(&file).unwrap(), v);
    }

    #[test]
    fn reads_header_variants() {
        let data = le_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let want = Vectors {
            n: 2,
            dim: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        for dict in [
            DICT_2X3,
            "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
            "{ \"descr\" :\"<f4\",'fortran_order':False,'shape':(2,3,),}",
            "{'descr': '=f4',\n 'fortran_order': False,\t'shape': (2L, 3L), }",
        ] {
            assert_eq!(
                decode_f32(&npy(1, dict, &data), &path()).unwrap(),
                want,
                "{dict}"
            );
        }
        // Versions 2.0 and 3.0 differ only in a 4-byte header length.
        for version in [2, 3] {
            assert_eq!(
                decode_f32(&npy(version, DICT_2X3, &data), &path()).unwrap(),
                want
            );
        }
    }

    #[test]
    fn transposes_fortran_order() {
        // Column-major [[1, 2, 3], [4, 5, 6]]: columns (1, 4), (2, 5), (3, 6).
        let data = le_bytes(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        let v = decode_f32(&npy(1, dict, &data), &path()).unwrap();
        assert_eq!(
            v,
            Vectors {
                n: 2,
                dim: 3,
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
            }
        );
    }

    #[test]
    fn reads_empty_matrices() {
        let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (0, 4), }";
        let v = decode_f32(&npy(1, dict, &[]), &path()).unwrap();
        assert_eq!(
            v,
            Vectors {
                n: 0,
                dim: 4,
                data: vec![]
            }
        );
    }

    #[test]
    fn rejects_what_is_not_npy() {
        assert_eq!(
            decode_err(b"PK\x03\x04"),
            "vectors/text.npy: not a .npy file (missing the \\x93NUMPY magic bytes)"
        );
        assert_eq!(
            decode_err(b""),
            "vectors/text.npy: not a .npy file (missing the \\x93NUMPY magic bytes)"
        );
        assert_eq!(
            decode_err(b"\x93NUMPY\x01"),
            "vectors/text.npy: malformed .npy header: file ends inside the preamble"
        );
        assert_eq!(
            decode_err(&npy(4, DICT_2X3, &[])),
            "vectors/text.npy: unsupported .npy format version 4.0 (supported: 1.0, 2.0, 3.0)"
        );
        let mut short = npy(1, DICT_2X3, &[]);
        short.truncate(100);
        assert_eq!(
            decode_err(&short),
            "vectors/text.npy: malformed .npy header: header length 118 runs past the end of the file (100 bytes)"
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        let cases = [
            (
                "{'descr': '<f4', 'fortran_order': False}",
                "missing key 'shape'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}",
                "unexpected key 'x'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}",
                "'fortran_order' must be True or False, found 0",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}",
                "'shape' must be a tuple, found [2, 3]",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
                "expected ',' or '}', found the end of the header",
            ),
            (
                "{'descr': '<f4' 'fortran_order': False}",
                "expected ',' or '}' at byte 16, found '''",
            ),
            ("{'descr: '<f4'}", "expected ':' at byte 10, found '<'"),
            (
                "{'descr': '<f4', 'fortran_order': false, 'shape': (2, 3)}",
                "unexpected name 'false' at byte 34",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
                "unexpected text after the dict at byte 58",
            ),
        ];
        for (dict, reason) in cases {
            assert_eq!(
                decode_err(&npy(1, dict, &[])),
                format!("vectors/text.npy: malformed .npy header: {reason}"),
                "{dict}"
            );
        }
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing_the_stack() {
        // Nested '(' overflowed the stack: 5 000 of them in the `npy` fuzz target's build.
        let deep = "(".repeat(60_000);
        assert_eq!(
            decode_err(&npy(2, &deep, &[])),
            "vectors/text.npy: malformed .npy header: containers nest more than 32 deep at byte 32"
        );
        // Nesting within the limit still parses: a structured dtype is refused for its dtype.
        let nested = format!(
            "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (1, 1), }}",
            "[('x', ".repeat(15),
            ")]".repeat(15)
        );
        let err = decode_err(&npy(1, &nested, &[0; 4]));
        assert!(err.contains("is not float32"), "{err}");
    }

    #[test]
    fn rejects_other_dtypes_with_the_fix() {
        for (descr, advice) in [
            (
                "'<f8'",
                "'<f8' is not float32; convert with arr.astype(np.float32)",
            ),
            (
                "'<f2'",
                "'<f2' is not float32; convert with arr.astype(np.float32)",
            ),
            (
                "'|u1'",
                "'|u1' is not float32; convert with arr.astype(np.float32)",
            ),
            (
                "'>f4'",
                "'>f4' is big-endian float32; convert with arr.astype('<f4')",
            ),
            (
                "[('x', '<f4')]",
                "'[('x', '<f4')]' is not float32; convert with arr.astype(np.float32)",
            ),
        ] {
            let dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (1, 1), }}");
            assert_eq!(
                decode_err(&npy(1, &dict, &[0; 8])),
                format!("vectors/text.npy: dtype {advice}")
            );
        }
    }

    #[test]
    fn rejects_other_dimensions() {
        for (shape, shown) in [("(6,)", "(6,)"), ("(1, 2, 3)", "(1, 2, 3)"), ("()", "()")] {
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            assert_eq!(
                decode_err(&npy(1, &dict, &[0; 24])),
                format!(
                    "vectors/text.npy: expected a 2-D array of shape (N, D), found shape {shown}"
                )
            );
        }
    }

    #[test]
    fn rejects_data_of_the_wrong_size() {
        assert_eq!(
            decode_err(&npy(1, DICT_2X3, &[0; 20])),
            "vectors/text.npy: truncated data: shape (2, 3) needs 24 bytes of float32, found 20"
        );
        assert_eq!(
            decode_err(&npy(1, DICT_2X3, &[0; 25])),
            "vectors/text.npy: 1 unexpected bytes after the data of shape (2, 3)"
        );
        let huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }";
        assert_eq!(
            decode_err(&npy(1, huge, &[])),
            "vectors/text.npy: malformed .npy header: shape (18446744073709551615, 2) is too large"
        );
    }

    #[test]
    fn read_names_a_missing_file() {
        let err = read_f32(Path::new("/nonexistent/v.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/nonexistent/v.npy: cannot read: "),
            "{err}"
        );
    }
}
