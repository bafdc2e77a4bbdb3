//! `embedlab-plugin`: the C ABI shared by the embedlab engine and its encoder plugins, and the safe
//! Rust side plugin authors write against.
//!
//! A plugin is a `cdylib` (any language) exporting one symbol, [`ENTRY_SYMBOL`]
//! (`embedlab_plugin_v1`), a function that returns a pointer to a static [`PluginTable`]. The
//! engine reads the table's fixed header ([`TableHeader`]: ABI version and table size) first,
//! refuses a mismatch with a clear message, and only then uses the function entries.
//!
//! Rust plugin authors never see the ABI: they implement [`Plugin`] and [`Encoder`] and call
//! [`export_plugin!`]; the SDK generates the symbol, the table and `extern "C"` shims that check
//! every pointer and length, and catch panics (a panic unwinding out of an `extern "C"` function
//! would abort the host).
//!
//! ```
//! use embedlab_plugin::{Config, Description, Encoder, Modality, ModelInfo, Plugin, PluginError};
//!
//! pub struct Lengths;
//! pub struct LengthEncoder;
//!
//! impl Plugin for Lengths {
//!     const NAME: &'static str = "lengths"; // the file is libembedlab_lengths.so
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     type Encoder = LengthEncoder;
//!
//!     fn models() -> Vec<ModelInfo> {
//!         vec![ModelInfo::new("len", "text length in bytes and chars")]
//!     }
//!
//!     fn create(config: &str) -> Result<LengthEncoder, PluginError> {
//!         let config = Config::parse(config)?;
//!         match config.model.as_str() {
//!             "len" => Ok(LengthEncoder),
//!             other => Err(PluginError::bad_config(format!("unknown model {other:?}"))),
//!         }
//!     }
//! }
//!
//! impl Encoder for LengthEncoder {
//!     fn describe(&self) -> Description {
//!         Description { modalities: vec![Modality::Text], dim: 2, parameters: 0, weights_digest: String::new(), device: "cpu".into() }
//!     }
//!
//!     fn encode_texts(&mut self, texts: &[&str], out: &mut [f32]) -> Result<(), PluginError> {
//!         // `out` is exactly texts.len() × dim: row i belongs to texts[i].
//!         for (text, row) in texts.iter().zip(out.chunks_exact_mut(2)) {
//!             row[0] = text.len() as f32;
//!             row[1] = text.chars().count() as f32;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! embedlab_plugin::export_plugin!(Lengths);
//! ```
//!
//! Build it with `crate-type = ["cdylib"]` and a `[lib] name` of `embedlab_<NAME>` (cargo's
//! default for a package called `embedlab-<NAME>`), so the file is `libembedlab_<NAME>.so`
//! (`embedlab_<NAME>.dll`, `libembedlab_<NAME>.dylib`), and drop it in a plugin folder. Keep the
//! default `panic = "unwind"`: with `panic = "abort"` the SDK cannot turn a panic into an error.
//!
//! # The ABI, for plugins written in C, C++ or anything else
//!
//! ```c
//! #include <stddef.h>
//! #include <stdint.h>
//!
//! /* Status codes (int32_t). Anything but EMBEDLAB_OK comes with a message written to `err`. */
//! typedef int32_t embedlab_status;
//! #define EMBEDLAB_OK                0
//! #define EMBEDLAB_BAD_CONFIG        1  /* config JSON invalid, or an unknown model            */
//! #define EMBEDLAB_MODEL_UNAVAILABLE 2  /* weights missing or unreadable                       */
//! #define EMBEDLAB_BAD_INPUT         3  /* a text or image (or a buffer) was rejected          */
//! #define EMBEDLAB_PANIC             4  /* the plugin crashed internally (caught)              */
//! #define EMBEDLAB_INTERNAL          5  /* anything else                                       */
//! #define EMBEDLAB_UNSUPPORTED       6  /* e.g. images asked of a text-only encoder            */
//!
//! typedef struct { uint32_t major; uint32_t minor; } embedlab_abi_version;
//!
//! /* A UTF-8 string: pointer + length, not NUL-terminated. ptr may be NULL when len == 0. */
//! typedef struct { const uint8_t *ptr; size_t len; } embedlab_str;
//!
//! /* A sink the host owns; the plugin appends bytes with write(ctx, ptr, len), any number of
//!    times (the host concatenates them). Valid only during the call it is passed to. */
//! typedef struct {
//!     void *ctx;
//!     void (*write)(void *ctx, const uint8_t *ptr, size_t len);
//! } embedlab_writer;
//!
//! /* A decoded image: row-major RGB8, rgb_len == width * height * 3. */
//! typedef struct { uint32_t width; uint32_t height; const uint8_t *rgb; size_t rgb_len; } embedlab_image;
//!
//! typedef struct embedlab_encoder embedlab_encoder; /* opaque, owned by the plugin */
//!
//! typedef struct {
//!     /* Header: never changes, in any version. */
//!     embedlab_abi_version abi;   /* offset 0: {1, 1} for this version                         */
//!     size_t table_size;          /* offset 8: sizeof(embedlab_plugin_table) the plugin was built
//!                                    with; later minor versions only append entries            */
//!     /* ABI 1.0 entries (offsets on 64-bit targets). */
//!     embedlab_status (*name)(const embedlab_writer *out, const embedlab_writer *err);     /* 16 */
//!     embedlab_status (*version)(const embedlab_writer *out, const embedlab_writer *err);  /* 24 */
//!     embedlab_status (*models)(const embedlab_writer *out, const embedlab_writer *err);   /* 32 */
//!     embedlab_status (*create)(const uint8_t *config, size_t config_len,                   /* 40 */
//!                               embedlab_encoder **encoder, const embedlab_writer *err);
//!     embedlab_status (*describe)(const embedlab_encoder *encoder,                          /* 48 */
//!                                 const embedlab_writer *out, const embedlab_writer *err);
//!     embedlab_status (*encode_texts)(embedlab_encoder *encoder,                            /* 56 */
//!                                     const embedlab_str *texts, size_t n,
//!                                     float *out, size_t out_len, size_t *written,
//!                                     const embedlab_writer *err);
//!     embedlab_status (*encode_images)(embedlab_encoder *encoder,   /* 64; NULL: texts only   */
//!                                      const embedlab_image *images, size_t n,
//!                                      float *out, size_t out_len, size_t *written,
//!                                      const embedlab_writer *err);
//!     void (*destroy)(embedlab_encoder *encoder);                                           /* 72 */
//!     /* ABI 1.1 entries. */
//!     embedlab_status (*generate_captions)(embedlab_encoder *encoder, /* 80; NULL: no captions */
//!                                          const embedlab_image *images, size_t n,
//!                                          const embedlab_writer *out, const embedlab_writer *err);
//! } embedlab_plugin_table;                                             /* size 88 (1.0: 80) */
//!
//! /* The one exported symbol. Its name and signature never change (the "v1" names the
//!    handshake, not the ABI version): a plugin for ABI 2.x exports the same symbol with
//!    abi = {2, x}, and a 1.x host refuses it by reading the header. */
//! const embedlab_plugin_table *embedlab_plugin_v1(void);
//! ```
//!
//! The rules:
//!
//! - **Handshake.** The host calls `embedlab_plugin_v1()` (it must return a pointer to a table
//!   that lives as long as the library is loaded, normally a `static`), reads only
//!   `abi` and `table_size`, and accepts the plugin if the majors are equal and the plugin's minor
//!   is not newer than the host's ([`AbiVersion::accepts`]), and `table_size` covers every entry
//!   of the plugin's minor version ([`PluginTable::required_size`]). Only then does it read the
//!   rest, and only the entries of the plugin's minor version (a 1.0 table ends before
//!   `generate_captions`). Every entry except `encode_images` and `generate_captions` must be
//!   non-NULL.
//! - **Strings** cross as pointer + length, UTF-8, never NUL-terminated. Results (name, version,
//!   JSON) and error messages go to a host-provided [`Writer`]: the plugin calls `write` with
//!   pointer + length as often as it likes; nothing allocated by one side is ever freed by the
//!   other. `out` and `err` are valid only during the call; a plugin must not keep them.
//! - **Errors.** Every function but `destroy` returns a status; on anything but `EMBEDLAB_OK` it
//!   writes a one-line, human-readable message to `err` (the host shows it next to the plugin's
//!   name and path). On error the host ignores `out` and `written`.
//! - **`name`, `version`** write plain UTF-8. The name must equal the `<NAME>` of the file name.
//! - **`models`** writes a JSON array: `[{"id": "...", "description": "..."}, ...]`.
//! - **`create`** receives a UTF-8 JSON object (see [`Config`]):
//!   `{"model": "<id>", "model_dir": "/abs/dir", "options": {...}}` and on success stores a
//!   non-NULL encoder pointer in `*encoder`.
//! - **`describe`** writes a JSON object (see [`Description`]):
//!   `{"modalities": ["text", "image"], "dim": 384, "parameters": 22713216,
//!   "weights_digest": "sha256:...", "device": "cpu"}`. `dim` is at least 1 and fixed for the encoder's life; the
//!   host reads the description once, right after `create`.
//! - **`encode_texts` / `encode_images`** receive `n` inputs and a host-allocated `out` buffer of
//!   `out_len == n * dim` floats; the plugin writes row `i` (dim floats) for input `i`, stores
//!   `n * dim` in `*written`, and returns `EMBEDLAB_OK`. The host checks `*written`.
//!   `texts`/`images` may be NULL when `n == 0`.
//! - **`generate_captions`** (ABI 1.1, optional) receives `n` images and writes to `out` a JSON
//!   array of exactly `n` strings, caption `i` for image `i`. An encoder whose model cannot
//!   caption returns `EMBEDLAB_UNSUPPORTED`; a plugin that never captions may leave it NULL.
//! - **`destroy`** frees an encoder returned by `create`; the host calls it exactly once, after
//!   the last call on that encoder, and never for NULL.
//! - **Threads.** `name`, `version`, `models` and `create` may be called from any thread,
//!   concurrently. An encoder is used by one thread at a time, but successive calls may come
//!   from different threads (a Rust [`Encoder`] is `Send`).
//! - **Unwinding** must never cross the boundary: catch C++ exceptions in every entry.
//! - **Versioning.** A minor version appends entries to the end of the table (so `table_size`
//!   grows and hosts of an older minor read only the prefix they know); anything else is a new
//!   major version.

use std::any::Any;
use std::ffi::c_void;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

pub use serde_json;
use serde_json::{Map, Value, json};

/// The exported symbol every plugin defines (NUL-terminated for `dlsym`). Its name and signature
/// ([`EntryFn`]) never change, whatever the ABI version.
pub const ENTRY_SYMBOL: &[u8] = b"embedlab_plugin_v1\0";

/// The ABI version this crate implements. A major bump breaks compatibility; a minor bump only
/// appends optional entries to the function table.
pub const ABI_VERSION: AbiVersion = AbiVersion { major: 1, minor: 1 };

/// An ABI version as plugins report it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
}

impl AbiVersion {
    /// Whether a host of version `self` can use a plugin of version `plugin`: same major, and the
    /// plugin is not newer than the host's table knows how to read.
    pub fn accepts(self, plugin: AbiVersion) -> bool {
        self.major == plugin.major && plugin.minor <= self.minor
    }
}

/// `1.0`.
impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Status code returned by every ABI function; anything but [`Status::OK`] comes with a message.
///
/// A plain integer rather than a Rust enum: a C plugin may return any value, and an out-of-range
/// discriminant in a `#[repr(C)] enum` would be undefined behaviour on the host side.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    pub const OK: Status = Status(0);
    /// The configuration JSON was invalid or named an unknown model.
    pub const BAD_CONFIG: Status = Status(1);
    /// Model weights could not be found or loaded.
    pub const MODEL_UNAVAILABLE: Status = Status(2);
    /// The input (a text or image batch, or a buffer) was rejected.
    pub const BAD_INPUT: Status = Status(3);
    /// The plugin panicked; the SDK caught the panic at the boundary.
    pub const PANIC: Status = Status(4);
    /// Anything else.
    pub const INTERNAL: Status = Status(5);
    /// The encoder cannot do what was asked (e.g. images from a text-only model).
    pub const UNSUPPORTED: Status = Status(6);

    /// A short name: `bad config`, `panic`, … (`None` for codes this version does not know).
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Status::OK => "ok",
            Status::BAD_CONFIG => "bad config",
            Status::MODEL_UNAVAILABLE => "model unavailable",
            Status::BAD_INPUT => "bad input",
            Status::PANIC => "panic",
            Status::INTERNAL => "internal error",
            Status::UNSUPPORTED => "unsupported",
            _ => return None,
        })
    }
}

/// `bad config`, or `status 42` for an unknown code.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The C ABI
// ---------------------------------------------------------------------------------------------

/// A UTF-8 string crossing the boundary: pointer + length, not NUL-terminated (`embedlab_str`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawStr {
    pub ptr: *const u8,
    pub len: usize,
}

impl RawStr {
    /// Borrows `s` (the result is valid as long as `s` is).
    pub fn new(s: &str) -> RawStr {
        RawStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }
}

/// A host-owned byte sink (`embedlab_writer`): the plugin appends with `write(ctx, ptr, len)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Writer {
    pub ctx: *mut c_void,
    pub write: Option<WriteFn>,
}

/// [`Writer::write`]: append `len` bytes at `ptr` to the sink `ctx`.
pub type WriteFn = unsafe extern "C" fn(ctx: *mut c_void, ptr: *const u8, len: usize);

/// A decoded image crossing the boundary (`embedlab_image`): row-major RGB8,
/// `rgb_len == width * height * 3`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawImage {
    pub width: u32,
    pub height: u32,
    pub rgb: *const u8,
    pub rgb_len: usize,
}

/// The exported entry point's type: [`ENTRY_SYMBOL`] is a function of this type.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginTable;
/// `name`, `version`, `models`: write the answer to `out`.
pub type InfoFn = unsafe extern "C" fn(out: *const Writer, err: *const Writer) -> Status;
/// `create`: config JSON in, encoder pointer out.
pub type CreateFn = unsafe extern "C" fn(
    config: *const u8,
    config_len: usize,
    encoder: *mut *mut c_void,
    err: *const Writer,
) -> Status;
/// `describe`: write the description JSON to `out`.
pub type DescribeFn =
    unsafe extern "C" fn(encoder: *const c_void, out: *const Writer, err: *const Writer) -> Status;
/// `encode_texts`: `n` texts in, `n × dim` floats out.
pub type EncodeTextsFn = unsafe extern "C" fn(
    encoder: *mut c_void,
    texts: *const RawStr,
    n: usize,
    out: *mut f32,
    out_len: usize,
    written: *mut usize,
    err: *const Writer,
) -> Status;
/// `encode_images`: `n` images in, `n × dim` floats out.
pub type EncodeImagesFn = unsafe extern "C" fn(
    encoder: *mut c_void,
    images: *const RawImage,
    n: usize,
    out: *mut f32,
    out_len: usize,
    written: *mut usize,
    err: *const Writer,
) -> Status;
/// `generate_captions` (ABI 1.1): `n` images in, a JSON array of `n` strings written to `out`.
pub type GenerateCaptionsFn = unsafe extern "C" fn(
    encoder: *mut c_void,
    images: *const RawImage,
    n: usize,
    out: *const Writer,
    err: *const Writer,
) -> Status;
/// `destroy`: free an encoder.
pub type DestroyFn = unsafe extern "C" fn(encoder: *mut c_void);

/// The part of [`PluginTable`] whose layout never changes: what the host reads before anything
/// else.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TableHeader {
    pub abi: AbiVersion,
    /// `size_of` the table the plugin was built with.
    pub table_size: usize,
}

/// The root table a plugin's entry point returns (`embedlab_plugin_table`). Starts with the
/// fields of [`TableHeader`]; entries are only ever appended. Entries are `Option`s because a C
/// plugin may leave them NULL; the host refuses a NULL required entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PluginTable {
    pub abi: AbiVersion,
    pub table_size: usize,
    // ABI 1.0
    pub name: Option<InfoFn>,
    pub version: Option<InfoFn>,
    pub models: Option<InfoFn>,
    pub create: Option<CreateFn>,
    pub describe: Option<DescribeFn>,
    pub encode_texts: Option<EncodeTextsFn>,
    /// NULL for a plugin that encodes texts only.
    pub encode_images: Option<EncodeImagesFn>,
    pub destroy: Option<DestroyFn>,
    // ABI 1.1
    /// NULL for a plugin that never generates captions.
    pub generate_captions: Option<GenerateCaptionsFn>,
}

impl PluginTable {
    /// The smallest `table_size` a plugin speaking `abi` (of this major version) may report: up
    /// to the last entry its minor version defines. A host reads no more than this of a table.
    pub const fn required_size(abi: AbiVersion) -> usize {
        if abi.minor == 0 {
            std::mem::offset_of!(PluginTable, generate_captions)
        } else {
            size_of::<PluginTable>()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The safe side
// ---------------------------------------------------------------------------------------------

/// What an encoder takes as input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    Text,
    Image,
}

impl Modality {
    /// `text` or `image`, as in the description JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
        }
    }

    /// The inverse of [`Modality::as_str`].
    pub fn parse(s: &str) -> Option<Modality> {
        match s {
            "text" => Some(Modality::Text),
            "image" => Some(Modality::Image),
            _ => None,
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model a plugin offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub description: String,
}

impl ModelInfo {
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            description: description.into(),
        }
    }

    /// `[{"id": ..., "description": ...}, ...]`, what the `models` entry writes.
    pub fn list_to_json(models: &[ModelInfo]) -> String {
        let list: Vec<Value> = models
            .iter()
            .map(|m| json!({ "id": m.id, "description": m.description }))
            .collect();
        Value::Array(list).to_string()
    }

    /// Parses what [`ModelInfo::list_to_json`] writes (`description` may be absent).
    pub fn list_from_json(text: &str) -> Result<Vec<ModelInfo>, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let list = value.as_array().ok_or("expected a JSON array of models")?;
        list.iter()
            .enumerate()
            .map(|(i, m)| {
                let id = m.get("id").and_then(Value::as_str);
                let id = id.ok_or_else(|| format!("model {i} has no string `id`"))?;
                let description = m.get("description").and_then(Value::as_str).unwrap_or("");
                Ok(ModelInfo::new(id, description))
            })
            .collect()
    }
}

/// What an encoder is: its inputs, its output dimension, its size and the digest of its weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    pub modalities: Vec<Modality>,
    /// Floats per vector; at least 1, fixed for the encoder's life.
    pub dim: usize,
    /// Number of parameters (0 when not meaningful).
    pub parameters: u64,
    /// `sha256:<hex>` of the weights, or empty.
    pub weights_digest: String,
    /// Where it computes, e.g. `cpu` or `cuda:0` (reports show it beside the timings).
    pub device: String,
}

impl Description {
    /// Whether the encoder takes `modality`.
    pub fn supports(&self, modality: Modality) -> bool {
        self.modalities.contains(&modality)
    }

    /// `{"modalities": [...], "dim": ..., "parameters": ..., "weights_digest": ...}`.
    pub fn to_json(&self) -> String {
        let modalities: Vec<&str> = self.modalities.iter().map(|m| m.as_str()).collect();
        json!({
            "modalities": modalities,
            "dim": self.dim,
            "parameters": self.parameters,
            "weights_digest": self.weights_digest,
            "device": self.device,
        })
        .to_string()
    }

    /// Parses what [`Description::to_json`] writes. `modalities` and `dim` are required;
    /// `parameters` defaults to 0, `weights_digest` to empty and `device` to `cpu` (ABI 1.0 and
    /// 1.1 plugins may not say); modality names this version does
    /// not know are skipped (a newer plugin may offer more).
    pub fn from_json(text: &str) -> Result<Description, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let object = value.as_object().ok_or("expected a JSON object")?;
        let list = object.get("modalities").and_then(Value::as_array);
        let list = list.ok_or("`modalities` is missing or not an array")?;
        let mut modalities = Vec::new();
        for name in list {
            let name = name.as_str().ok_or("`modalities` holds a non-string")?;
            if let Some(m) = Modality::parse(name)
                && !modalities.contains(&m)
            {
                modalities.push(m);
            }
        }
        let dim = object.get("dim").and_then(Value::as_u64);
        let dim = dim.ok_or("`dim` is missing or not a non-negative integer")?;
        let dim = usize::try_from(dim).map_err(|_| format!("`dim` {dim} is too large"))?;
        let parameters = match object.get("parameters") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or("`parameters` is not a non-negative integer")?,
        };
        let weights_digest = match object.get("weights_digest") {
            None | Some(Value::Null) => String::new(),
            Some(v) => v
                .as_str()
                .ok_or("`weights_digest` is not a string")?
                .to_string(),
        };
        let device = match object.get("device") {
            None | Some(Value::Null) => "cpu".to_string(),
            Some(v) => v.as_str().ok_or("`device` is not a string")?.to_string(),
        };
        Ok(Description {
            modalities,
            dim,
            parameters,
            weights_digest,
            device,
        })
    }
}

/// A decoded image: row-major RGB8, `rgb.len() == width × height × 3`.
#[derive(Clone, Copy, Debug)]
pub struct Image<'a> {
    pub width: u32,
    pub height: u32,
    pub rgb: &'a [u8],
}

impl Image<'_> {
    /// `width × height × 3`, the length `rgb` must have (`None` if it does not fit a `usize`).
    pub fn expected_len(width: u32, height: u32) -> Option<usize> {
        usize::try_from(width)
            .ok()?
            .checked_mul(usize::try_from(height).ok()?)?
            .checked_mul(3)
    }

    /// Whether `rgb` has the length the dimensions say.
    pub fn is_consistent(&self) -> bool {
        Image::expected_len(self.width, self.height) == Some(self.rgb.len())
    }
}

/// An error a plugin reports: a status code and a one-line message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub status: Status,
    pub message: String,
}

impl PluginError {
    pub fn new(status: Status, message: impl Into<String>) -> PluginError {
        PluginError {
            status,
            message: message.into(),
        }
    }

    /// [`Status::BAD_CONFIG`]: an invalid config or an unknown model.
    pub fn bad_config(message: impl Into<String>) -> PluginError {
        PluginError::new(Status::BAD_CONFIG, message)
    }

    /// [`Status::MODEL_UNAVAILABLE`]: weights missing or unreadable.
    pub fn model_unavailable(message: impl Into<String>) -> PluginError {
        PluginError::new(Status::MODEL_UNAVAILABLE, message)
    }

    /// [`Status::BAD_INPUT`]: a text, image or buffer was rejected.
    pub fn bad_input(message: impl Into<String>) -> PluginError {
        PluginError::new(Status::BAD_INPUT, message)
    }

    /// [`Status::UNSUPPORTED`]: the encoder cannot do this.
    pub fn unsupported(message: impl Into<String>) -> PluginError {
        PluginError::new(Status::UNSUPPORTED, message)
    }

    /// [`Status::INTERNAL`]: anything else.
    pub fn internal(message: impl Into<String>) -> PluginError {
        PluginError::new(Status::INTERNAL, message)
    }
}

/// `bad config: unknown model "x"`.
impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for PluginError {}

/// The config `create` receives, parsed: `{"model": "<id>", "model_dir": "/abs/dir",
/// "options": {...}}`. Keys other than these three are ignored (later engines may add some).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The model id (one of [`Plugin::models`], or whatever the plugin accepts).
    pub model: String,
    /// The folder holding the model's files, when the engine resolved one.
    pub model_dir: Option<PathBuf>,
    /// The encoder's options from the manifest (empty when none).
    pub options: Map<String, Value>,
}

impl Config {
    /// Parses the config JSON; an error is a [`Status::BAD_CONFIG`] naming the problem.
    pub fn parse(text: &str) -> Result<Config, PluginError> {
        let bad = |m: String| PluginError::bad_config(format!("invalid config: {m}"));
        let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(bad("expected a JSON object".into()));
        };
        let model = match object.remove("model") {
            Some(Value::String(model)) => model,
            _ => return Err(bad("`model` is missing or not a string".into())),
        };
        let model_dir = match object.remove("model_dir") {
            None | Some(Value::Null) => None,
            Some(Value::String(dir)) => Some(PathBuf::from(dir)),
            Some(_) => return Err(bad("`model_dir` is not a string".into())),
        };
        let options = match object.remove("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(options)) => options,
            Some(_) => return Err(bad("`options` is not an object".into())),
        };
        Ok(Config {
            model,
            model_dir,
            options,
        })
    }
}

/// A plugin: its identity, its models, and how to make an encoder. Implement it on a unit type
/// and export it with [`export_plugin!`].
pub trait Plugin: 'static {
    /// The plugin's name: the `<NAME>` of its file `libembedlab_<NAME>.so`.
    const NAME: &'static str;
    /// The plugin's version (usually `env!("CARGO_PKG_VERSION")`).
    const VERSION: &'static str;
    type Encoder: Encoder;

    /// The models this plugin offers (for `embedlab plugins list`).
    fn models() -> Vec<ModelInfo>;

    /// A new encoder from the config JSON (`{"model": id, "model_dir": "/abs/dir",
    /// "options": {...}}`; [`Config::parse`] reads it).
    fn create(config: &str) -> Result<Self::Encoder, PluginError>;
}

/// An encoder made by [`Plugin::create`]. The SDK calls [`Encoder::describe`] once, right after
/// `create`, and keeps the answer: its `dim` sizes every output buffer.
pub trait Encoder: Send + 'static {
    /// What this encoder is; `dim` must be at least 1.
    fn describe(&self) -> Description;

    /// Writes one vector per text: row `i` of `out` (`out[i * dim..(i + 1) * dim]`) for
    /// `texts[i]`. `out.len() == texts.len() * dim` always holds (the SDK checks). Called only
    /// when the description lists [`Modality::Text`].
    fn encode_texts(&mut self, texts: &[&str], out: &mut [f32]) -> Result<(), PluginError>;

    /// Like [`Encoder::encode_texts`] for images (each [`Image::is_consistent`], checked by the
    /// SDK). Called only when the description lists [`Modality::Image`].
    fn encode_images(&mut self, images: &[Image<'_>], out: &mut [f32]) -> Result<(), PluginError> {
        let _ = (images, out);
        Err(PluginError::unsupported(
            "this encoder does not encode images",
        ))
    }

    /// One caption per image, in order (ABI 1.1). The default says this model does not caption.
    fn generate_captions(&mut self, images: &[Image<'_>]) -> Result<Vec<String>, PluginError> {
        let _ = images;
        Err(PluginError::unsupported(
            "this encoder's model does not generate captions",
        ))
    }
}

/// Exports a [`Plugin`] from a `cdylib`: defines the `embedlab_plugin_v1` symbol returning a
/// static [`PluginTable`] whose entries are the SDK's panic-catching shims for that plugin.
///
/// ```ignore
/// embedlab_plugin::export_plugin!(MyPlugin);
/// ```
///
/// Use it once per library. (The `@test_table` form, which lets the ABI's own tests report any
/// version and table size, is not for plugins.)
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        $crate::export_plugin!(
            @test_table $plugin,
            abi = $crate::ABI_VERSION,
            table_size = ::core::mem::size_of::<$crate::PluginTable>()
        );
    };
    (@test_table $plugin:ty, abi = $abi:expr, table_size = $size:expr) => {
        /// The embedlab plugin entry point (see the `embedlab-plugin` crate).
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn embedlab_plugin_v1() -> *const $crate::PluginTable {
            static TABLE: $crate::PluginTable = $crate::__private::table::<$plugin>($abi, $size);
            &TABLE
        }
    };
}

/// The shims [`export_plugin!`] puts in the table. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    use std::cell::{Cell, RefCell};
    use std::sync::Once;

    /// The table for plugin `P`.
    pub const fn table<P: Plugin>(abi: AbiVersion, table_size: usize) -> PluginTable {
        PluginTable {
            abi,
            table_size,
            name: Some(name::<P>),
            version: Some(version::<P>),
            models: Some(models::<P>),
            create: Some(create::<P>),
            describe: Some(describe::<P>),
            encode_texts: Some(encode_texts::<P>),
            encode_images: Some(encode_images::<P>),
            destroy: Some(destroy::<P>),
            generate_captions: Some(generate_captions::<P>),
        }
    }

    /// What the opaque encoder pointer points to.
    struct Slot<E> {
        encoder: E,
        description: Description,
        /// `description` as JSON, what `describe` writes.
        json: String,
        /// A call panicked: the encoder's state is unknown, so every later call fails.
        poisoned: bool,
    }

    /// Appends `bytes` to the writer `w` (nothing if `w` or its function is NULL).
    ///
    /// # Safety
    /// `w` is NULL or points to a [`Writer`] valid for this call, whose `write` accepts `ctx`.
    unsafe fn emit(w: *const Writer, bytes: &[u8]) {
        // SAFETY: the caller guarantees `w` is NULL or valid.
        let Some(w) = (unsafe { w.as_ref() }) else {
            return;
        };
        if let Some(write) = w.write
            && !bytes.is_empty()
        {
            // SAFETY: the host gave us `write` and `ctx` together for this call; `bytes` is a
            // live slice for the duration of the call.
            unsafe { write(w.ctx, bytes.as_ptr(), bytes.len()) }
        }
    }

    /// `len` elements at `ptr`; NULL is fine when `len == 0`.
    ///
    /// # Safety
    /// Unless NULL, `ptr` points to `len` initialised `T`s that stay valid and unmodified for
    /// `'a`.
    unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T], PluginError> {
        if len == 0 {
            return Ok(&[]);
        }
        if ptr.is_null() || !ptr.is_aligned() {
            return Err(PluginError::bad_input(format!(
                "a NULL or misaligned pointer to {len} items"
            )));
        }
        // SAFETY: non-NULL and aligned (checked); valid for `len` items (the caller's contract).
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// Like [`slice`], mutable.
    ///
    /// # Safety
    /// Unless NULL, `ptr` points to `len` writable `T`s nothing else accesses during `'a`.
    unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize) -> Result<&'a mut [T], PluginError> {
        if len == 0 {
            return Ok(&mut []);
        }
        if ptr.is_null() || !ptr.is_aligned() {
            return Err(PluginError::bad_input(format!(
                "a NULL or misaligned buffer of {len} items"
            )));
        }
        // SAFETY: non-NULL and aligned (checked); valid and exclusive (the caller's contract).
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    /// The text of a panic payload.
    fn panic_message(payload: &(dyn Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic with a non-string payload".to_string()
        }
    }

    /// Drops a panic payload, even one whose destructor panics (that second payload is leaked).
    fn drop_payload(payload: Box<dyn Any + Send>) {
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(again);
        }
    }

    thread_local! {
        /// Set while [`guard`] runs plugin code on this thread.
        static GUARDED: Cell<bool> = const { Cell::new(false) };
        /// Where the last guarded panic happened (`file:line:column`), for its message.
        static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Installs, once, a panic hook that keeps a guarded panic quiet and only records where it
    /// happened: [`guard`] reports it through the status and message, which the host prints as
    /// one line, so the default hook's lines (and backtrace) on the host's stderr would only
    /// repeat it. Panics outside [`guard`] go to the hook that was there before.
    fn quiet_guarded_panics() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // `try_with`: a hook must not panic, even on a thread whose locals are gone.
                if !GUARDED.try_with(Cell::get).unwrap_or(false) {
                    return previous(info);
                }
                let at =
                    (info.location()).map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let _ = PANIC_AT.try_with(|slot| *slot.borrow_mut() = at);
            }));
        });
    }

    /// Runs `f`, turning an error into its status (message to `err`) and a panic into
    /// [`Status::PANIC`] with the panic's message and location.
    ///
    /// # Safety
    /// `err` as for [`emit`].
    unsafe fn guard(err: *const Writer, f: impl FnOnce() -> Result<(), PluginError>) -> Status {
        quiet_guarded_panics();
        let outer = GUARDED.with(|g| g.replace(true));
        let result = catch_unwind(AssertUnwindSafe(f));
        GUARDED.with(|g| g.set(outer));
        let (status, message) = match result {
            Ok(Ok(())) => return Status::OK,
            // An error must never read as success.
            Ok(Err(e)) if e.status == Status::OK => (Status::INTERNAL, e.message),
            Ok(Err(e)) => (e.status, e.message),
            Err(payload) => {
                let mut message = panic_message(&*payload);
                drop_payload(payload);
                if let Some(at) = PANIC_AT.with(RefCell::take) {
                    message = format!("{message} (at {at})");
                }
                (Status::PANIC, message)
            }
        };
        // SAFETY: the caller's contract on `err`.
        unsafe { emit(err, message.as_bytes()) };
        status
    }

    unsafe extern "C" fn name<P: Plugin>(out: *const Writer, err: *const Writer) -> Status {
        // SAFETY: the ABI makes `out` and `err` NULL or valid writers for this call.
        unsafe {
            guard(err, || {
                emit(out, P::NAME.as_bytes());
                Ok(())
            })
        }
    }

    unsafe extern "C" fn version<P: Plugin>(out: *const Writer, err: *const Writer) -> Status {
        // SAFETY: as in `name`.
        unsafe {
            guard(err, || {
                emit(out, P::VERSION.as_bytes());
                Ok(())
            })
        }
    }

    unsafe extern "C" fn models<P: Plugin>(out: *const Writer, err: *const Writer) -> Status {
        // SAFETY: as in `name`.
        unsafe {
            guard(err, || {
                emit(out, ModelInfo::list_to_json(&P::models()).as_bytes());
                Ok(())
            })
        }
    }

    unsafe extern "C" fn create<P: Plugin>(
        config: *const u8,
        config_len: usize,
        encoder: *mut *mut c_void,
        err: *const Writer,
    ) -> Status {
        if encoder.is_null() {
            // SAFETY: the ABI makes `err` NULL or a valid writer.
            unsafe { emit(err, b"create: NULL encoder out-pointer") };
            return Status::BAD_INPUT;
        }
        // SAFETY: non-NULL (checked) and writable for one pointer (the ABI).
        unsafe { encoder.write(std::ptr::null_mut()) };
        // SAFETY: `err` as above; `config` points to `config_len` bytes for this call (the ABI).
        unsafe {
            guard(err, || {
                let bytes = slice(config, config_len)?;
                let text = std::str::from_utf8(bytes).map_err(|e| {
                    PluginError::bad_config(format!("the config is not UTF-8: {e}"))
                })?;
                let made = P::create(text)?;
                let description = made.describe();
                if description.dim == 0 {
                    return Err(PluginError::internal(
                        "the encoder describes itself with dim 0",
                    ));
                }
                let json = description.to_json();
                let slot = Slot {
                    encoder: made,
                    description,
                    json,
                    poisoned: false,
                };
                encoder.write(Box::into_raw(Box::new(slot)).cast());
                Ok(())
            })
        }
    }

    unsafe extern "C" fn describe<P: Plugin>(
        encoder: *const c_void,
        out: *const Writer,
        err: *const Writer,
    ) -> Status {
        // SAFETY: `encoder` is NULL or came from `create::<P>` and is not being mutated (the ABI:
        // one thread at a time per encoder); writers as in `name`.
        unsafe {
            guard(err, || {
                let slot = encoder.cast::<Slot<P::Encoder>>().as_ref();
                let slot = slot.ok_or_else(|| PluginError::bad_input("describe: NULL encoder"))?;
                emit(out, slot.json.as_bytes());
                Ok(())
            })
        }
    }

    /// Runs `f` on the encoder behind `encoder` inside [`guard`]: refuses NULL and poisoned
    /// encoders, and poisons the encoder when `f` panics (its state is unknown afterwards).
    ///
    /// # Safety
    /// `encoder` NULL or from `create` (of a plugin whose encoder type is `E`) and used by this
    /// thread only; `err` as for [`emit`].
    unsafe fn with_slot<E: Encoder>(
        encoder: *mut c_void,
        err: *const Writer,
        f: impl FnOnce(&mut Slot<E>) -> Result<(), PluginError>,
    ) -> Status {
        let slot_ptr = encoder.cast::<Slot<E>>();
        // SAFETY: the caller's contract; the `&mut Slot` made inside ends with the closure.
        let status = unsafe {
            guard(err, || {
                let slot = slot_ptr
                    .as_mut()
                    .ok_or_else(|| PluginError::bad_input("NULL encoder"))?;
                if slot.poisoned {
                    let message = "an earlier call on this encoder panicked; create a new encoder";
                    return Err(PluginError::new(Status::PANIC, message));
                }
                f(slot)
            })
        };
        if status == Status::PANIC {
            // SAFETY: as above; no other reference to the slot is alive.
            if let Some(slot) = unsafe { slot_ptr.as_mut() } {
                slot.poisoned = true;
            }
        }
        status
    }

    /// The common part of both encode shims: checks, then `run(encoder, inputs, out)`.
    ///
    /// # Safety
    /// The ABI's contract for `encode_texts`: `encoder` NULL or from `create` (of a plugin whose
    /// encoder type is `E`) and used by this thread only; `inputs` valid for `n` items; `out`
    /// valid and exclusive for `out_len` floats; `written` NULL or writable; `err` as for
    /// [`emit`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn encode<E: Encoder, R>(
        encoder: *mut c_void,
        inputs: *const R,
        n: usize,
        out: *mut f32,
        out_len: usize,
        written: *mut usize,
        err: *const Writer,
        modality: Modality,
        run: impl FnOnce(&mut E, &[R], &mut [f32]) -> Result<(), PluginError>,
    ) -> Status {
        if !written.is_null() {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { written.write(0) };
        }
        // SAFETY: the caller's contract covers `with_slot`'s, and `inputs`, `out`, `written`.
        unsafe {
            with_slot(encoder, err, |slot: &mut Slot<E>| {
                if !slot.description.supports(modality) {
                    return Err(PluginError::unsupported(format!(
                        "this encoder does not encode {modality}s"
                    )));
                }
                let dim = slot.description.dim;
                let needed = n.checked_mul(dim);
                if needed != Some(out_len) {
                    return Err(PluginError::bad_input(format!(
                        "the output buffer holds {out_len} floats; {n} inputs × dim {dim} need {}",
                        needed.map_or("more".to_string(), |n| n.to_string())
                    )));
                }
                let inputs = slice(inputs, n)?;
                let out = slice_mut(out, out_len)?;
                run(&mut slot.encoder, inputs, out)?;
                if !written.is_null() {
                    written.write(out_len);
                }
                Ok(())
            })
        }
    }

    unsafe extern "C" fn encode_texts<P: Plugin>(
        encoder: *mut c_void,
        texts: *const RawStr,
        n: usize,
        out: *mut f32,
        out_len: usize,
        written: *mut usize,
        err: *const Writer,
    ) -> Status {
        let run = |e: &mut P::Encoder, raw: &[RawStr], out: &mut [f32]| {
            let mut texts = Vec::with_capacity(raw.len());
            for (i, r) in raw.iter().enumerate() {
                // SAFETY: each text points to `len` bytes valid for this call (the ABI).
                let bytes = unsafe { slice(r.ptr, r.len) }?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| PluginError::bad_input(format!("text {i} is not UTF-8: {e}")))?;
                texts.push(text);
            }
            e.encode_texts(&texts, out)
        };
        // SAFETY: the ABI's contract for this entry is `encode`'s.
        unsafe {
            encode(
                encoder,
                texts,
                n,
                out,
                out_len,
                written,
                err,
                Modality::Text,
                run,
            )
        }
    }

    unsafe extern "C" fn encode_images<P: Plugin>(
        encoder: *mut c_void,
        images: *const RawImage,
        n: usize,
        out: *mut f32,
        out_len: usize,
        written: *mut usize,
        err: *const Writer,
    ) -> Status {
        let run = |e: &mut P::Encoder, raw: &[RawImage], out: &mut [f32]| {
            // SAFETY: each image points to `rgb_len` bytes valid for this call (the ABI).
            let images = unsafe { images_from_raw(raw) }?;
            e.encode_images(&images, out)
        };
        // SAFETY: the ABI's contract for this entry is `encode`'s.
        unsafe {
            encode(
                encoder,
                images,
                n,
                out,
                out_len,
                written,
                err,
                Modality::Image,
                run,
            )
        }
    }

    /// The images of an `encode_images` or `generate_captions` call, their lengths checked.
    ///
    /// # Safety
    /// Each image's `rgb` is NULL or points to `rgb_len` bytes valid for `'a`.
    unsafe fn images_from_raw<'a>(raw: &'a [RawImage]) -> Result<Vec<Image<'a>>, PluginError> {
        let mut images = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let (w, h) = (r.width, r.height);
            if Image::expected_len(w, h) != Some(r.rgb_len) {
                let message = format!("image {i} is {w}×{h} but has {} bytes of RGB8", r.rgb_len);
                return Err(PluginError::bad_input(message));
            }
            // SAFETY: the caller's contract.
            let rgb = unsafe { slice(r.rgb, r.rgb_len) }?;
            images.push(Image {
                width: w,
                height: h,
                rgb,
            });
        }
        Ok(images)
    }

    unsafe extern "C" fn generate_captions<P: Plugin>(
        encoder: *mut c_void,
        images: *const RawImage,
        n: usize,
        out: *const Writer,
        err: *const Writer,
    ) -> Status {
        // SAFETY: the ABI's contract for this entry: `encoder` as for `with_slot`, `images` valid
        // for `n` items (each for its `rgb_len` bytes), writers valid for the call.
        unsafe {
            with_slot(encoder, err, |slot: &mut Slot<P::Encoder>| {
                let raw = slice(images, n)?;
                let images = images_from_raw(raw)?;
                let captions = slot.encoder.generate_captions(&images)?;
                if captions.len() != n {
                    return Err(PluginError::internal(format!(
                        "the model generated {} captions for {n} images",
                        captions.len()
                    )));
                }
                emit(out, Value::from(captions).to_string().as_bytes());
                Ok(())
            })
        }
    }

    unsafe extern "C" fn destroy<P: Plugin>(encoder: *mut c_void) {
        if encoder.is_null() {
            return;
        }
        // SAFETY: `encoder` came from `Box::into_raw` in `create::<P>`, and the host destroys it
        // exactly once, after its last use (the ABI).
        let slot = unsafe { Box::from_raw(encoder.cast::<Slot<P::Encoder>>()) };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(slot))) {
            drop_payload(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;

    #[test]
    fn accepts_same_major_and_older_minor_only() {
        let host = AbiVersion { major: 1, minor: 2 };
        assert!(host.accepts(AbiVersion { major: 1, minor: 0 }));
        assert!(host.accepts(AbiVersion { major: 1, minor: 2 }));
        assert!(!host.accepts(AbiVersion { major: 1, minor: 3 }));
        assert!(!host.accepts(AbiVersion { major: 2, minor: 0 }));
        assert_eq!(ABI_VERSION.to_string(), "1.1");
    }

    #[test]
    fn entry_symbol_is_nul_terminated_for_dlsym() {
        assert_eq!(ENTRY_SYMBOL.last(), Some(&0));
        assert_eq!(
            &ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1],
            b"embedlab_plugin_v1"
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn table_layout_matches_the_documented_c_header() {
        assert_eq!(offset_of!(PluginTable, abi), 0);
        assert_eq!(offset_of!(PluginTable, table_size), 8);
        assert_eq!(offset_of!(TableHeader, abi), offset_of!(PluginTable, abi));
        assert_eq!(
            offset_of!(TableHeader, table_size),
            offset_of!(PluginTable, table_size)
        );
        assert_eq!(size_of::<TableHeader>(), 16);
        let entries = [
            offset_of!(PluginTable, name),
            offset_of!(PluginTable, version),
            offset_of!(PluginTable, models),
            offset_of!(PluginTable, create),
            offset_of!(PluginTable, describe),
            offset_of!(PluginTable, encode_texts),
            offset_of!(PluginTable, encode_images),
            offset_of!(PluginTable, destroy),
            offset_of!(PluginTable, generate_captions),
        ];
        assert_eq!(entries, [16, 24, 32, 40, 48, 56, 64, 72, 80]);
        assert_eq!(size_of::<PluginTable>(), 88);
        assert_eq!(PluginTable::required_size(ABI_VERSION), 88);
        assert_eq!(
            PluginTable::required_size(AbiVersion { major: 1, minor: 0 }),
            80
        );
        // `Option<fn>` is a nullable function pointer, as in C.
        assert_eq!(size_of::<Option<EncodeTextsFn>>(), 8);
        assert_eq!(
            (
                size_of::<RawStr>(),
                size_of::<Writer>(),
                size_of::<RawImage>()
            ),
            (16, 16, 24)
        );
        assert_eq!(offset_of!(RawImage, rgb), 8);
    }

    #[test]
    fn status_names_and_unknown_codes() {
        assert_eq!(Status::BAD_CONFIG.to_string(), "bad config");
        assert_eq!(Status::UNSUPPORTED.to_string(), "unsupported");
        assert_eq!(Status(42).to_string(), "status 42");
        let e = PluginError::bad_input("text 3 is empty");
        assert_eq!(e.to_string(), "bad input: text 3 is empty");
    }

    #[test]
    fn description_round_trips_and_rejects_bad_json() {
        let d = Description {
            modalities: vec![Modality::Text, Modality::Image],
            dim: 512,
            parameters: 151_277_313,
            weights_digest: "sha256:ab".into(),
            device: "cuda:0".into(),
        };
        assert_eq!(Description::from_json(&d.to_json()), Ok(d));
        let minimal =
            Description::from_json(r#"{"modalities": ["text", "audio"], "dim": 3}"#).unwrap();
        assert_eq!(minimal.modalities, vec![Modality::Text]);
        assert_eq!(
            (
                minimal.dim,
                minimal.parameters,
                minimal.weights_digest.as_str(),
                minimal.device.as_str()
            ),
            (3, 0, "", "cpu")
        );
        let err = Description::from_json(r#"{"modalities": ["text"]}"#).unwrap_err();
        assert!(err.contains("`dim`"), "{err}");
        let err = Description::from_json(r#"{"modalities": "text", "dim": 3}"#).unwrap_err();
        assert!(err.contains("`modalities`"), "{err}");
        assert!(Description::from_json("[1]").is_err());
        assert!(Description::from_json("{").is_err());
    }

    #[test]
    fn models_round_trip() {
        let models = vec![
            ModelInfo::new("a", "first \"one\""),
            ModelInfo::new("b", ""),
        ];
        assert_eq!(
            ModelInfo::list_from_json(&ModelInfo::list_to_json(&models)),
            Ok(models)
        );
        assert!(
            ModelInfo::list_from_json(r#"[{"description": "no id"}]"#)
                .unwrap_err()
                .contains("model 0")
        );
    }

    #[test]
    fn config_parses_and_names_problems() {
        let c =
            Config::parse(r#"{"model": "m", "model_dir": "/x", "options": {"k": 1}, "later": 0}"#)
                .unwrap();
        assert_eq!(c.model, "m");
        assert_eq!(c.model_dir, Some(PathBuf::from("/x")));
        assert_eq!(c.options.get("k"), Some(&json!(1)));
        let c = Config::parse(r#"{"model": "m"}"#).unwrap();
        assert_eq!((c.model_dir, c.options.len()), (None, 0));
        let e = Config::parse(r#"{"options": {}}"#).unwrap_err();
        assert_eq!(e.status, Status::BAD_CONFIG);
        assert!(e.message.contains("`model`"), "{e}");
        assert!(
            Config::parse(r#"{"model": "m", "options": []}"#)
                .unwrap_err()
                .message
                .contains("`options`")
        );
        assert!(Config::parse("not json").is_err());
    }

    #[test]
    fn image_lengths() {
        assert_eq!(Image::expected_len(2, 3), Some(18));
        assert!(
            Image {
                width: 1,
                height: 1,
                rgb: &[0, 0, 0]
            }
            .is_consistent()
        );
        assert!(
            !Image {
                width: 1,
                height: 1,
                rgb: &[0, 0]
            }
            .is_consistent()
        );
    }

    // The shims, driven through the table exactly as a host would (in-process, no library).

    struct Probe;
    struct ProbeEncoder {
        calls: usize,
    }

    impl Plugin for Probe {
        const NAME: &'static str = "probe";
        const VERSION: &'static str = "9.9";
        type Encoder = ProbeEncoder;
        fn models() -> Vec<ModelInfo> {
            vec![ModelInfo::new("m", "the model")]
        }
        fn create(config: &str) -> Result<ProbeEncoder, PluginError> {
            match Config::parse(config)?.model.as_str() {
                "m" => Ok(ProbeEncoder { calls: 0 }),
                "boom" => panic!("create exploded"),
                other => Err(PluginError::bad_config(format!("unknown model {other}"))),
            }
        }
    }

    impl Encoder for ProbeEncoder {
        fn describe(&self) -> Description {
            Description {
                modalities: vec![Modality::Text],
                dim: 2,
                parameters: 7,
                weights_digest: String::new(),
                device: "cpu".into(),
            }
        }
        fn encode_texts(&mut self, texts: &[&str], out: &mut [f32]) -> Result<(), PluginError> {
            self.calls += 1;
            for (t, row) in texts.iter().zip(out.chunks_exact_mut(2)) {
                if *t == "panic" {
                    panic!("encode exploded on {t:?}");
                }
                row[0] = t.len() as f32;
                row[1] = self.calls as f32;
            }
            Ok(())
        }
        fn generate_captions(&mut self, images: &[Image<'_>]) -> Result<Vec<String>, PluginError> {
            match images.len() {
                3 => Ok(vec!["too few".into()]),
                _ => Ok(images
                    .iter()
                    .map(|i| format!("{}x{}", i.width, i.height))
                    .collect()),
            }
        }
    }

    const PROBE: PluginTable = __private::table::<Probe>(ABI_VERSION, size_of::<PluginTable>());

    unsafe extern "C" fn append(ctx: *mut c_void, ptr: *const u8, len: usize) {
        // SAFETY: `ctx` is the `Vec<u8>` of `sink`, `ptr` valid for `len` (the ABI).
        unsafe { (*ctx.cast::<Vec<u8>>()).extend_from_slice(std::slice::from_raw_parts(ptr, len)) }
    }

    fn sink(buf: &mut Vec<u8>) -> Writer {
        Writer {
            ctx: (buf as *mut Vec<u8>).cast(),
            write: Some(append),
        }
    }

    fn create(config: &str) -> (Status, *mut c_void, String) {
        let mut err = Vec::new();
        let mut encoder = std::ptr::null_mut();
        let w = sink(&mut err);
        // SAFETY: valid config bytes, out-pointer and writer for the call.
        let status =
            unsafe { PROBE.create.unwrap()(config.as_ptr(), config.len(), &mut encoder, &w) };
        (status, encoder, String::from_utf8(err).unwrap())
    }

    fn encode(
        encoder: *mut c_void,
        texts: &[&str],
        out_len: usize,
    ) -> (Status, Vec<f32>, usize, String) {
        let raw: Vec<RawStr> = texts.iter().map(|t| RawStr::new(t)).collect();
        let mut out = vec![0.0; out_len];
        let (mut written, mut err) = (usize::MAX, Vec::new());
        let w = sink(&mut err);
        // SAFETY: every pointer is valid for the call; `encoder` came from `create`.
        let status = unsafe {
            PROBE.encode_texts.unwrap()(
                encoder,
                raw.as_ptr(),
                raw.len(),
                out.as_mut_ptr(),
                out_len,
                &mut written,
                &w,
            )
        };
        (status, out, written, String::from_utf8(err).unwrap())
    }

    #[test]
    fn shims_report_identity_and_models() {
        let mut out = Vec::new();
        let w = sink(&mut out);
        // SAFETY: valid writers for the call.
        assert_eq!(
            unsafe { PROBE.name.unwrap()(&w, std::ptr::null()) },
            Status::OK
        );
        // SAFETY: as above.
        assert_eq!(unsafe { PROBE.models.unwrap()(&w, &w) }, Status::OK);
        let text = String::from_utf8(out).unwrap();
        let models = text.strip_prefix("probe").expect("the name first");
        assert_eq!(ModelInfo::list_from_json(models), Ok(Probe::models()));
    }

    #[test]
    fn shims_create_describe_encode_and_destroy() {
        let (status, encoder, err) = create(r#"{"model": "m"}"#);
        assert_eq!((status, err.as_str()), (Status::OK, ""));
        assert!(!encoder.is_null());
        let mut out = Vec::new();
        let w = sink(&mut out);
        // SAFETY: `encoder` from `create`, valid writer.
        assert_eq!(
            unsafe { PROBE.describe.unwrap()(encoder, &w, std::ptr::null()) },
            Status::OK
        );
        assert_eq!(
            Description::from_json(std::str::from_utf8(&out).unwrap())
                .unwrap()
                .dim,
            2
        );

        let (status, out, written, _) = encode(encoder, &["ab", "héllo"], 4);
        assert_eq!((status, written), (Status::OK, 4));
        assert_eq!(out, [2.0, 1.0, 6.0, 1.0]);
        let (status, _, written, err) = encode(encoder, &["ab"], 3);
        assert_eq!((status, written), (Status::BAD_INPUT, 0));
        assert!(
            err.contains("holds 3 floats; 1 inputs × dim 2 need 2"),
            "{err}"
        );
        let (status, out, _, _) = encode(encoder, &[], 0);
        assert_eq!((status, out.len()), (Status::OK, 0));

        // Images: the description lists texts only.
        let (mut written, mut err) = (0, Vec::new());
        let w = sink(&mut err);
        // SAFETY: empty batch, valid pointers.
        let status = unsafe {
            PROBE.encode_images.unwrap()(
                encoder,
                std::ptr::null(),
                0,
                std::ptr::null_mut(),
                0,
                &mut written,
                &w,
            )
        };
        assert_eq!(status, Status::UNSUPPORTED);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "this encoder does not encode images"
        );
        // SAFETY: created above, destroyed once.
        unsafe { PROBE.destroy.unwrap()(encoder) };
    }

    #[test]
    fn shims_turn_errors_and_panics_into_statuses() {
        let (status, encoder, err) = create(r#"{"model": "nope"}"#);
        assert_eq!(
            (status, encoder.is_null(), err.as_str()),
            (Status::BAD_CONFIG, true, "unknown model nope")
        );
        // A panic's message says where it happened, from the SDK's quiet hook.
        let (status, encoder, err) = create(r#"{"model": "boom"}"#);
        assert_eq!((status, encoder.is_null()), (Status::PANIC, true));
        assert!(
            err.starts_with("create exploded (at ") && err.contains("src/lib.rs:"),
            "{err}"
        );
        let (status, _, err) = create("{");
        assert_eq!(status, Status::BAD_CONFIG);
        assert!(err.starts_with("invalid config"), "{err}");

        let (_, encoder, _) = create(r#"{"model": "m"}"#);
        let (status, _, written, err) = encode(encoder, &["x", "panic"], 4);
        assert_eq!((status, written), (Status::PANIC, 0));
        assert!(
            err.starts_with("encode exploded on \"panic\" (at ") && err.contains("src/lib.rs:"),
            "{err}"
        );
        // A panicked encoder is poisoned.
        let (status, _, _, err) = encode(encoder, &["x"], 2);
        assert_eq!(status, Status::PANIC);
        assert!(err.contains("earlier call"), "{err}");
        // SAFETY: created above, destroyed once.
        unsafe { PROBE.destroy.unwrap()(encoder) };

        // Invalid UTF-8 from a C host.
        let (_, encoder, _) = create(r#"{"model": "m"}"#);
        let raw = [RawStr {
            ptr: [0xffu8].as_ptr(),
            len: 1,
        }];
        let (mut out, mut written, mut err) = ([0.0f32; 2], 0, Vec::new());
        let w = sink(&mut err);
        // SAFETY: valid pointers for the call.
        let status = unsafe {
            PROBE.encode_texts.unwrap()(
                encoder,
                raw.as_ptr(),
                1,
                out.as_mut_ptr(),
                2,
                &mut written,
                &w,
            )
        };
        assert_eq!(status, Status::BAD_INPUT);
        assert!(
            String::from_utf8(err)
                .unwrap()
                .starts_with("text 0 is not UTF-8")
        );
        // SAFETY: created above, destroyed once.
        unsafe { PROBE.destroy.unwrap()(encoder) };
    }

    fn captions(encoder: *mut c_void, images: &[RawImage]) -> (Status, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (o, e) = (sink(&mut out), sink(&mut err));
        // SAFETY: every pointer is valid for the call; `encoder` came from `create`.
        let status = unsafe {
            PROBE.generate_captions.unwrap()(encoder, images.as_ptr(), images.len(), &o, &e)
        };
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (status, text(out), text(err))
    }

    #[test]
    fn caption_shim_writes_one_json_string_per_image_and_checks_counts() {
        let (_, encoder, _) = create(r#"{"model": "m"}"#);
        let pixels = [7u8; 2 * 3 * 3];
        let image = |width, height, rgb_len| RawImage {
            width,
            height,
            rgb: pixels.as_ptr(),
            rgb_len,
        };
        let (status, out, _) = captions(encoder, &[image(2, 3, 18), image(3, 2, 18)]);
        assert_eq!((status, out.as_str()), (Status::OK, r#"["2x3","3x2"]"#));
        let (status, _, err) = captions(encoder, &[image(2, 3, 17)]);
        assert_eq!(
            (status, err.as_str()),
            (Status::BAD_INPUT, "image 0 is 2×3 but has 17 bytes of RGB8")
        );
        let (status, _, err) = captions(encoder, &[image(1, 1, 3), image(1, 1, 3), image(1, 1, 3)]);
        assert_eq!(
            (status, err.as_str()),
            (
                Status::INTERNAL,
                "the model generated 1 captions for 3 images"
            )
        );
        // SAFETY: created above, destroyed once.
        unsafe { PROBE.destroy.unwrap()(encoder) };
    }
}
