//! Legacy PyTorch checkpoints (`torch.save` before the zip format, PyTorch < 1.6, or with
//! `_use_new_zipfile_serialization=False`) read without Python, and written out as safetensors.
//!
//! The file is five pickles and the raw storages: the magic number, the protocol version, a
//! sys-info dict, the object (here a state dict whose tensors are
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls with storages as
//! persistent ids `('storage', torch.XStorage, key, location, numel, None)`), the list of storage
//! keys, then for each key in that order its element count (u64, little-endian) and its bytes.
//!
//! The pickle machine here knows only the opcodes such files use and only the callables a state
//! dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter`); anything else is a [`TorchError`], never code execution
//! and never a panic: every length is checked against the bytes that remain before anything is
//! allocated.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What is wrong with a file; `at` is a byte offset into it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TorchError {
    #[error("not a legacy PyTorch checkpoint: {0}")]
    NotLegacy(String),
    #[error("offset {at}: the file ends inside {what}")]
    Truncated { at: usize, what: &'static str },
    #[error("offset {at}: {message}")]
    Pickle { at: usize, message: String },
    #[error("storage {key}: {message}")]
    Storage { key: String, message: String },
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
    #[error("writing safetensors: {0}")]
    Safetensors(String),
}

/// Element types of PyTorch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage_class(name: &str) -> Option<Dtype> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            Dtype::F64 => S::F64,
            Dtype::F32 => S::F32,
            Dtype::F16 => S::F16,
            Dtype::BF16 => S::BF16,
            Dtype::I64 => S::I64,
            Dtype::I32 => S::I32,
            Dtype::I16 => S::I16,
            Dtype::I8 => S::I8,
            Dtype::U8 => S::U8,
            Dtype::Bool => S::BOOL,
        }
    }
}

/// One tensor of the state dict, contiguous, little-endian.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// `torch.save`'s magic number, 0x1950a86a20f9469cfc6c, as pickle's little-endian LONG1 bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// Reads the state dict of a legacy checkpoint: its tensors, in the dict's order.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<Tensor>, TorchError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(TorchError::NotLegacy(
            "a zip-format checkpoint (PyTorch 1.6 or later); only the legacy format is read here"
                .into(),
        ));
    }
    let mut input = Input { bytes, at: 0 };
    let mut storages = HashMap::new();
    match unpickle(&mut input, &mut storages)? {
        Value::BigInt(b) if b == MAGIC => {}
        _ => return Err(TorchError::NotLegacy("no torch.save magic number".into())),
    }
    match unpickle(&mut input, &mut storages)? {
        Value::Int(PROTOCOL_VERSION) => {}
        _ => return Err(TorchError::NotLegacy("unknown protocol version".into())),
    }
    let sys_info = unpickle(&mut input, &mut storages)?;
    if dict_get(&sys_info, "little_endian").is_some_and(|v| !matches!(v, Value::Bool(true))) {
        return Err(TorchError::NotLegacy(
            "saved on a big-endian machine".into(),
        ));
    }
    let root = unpickle(&mut input, &mut storages)?;
    let keys_at = input.at;
    let keys = match unpickle(&mut input, &mut storages)? {
        Value::List(list) => list.borrow().clone(),
        _ => return Err(pickle_error(keys_at, "the storage key list is not a list")),
    };
    let data = read_storages(&mut input, &keys, &storages)?;
    tensors(&root, &data)
}

/// Serialises `tensors` as a safetensors file (deterministic: the format sorts tensors, and the
/// only metadata is `format: pt`).
pub fn to_safetensors(tensors: &[Tensor]) -> Result<Vec<u8>, TorchError> {
    let views = tensors
        .iter()
        .map(|t| {
            safetensors::tensor::TensorView::new(t.dtype.safetensors(), t.shape.clone(), &t.data)
                .map(|view| (t.name.as_str(), view))
                .map_err(|e| TorchError::Safetensors(format!("{}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| TorchError::Safetensors(e.to_string()))
}

/// A storage as its persistent id describes it.
#[derive(Clone, Debug, PartialEq)]
struct StorageRef {
    key: String,
    dtype: Dtype,
    numel: usize,
}

#[derive(Clone, Debug)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Pickle values; lists and dicts are shared, as Python objects are, so that mutations after
/// memoisation are seen through the memo.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A LONG1 too wide for i64: its little-endian two's complement bytes.
    BigInt(Vec<u8>),
    /// A float (only sys-info could hold one; its value is never needed).
    Float,
    Str(String),
    Tuple(Vec<Value>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
}

fn dict_get(value: &Value, key: &str) -> Option<Value> {
    let Value::Dict(items) = value else {
        return None;
    };
    let items = items.borrow();
    items
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
        .map(|(_, v)| v.clone())
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TorchError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(TorchError::Truncated { at: self.at, what })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TorchError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TorchError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, TorchError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, TorchError> {
        let b = self.take(8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(b);
        Ok(u64::from_le_bytes(array))
    }

    fn line(&mut self, what: &'static str) -> Result<String, TorchError> {
        let rest = &self.bytes[self.at..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(TorchError::Truncated { at: self.at, what });
        };
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }
}

fn pickle_error(at: usize, message: impl Into<String>) -> TorchError {
    TorchError::Pickle {
        at,
        message: message.into(),
    }
}

/// The pickle machine's state for one pickle.
struct Machine {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self, at: usize) -> Result<Value, TorchError> {
        self.stack
            .pop()
            .ok_or_else(|| pickle_error(at, "pop from an empty stack"))
    }

    /// The values pushed since the last MARK.
    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>, TorchError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| pickle_error(at, "no MARK"))?;
        if mark > self.stack.len() {
            return Err(pickle_error(at, "MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self, at: usize) -> Result<&mut Value, TorchError> {
        self.stack
            .last_mut()
            .ok_or_else(|| pickle_error(at, "empty stack"))
    }

    fn memo_get(&self, key: u32, at: usize) -> Result<Value, TorchError> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| pickle_error(at, format!("memo {key} is not set")))
    }

    fn memo_put(&mut self, key: u32, at: usize) -> Result<(), TorchError> {
        let value = self
            .stack
            .last()
            .ok_or_else(|| pickle_error(at, "memoising an empty stack"))?;
        self.memo.insert(key, value.clone());
        Ok(())
    }
}

/// Runs one pickle to its STOP, recording every storage its persistent ids name.
fn unpickle(
    input: &mut Input,
    storages: &mut HashMap<String, StorageRef>,
) -> Result<Value, TorchError> {
    let mut m = Machine {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = input.at;
        let op = input.u8("a pickle")?;
        match op {
            0x80 => {
                input.u8("PROTO")?;
            }
            b'.' => return m.pop(at),
            b'(' => m.marks.push(m.stack.len()),
            b'N' => m.stack.push(Value::None),
            0x88 => m.stack.push(Value::Bool(true)),
            0x89 => m.stack.push(Value::Bool(false)),
            b'K' => {
                let v = input.u8("BININT1")?;
                m.stack.push(Value::Int(v.into()));
            }
            b'M' => {
                let v = input.u16("BININT2")?;
                m.stack.push(Value::Int(v.into()));
            }
            b'J' => {
                let v = input.u32("BININT")? as i32;
                m.stack.push(Value::Int(v.into()));
            }
            0x8a => {
                let n = input.u8("LONG1")? as usize;
                m.stack.push(long(input.take(n, "LONG1")?));
            }
            b'G' => {
                input.take(8, "BINFLOAT")?;
                m.stack.push(Value::Float);
            }
            b'X' | 0x8c => {
                let n = if op == b'X' {
                    input.u32("BINUNICODE")? as usize
                } else {
                    input.u8("SHORT_BINUNICODE")? as usize
                };
                let text = std::str::from_utf8(input.take(n, "a string")?)
                    .map_err(|_| pickle_error(at, "a string is not UTF-8"))?;
                m.stack.push(Value::Str(text.to_owned()));
            }
            b'}' => m.stack.push(Value::Dict(Rc::default())),
            b']' => m.stack.push(Value::List(Rc::default())),
            b')' => m.stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = m.pop_mark(at)?;
                m.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if m.stack.len() < n {
                    return Err(pickle_error(at, "TUPLE of missing items"));
                }
                let items = m.stack.split_off(m.stack.len() - n);
                m.stack.push(Value::Tuple(items));
            }
            b'q' => {
                let key = input.u8("BINPUT")?;
                m.memo_put(key.into(), at)?;
            }
            b'r' => {
                let key = input.u32("LONG_BINPUT")?;
                m.memo_put(key, at)?;
            }
            0x94 => {
                let key = m.memo.len() as u32;
                m.memo_put(key, at)?;
            }
            b'h' => {
                let key = input.u8("BINGET")?;
                let value = m.memo_get(key.into(), at)?;
                m.stack.push(value);
            }
            b'j' => {
                let key = input.u32("LONG_BINGET")?;
                let value = m.memo_get(key, at)?;
                m.stack.push(value);
            }
            b's' => {
                let value = m.pop(at)?;
                let key = m.pop(at)?;
                insert(m.top(at)?, vec![key, value], at)?;
            }
            b'u' => {
                let items = m.pop_mark(at)?;
                insert(m.top(at)?, items, at)?;
            }
            b'a' => {
                let value = m.pop(at)?;
                append(m.top(at)?, vec![value], at)?;
            }
            b'e' => {
                let items = m.pop_mark(at)?;
                append(m.top(at)?, items, at)?;
            }
            b'c' => {
                let module = input.line("GLOBAL")?;
                let name = input.line("GLOBAL")?;
                m.stack.push(Value::Global(module, name));
            }
            b'R' => {
                let args = m.pop(at)?;
                let callable = m.pop(at)?;
                m.stack.push(reduce(callable, args, at)?);
            }
            b'b' => {
                // BUILD sets state (the state dict's `_metadata`), which is not needed.
                m.pop(at)?;
                m.top(at)?;
            }
            b'Q' => {
                let pid = m.pop(at)?;
                let storage = storage_ref(pid, at)?;
                if let Some(known) = storages.get(&storage.key)
                    && *known != storage
                {
                    return Err(pickle_error(
                        at,
                        format!("storage {} described twice, differently", storage.key),
                    ));
                }
                storages.insert(storage.key.clone(), storage.clone());
                m.stack.push(Value::Storage(storage));
            }
            other => {
                return Err(pickle_error(
                    at,
                    format!("unsupported pickle opcode 0x{other:02x}"),
                ));
            }
        }
    }
}

/// A LONG1 payload: little-endian two's complement.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt(bytes.to_vec());
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut array = [if negative { 0xff } else { 0 }; 8];
    array[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(array))
}

fn insert(target: &mut Value, items: Vec<Value>, at: usize) -> Result<(), TorchError> {
    let Value::Dict(dict) = target else {
        return Err(pickle_error(at, "SETITEM on a non-dict"));
    };
    if !items.len().is_multiple_of(2) {
        return Err(pickle_error(at, "SETITEMS with an odd number of items"));
    }
    let mut dict = dict.borrow_mut();
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        dict.push((key, value));
    }
    Ok(())
}

fn append(target: &mut Value, items: Vec<Value>, at: usize) -> Result<(), TorchError> {
    let Value::List(list) = target else {
        return Err(pickle_error(at, "APPEND to a non-list"));
    };
    list.borrow_mut().extend(items);
    Ok(())
}

/// The few callables a state dict uses.
fn reduce(callable: Value, args: Value, at: usize) -> Result<Value, TorchError> {
    let Value::Global(module, name) = callable else {
        return Err(pickle_error(at, "REDUCE of a non-global"));
    };
    let Value::Tuple(args) = args else {
        return Err(pickle_error(at, "REDUCE arguments are not a tuple"));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if args.is_empty() => Ok(Value::Dict(Rc::default())),
        ("torch._utils", "_rebuild_tensor_v2") => rebuild_tensor(args, at),
        ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => Ok(tensor),
            _ => Err(pickle_error(at, "_rebuild_parameter without a tensor")),
        },
        _ => Err(pickle_error(
            at,
            format!("unsupported callable {module}.{name}"),
        )),
    }
}

fn usize_of(value: &Value, what: &str, at: usize) -> Result<usize, TorchError> {
    match value {
        Value::Int(v) => {
            usize::try_from(*v).map_err(|_| pickle_error(at, format!("{what} {v} is negative")))
        }
        _ => Err(pickle_error(at, format!("{what} is not an integer"))),
    }
}

fn usizes(value: &Value, what: &str, at: usize) -> Result<Vec<usize>, TorchError> {
    match value {
        Value::Tuple(items) => items.iter().map(|v| usize_of(v, what, at)).collect(),
        _ => Err(pickle_error(at, format!("{what} is not a tuple"))),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)`.
fn rebuild_tensor(args: Vec<Value>, at: usize) -> Result<Value, TorchError> {
    let [Value::Storage(storage), offset, size, stride, ..] = args.as_slice() else {
        return Err(pickle_error(
            at,
            "_rebuild_tensor_v2 without (storage, offset, size, stride)",
        ));
    };
    let shape = usizes(size, "size", at)?;
    let stride = usizes(stride, "stride", at)?;
    if shape.len() != stride.len() {
        return Err(pickle_error(at, "size and stride differ in length"));
    }
    Ok(Value::Tensor(TensorRef {
        storage: storage.clone(),
        offset: usize_of(offset, "storage offset", at)?,
        shape,
        stride,
    }))
}

/// `('storage', torch.XStorage, key, location, numel, None)`.
fn storage_ref(pid: Value, at: usize) -> Result<StorageRef, TorchError> {
    let Value::Tuple(items) = pid else {
        return Err(pickle_error(at, "persistent id is not a tuple"));
    };
    let [
        Value::Str(tag),
        Value::Global(module, class),
        Value::Str(key),
        _location,
        numel,
        view,
    ] = items.as_slice()
    else {
        return Err(pickle_error(
            at,
            "persistent id is not ('storage', type, key, location, numel, view)",
        ));
    };
    if tag != "storage" || module != "torch" {
        return Err(pickle_error(
            at,
            format!("persistent id ({tag:?}, {module}.{class}) is not a storage"),
        ));
    }
    if !matches!(view, Value::None) {
        return Err(pickle_error(
            at,
            format!("storage {key} is a view of another storage"),
        ));
    }
    let dtype = Dtype::from_storage_class(class)
        .ok_or_else(|| pickle_error(at, format!("unsupported storage type torch.{class}")))?;
    Ok(StorageRef {
        key: key.clone(),
        dtype,
        numel: usize_of(numel, "storage size", at)?,
    })
}

/// The raw bytes of every storage, in the order of `keys`.
fn read_storages<'a>(
    input: &mut Input<'a>,
    keys: &[Value],
    storages: &HashMap<String, StorageRef>,
) -> Result<HashMap<String, &'a [u8]>, TorchError> {
    let mut data = HashMap::with_capacity(keys.len());
    for key in keys {
        let Value::Str(key) = key else {
            return Err(pickle_error(input.at, "a storage key is not a string"));
        };
        let storage_error = |message: String| TorchError::Storage {
            key: key.clone(),
            message,
        };
        let storage = storages
            .get(key)
            .ok_or_else(|| storage_error("listed but used by no tensor".into()))?;
        let numel = input.u64("a storage's size")?;
        if usize::try_from(numel) != Ok(storage.numel) {
            return Err(storage_error(format!(
                "{numel} elements in the data, {} in its id",
                storage.numel
            )));
        }
        let len = storage
            .numel
            .checked_mul(storage.dtype.size())
            .ok_or_else(|| storage_error("size overflows".into()))?;
        data.insert(key.clone(), input.take(len, "a storage's bytes")?);
    }
    Ok(data)
}

/// The root dict's tensors, gathered into contiguous bytes.
fn tensors(root: &Value, data: &HashMap<String, &[u8]>) -> Result<Vec<Tensor>, TorchError> {
    let Value::Dict(items) = root else {
        return Err(TorchError::NotLegacy(
            "the saved object is not a dict of tensors".into(),
        ));
    };
    let items = items.borrow();
    let mut out: Vec<Tensor> = Vec::with_capacity(items.len());
    for (key, value) in items.iter() {
        let Value::Str(name) = key else {
            return Err(TorchError::NotLegacy(
                "a state dict key is not a string".into(),
            ));
        };
        let tensor_error = |message: String| TorchError::Tensor {
            name: name.clone(),
            message,
        };
        let Value::Tensor(tensor) = value else {
            return Err(tensor_error("not a tensor".into()));
        };
        if out.iter().any(|t| t.name == *name) {
            return Err(tensor_error("appears twice".into()));
        }
        let bytes = data
            .get(&tensor.storage.key)
            .ok_or_else(|| tensor_error(format!("storage {} has no data", tensor.storage.key)))?;
        let data = gather(tensor, bytes).map_err(tensor_error)?;
        out.push(Tensor {
            name: name.clone(),
            dtype: tensor.storage.dtype,
            shape: tensor.shape.clone(),
            data,
        });
    }
    Ok(out)
}

/// The tensor's elements in row-major order, from its storage, offset and strides.
fn gather(tensor: &TensorRef, storage: &[u8]) -> Result<Vec<u8>, String> {
    let size = tensor.storage.dtype.size();
    let numel = tensor
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("its size overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    if numel > tensor.storage.numel {
        // Only an expanded (stride 0) view has more elements than its storage; state dicts hold
        // none, and refusing them bounds the allocation by the file's size.
        return Err(format!(
            "has {numel} elements, its storage {}",
            tensor.storage.numel
        ));
    }
    // The last element read must lie inside the storage.
    let last = tensor
        .shape
        .iter()
        .zip(&tensor.stride)
        .try_fold(tensor.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        })
        .ok_or("its extent overflows")?;
    if last >= tensor.storage.numel {
        return Err(format!(
            "reads element {last} of a storage of {}",
            tensor.storage.numel
        ));
    }
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0usize; tensor.shape.len()];
    for _ in 0..numel {
        let element = tensor.offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&storage[element * size..][..size]);
        // Odometer increment, last axis fastest.
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < tensor.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &[u8] = include_bytes!("testdata/tiny.pth");

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn reads_the_tiny_checkpoint() {
        let tensors = read_state_dict(TINY).unwrap();
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "layer.weight",
                "layer.num_batches_tracked",
                "view.transposed",
                "view.slice",
                "double"
            ]
        );
        assert_eq!(tensors[0].shape, [2, 3]);
        assert_eq!(f32s(&tensors[0]), [1.0, -2.0, 3.0, 4.0, 5.5, -6.0]);
        assert_eq!((tensors[1].dtype, tensors[1].shape.len()), (Dtype::I64, 0));
        assert_eq!(tensors[1].data, 7i64.to_le_bytes());
        // base = arange(12) / 2 as 3×4; its transpose and the [1:, 2:] slice.
        assert_eq!(tensors[2].shape, [4, 3]);
        assert_eq!(
            f32s(&tensors[2]),
            [0.0, 2.0, 4.0, 0.5, 2.5, 4.5, 1.0, 3.0, 5.0, 1.5, 3.5, 5.5]
        );
        assert_eq!(f32s(&tensors[3]), [3.0, 3.5, 5.0, 5.5]);
        assert_eq!(tensors[4].dtype, Dtype::F64);
        assert_eq!(tensors[4].data[..8], 0.25f64.to_le_bytes());
    }

    #[test]
    fn safetensors_output_is_deterministic_and_reads_back() {
        let tensors = read_state_dict(TINY).unwrap();
        let bytes = to_safetensors(&tensors).unwrap();
        assert_eq!(bytes, to_safetensors(&tensors).unwrap());
        let back = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let view = back.tensor("view.slice").unwrap();
        assert_eq!(view.shape(), [2, 2]);
        assert_eq!(view.data(), tensors[3].data.as_slice());
        assert_eq!(
            back.tensor("layer.num_batches_tracked").unwrap().dtype(),
            safetensors::Dtype::I64
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..TINY.len() {
            assert!(
                read_state_dict(&TINY[..len]).is_err(),
                "prefix of {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        // Flip each byte in turn: most flips are errors, some land in tensor data and read fine;
        // none may panic.
        for i in 0..TINY.len() {
            let mut bytes = TINY.to_vec();
            bytes[i] ^= 0xa5;
            let _ = read_state_dict(&bytes);
        }
        let mut state = 0x2545f4914f6cdd1du64;
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(read_state_dict(&garbage).is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let zip = read_state_dict(b"PK\x03\x04rest").unwrap_err();
        assert!(zip.to_string().contains("zip-format"), "{zip}");
        let short = read_state_dict(&TINY[..TINY.len() - 3]).unwrap_err();
        assert!(
            matches!(
                short,
                TorchError::Truncated {
                    what: "a storage's bytes",
                    ..
                }
            ),
            "{short}"
        );
        // A pickle that calls something else than the state dict callables.
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.";
        let err = read_state_dict(evil).unwrap_err();
        assert!(
            err.to_string().contains("unsupported callable os.system"),
            "{err}"
        );
    }
}
