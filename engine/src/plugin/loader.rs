//! The host side of the plugin ABI: every `unsafe` of the engine is here, behind [`load`],
//! [`Loaded`] and [`RawEncoder`], whose methods are sound for any arguments.
//!
//! Loading goes in stages: open the library, find the entry symbol, call it, read only the
//! table's fixed header, refuse a version or size this host cannot read, and only then copy the
//! table and check its entries. The [`Library`] lives in [`Loaded`], behind an `Arc` that every
//! [`RawEncoder`] shares, so no function pointer or encoder outlives the code it points into.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use embedlab_plugin::{
    ABI_VERSION, AbiVersion, CreateFn, DescribeFn, Description, DestroyFn, ENTRY_SYMBOL,
    EncodeImagesFn, EncodeTextsFn, EntryFn, GenerateCaptionsFn, Image, InfoFn, Modality, ModelInfo,
    PluginTable, RawImage, RawStr, Status, TableHeader, Writer,
};
use libloading::Library;

use super::PluginError;

/// A plugin's table entries, checked: all present but `encode_images` (NULL for text-only) and
/// `generate_captions` (NULL for plugins that never caption, and for ABI 1.0 plugins).
#[derive(Clone, Copy)]
struct Entries {
    name: InfoFn,
    version: InfoFn,
    models: InfoFn,
    create: CreateFn,
    describe: DescribeFn,
    encode_texts: EncodeTextsFn,
    encode_images: Option<EncodeImagesFn>,
    destroy: DestroyFn,
    generate_captions: Option<GenerateCaptionsFn>,
}

/// A loaded plugin library and what it said about itself.
pub(super) struct Loaded {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) version: String,
    pub(super) abi: AbiVersion,
    pub(super) models: Vec<ModelInfo>,
    entries: Entries,
    /// Declared last, so dropped last; every entry above points into it.
    _library: Library,
}

/// Loads the plugin library at `path`, whose file name says it is plugin `expected`.
pub(super) fn load(path: &Path, expected: &str) -> Result<Loaded, PluginError> {
    let at = |name: &str| (name.to_string(), path.to_path_buf());
    // SAFETY: opening a library runs its initialisers, which is arbitrary code: like any program
    // loading the libraries it is told to, we trust the files in the plugin folders the user
    // configured. Nothing else about the library is assumed until its header is checked.
    let library = unsafe { Library::new(path) }.map_err(|e| PluginError::NotLoadable {
        path: path.to_path_buf(),
        message: with_sources(&e, path),
    })?;

    // SAFETY: by the ABI, ENTRY_SYMBOL is a function of type `EntryFn`, in every version. The
    // copied pointer is used only below, while `library` is alive.
    let entry: EntryFn = *unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) }.map_err(|e| {
        PluginError::MissingSymbol {
            path: path.to_path_buf(),
            message: with_sources(&e, path),
        }
    })?;
    // SAFETY: the entry takes nothing and returns a pointer to a table that lives as long as the
    // library; it does not unwind (the SDK's is a plain `&TABLE`).
    let table = unsafe { entry() };
    if table.is_null() || !table.cast::<TableHeader>().is_aligned() {
        let (name, path) = at(expected);
        return Err(PluginError::NullTable { name, path });
    }

    // SAFETY: non-NULL and aligned (checked). Whatever its version, a table starts with the
    // header, whose layout never changes, so these 16 bytes are readable.
    let header = unsafe { table.cast::<TableHeader>().read() };
    if !ABI_VERSION.accepts(header.abi) {
        let (name, path) = at(expected);
        return Err(PluginError::AbiMismatch {
            name,
            path,
            plugin: header.abi,
            host: ABI_VERSION,
        });
    }
    let needed = PluginTable::required_size(header.abi);
    if header.table_size < needed {
        let (name, path) = at(expected);
        let (abi, size) = (header.abi, header.table_size);
        return Err(PluginError::TableTooSmall {
            name,
            path,
            abi,
            size,
            needed,
        });
    }
    let raw = read_table(table, needed);
    let missing = |entry: &'static str| {
        let (name, path) = at(expected);
        PluginError::NullEntry { name, path, entry }
    };
    let entries = Entries {
        name: raw.name.ok_or_else(|| missing("name"))?,
        version: raw.version.ok_or_else(|| missing("version"))?,
        models: raw.models.ok_or_else(|| missing("models"))?,
        create: raw.create.ok_or_else(|| missing("create"))?,
        describe: raw.describe.ok_or_else(|| missing("describe"))?,
        encode_texts: raw.encode_texts.ok_or_else(|| missing("encode_texts"))?,
        encode_images: raw.encode_images,
        destroy: raw.destroy.ok_or_else(|| missing("destroy"))?,
        generate_captions: raw.generate_captions,
    };

    let text = |f: InfoFn, what: &'static str| -> Result<String, PluginError> {
        // SAFETY: `f` is an entry of the table checked above, of type `InfoFn`; both writers are
        // valid for the call.
        let (status, out, err) = with_writers(|out, err| unsafe { f(out, err) });
        if status != Status::OK {
            let (name, path) = at(expected);
            return Err(failure(name, path, what, status, &err));
        }
        String::from_utf8(out).map_err(|e| {
            let (name, path) = at(expected);
            PluginError::BadReply {
                name,
                path,
                what,
                message: format!("not UTF-8: {e}"),
            }
        })
    };
    let name = text(entries.name, "name")?;
    if name != expected {
        return Err(PluginError::NameMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            reported: name,
        });
    }
    let version = text(entries.version, "version")?;
    let models =
        ModelInfo::list_from_json(&text(entries.models, "models")?).map_err(|message| {
            let (name, path) = at(expected);
            PluginError::BadReply {
                name,
                path,
                what: "models list",
                message,
            }
        })?;
    Ok(Loaded {
        path: path.to_path_buf(),
        name,
        version,
        abi: header.abi,
        models,
        entries,
        _library: library,
    })
}

/// The first `len` bytes of the plugin's table (all its minor version defines); the entries of
/// later minor versions stay NULL.
fn read_table(table: *const PluginTable, len: usize) -> PluginTable {
    let mut copy = std::mem::MaybeUninit::<PluginTable>::zeroed();
    let len = len.min(size_of::<PluginTable>());
    // SAFETY: the plugin speaks our major version and a minor we know, and says its table holds
    // at least `len` bytes (the caller checked `table_size` against `required_size`), so `len`
    // bytes at `table` are readable; `copy` has room for them and does not overlap the table.
    unsafe { std::ptr::copy_nonoverlapping(table.cast::<u8>(), copy.as_mut_ptr().cast(), len) };
    // SAFETY: every field is plain data or an `Option` of a function pointer, for which all-zero
    // bytes are a valid value (`None`); the copied prefix holds the plugin's own values, each
    // valid for any non-NULL or NULL value. Whether each entry is present is checked by the caller.
    unsafe { copy.assume_init() }
}

impl Loaded {
    fn error_at(&self) -> (String, PathBuf) {
        (self.name.clone(), self.path.clone())
    }

    fn failure(&self, during: &'static str, status: Status, err: &[u8]) -> PluginError {
        let (name, path) = self.error_at();
        failure(name, path, during, status, err)
    }

    fn bad_reply(&self, what: &'static str, message: String) -> PluginError {
        let (name, path) = self.error_at();
        PluginError::BadReply {
            name,
            path,
            what,
            message,
        }
    }

    /// A new encoder from the config (`{"model": id, ...}`), described once.
    pub(super) fn create(
        self: &Arc<Loaded>,
        config: &serde_json::Value,
    ) -> Result<RawEncoder, PluginError> {
        let model = config["model"].as_str().unwrap_or_default().to_string();
        let config = config.to_string();
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: `create` is a checked entry of this (loaded) library; `config` is valid for
        // `config.len()` bytes, `ptr` is writable and the writers valid for the call.
        let (status, _, err) = with_writers(|_, err| unsafe {
            (self.entries.create)(config.as_ptr(), config.len(), &mut ptr, err)
        });
        if status != Status::OK {
            return Err(self.failure("create", status, &err));
        }
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| self.bad_reply("encoder", "create returned NULL".into()))?;
        // From here on `encoder` owns the plugin's encoder: an early return destroys it.
        let mut encoder = RawEncoder {
            ptr,
            loaded: Arc::clone(self),
            model,
            description: placeholder(),
        };
        // SAFETY: `describe` is a checked entry; `ptr` is a live encoder of this library, used by
        // this thread only; the writers are valid for the call.
        let (status, out, err) =
            with_writers(|out, err| unsafe { (self.entries.describe)(ptr.as_ptr(), out, err) });
        if status != Status::OK {
            return Err(self.failure("describe", status, &err));
        }
        let json = String::from_utf8(out)
            .map_err(|e| self.bad_reply("description", format!("not UTF-8: {e}")))?;
        let description =
            Description::from_json(&json).map_err(|m| self.bad_reply("description", m))?;
        if description.dim == 0 {
            return Err(self.bad_reply("description", "dim is 0".into()));
        }
        encoder.description = description;
        Ok(encoder)
    }
}

/// A description that is never read: an encoder's before `describe` answers.
fn placeholder() -> Description {
    Description {
        modalities: Vec::new(),
        dim: 0,
        parameters: 0,
        weights_digest: String::new(),
        device: String::new(),
    }
}

/// An encoder a plugin made, with its description; destroyed on drop.
pub(super) struct RawEncoder {
    ptr: NonNull<c_void>,
    /// Keeps the library loaded while the encoder lives.
    loaded: Arc<Loaded>,
    /// The model id it was created for, to name in errors.
    model: String,
    pub(super) description: Description,
}

// SAFETY: the ABI allows an encoder to move between threads (the SDK requires `Encoder: Send`;
// the ABI documents the same for C plugins) as long as one thread at a time uses it: every call
// into the plugin takes `&mut self`. `Arc<Loaded>` and `Description` are `Send` themselves.
unsafe impl Send for RawEncoder {}

impl RawEncoder {
    pub(super) fn plugin(&self) -> &Loaded {
        &self.loaded
    }

    /// The output buffer for `n` inputs: `n × dim` floats.
    fn buffer(&self, n: usize) -> Result<Vec<f32>, PluginError> {
        let dim = self.description.dim;
        let len = n.checked_mul(dim).ok_or_else(|| {
            self.loaded.bad_reply(
                "description",
                format!("dim {dim} is too large for a batch of {n}"),
            )
        })?;
        Ok(vec![0.0; len])
    }

    /// `images` as the ABI passes them, after checking each one's length.
    fn raw_images(&self, images: &[Image<'_>]) -> Result<Vec<RawImage>, PluginError> {
        if let Some((index, bad)) = images.iter().enumerate().find(|(_, i)| !i.is_consistent()) {
            let (name, path) = self.loaded.error_at();
            let (width, height, len) = (bad.width, bad.height, bad.rgb.len());
            return Err(PluginError::BadImage {
                name,
                path,
                index,
                width,
                height,
                len,
            });
        }
        Ok(images
            .iter()
            .map(|i| RawImage {
                width: i.width,
                height: i.height,
                rgb: i.rgb.as_ptr(),
                rgb_len: i.rgb.len(),
            })
            .collect())
    }

    fn unsupported(&self, what: &'static str) -> PluginError {
        let (name, path) = self.loaded.error_at();
        PluginError::Unsupported { name, path, what }
    }

    /// Checks what the plugin reported writing, and that every value it wrote is finite: a NaN
    /// or infinity would reach the cache and make every cosine with that vector meaningless.
    fn check(
        &self,
        during: &'static str,
        status: Status,
        err: &[u8],
        out: &[f32],
        written: usize,
    ) -> Result<(), PluginError> {
        let n = out.len() / self.description.dim;
        if status != Status::OK {
            return Err(self.loaded.failure(during, status, err));
        }
        let dim = self.description.dim;
        if Some(written) != n.checked_mul(dim) {
            let (name, path) = self.loaded.error_at();
            return Err(PluginError::OutputSize {
                name,
                path,
                n,
                dim,
                written,
            });
        }
        match out.iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(at) => {
                let (name, path) = self.loaded.error_at();
                Err(PluginError::NonFinite {
                    name,
                    path,
                    model: self.model.clone(),
                    during,
                    input: at / self.description.dim,
                    n,
                })
            }
        }
    }

    /// One vector per text, row-major `texts.len() × dim`.
    pub(super) fn encode_texts(&mut self, texts: &[&str]) -> Result<Vec<f32>, PluginError> {
        if !self.description.supports(Modality::Text) {
            return Err(self.unsupported("texts"));
        }
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<RawStr> = texts.iter().map(|t| RawStr::new(t)).collect();
        let mut out = self.buffer(texts.len())?;
        let mut written = 0usize;
        let encode = self.loaded.entries.encode_texts;
        // SAFETY: `encode_texts` is a checked entry; `self.ptr` is a live encoder of this library,
        // used by this thread only (`&mut self`); `raw` holds `n` strings borrowed from `texts`,
        // alive for the call; `out` is exclusively ours, `n × dim` floats; `written` writable.
        let (status, _, err) = with_writers(|_, err| unsafe {
            encode(
                self.ptr.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                out.as_mut_ptr(),
                out.len(),
                &mut written,
                err,
            )
        });
        self.check("encode texts", status, &err, &out, written)?;
        Ok(out)
    }

    /// One vector per image, row-major `images.len() × dim`.
    pub(super) fn encode_images(&mut self, images: &[Image<'_>]) -> Result<Vec<f32>, PluginError> {
        let Some(encode) = self.loaded.entries.encode_images else {
            return Err(self.unsupported("images"));
        };
        if !self.description.supports(Modality::Image) {
            return Err(self.unsupported("images"));
        }
        let raw = self.raw_images(images)?;
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = self.buffer(images.len())?;
        let mut written = 0usize;
        // SAFETY: as in `encode_texts`; each image's `rgb_len` is `width × height × 3` (checked)
        // and its bytes are borrowed from `images` for the call.
        let (status, _, err) = with_writers(|_, err| unsafe {
            encode(
                self.ptr.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                out.as_mut_ptr(),
                out.len(),
                &mut written,
                err,
            )
        });
        self.check("encode images", status, &err, &out, written)?;
        Ok(out)
    }
}

impl RawEncoder {
    /// One caption per image, in order (ABI 1.1 `generate_captions`).
    pub(super) fn generate_captions(
        &mut self,
        images: &[Image<'_>],
    ) -> Result<Vec<String>, PluginError> {
        let Some(generate) = self.loaded.entries.generate_captions else {
            let (name, path) = self.loaded.error_at();
            let abi = self.loaded.abi;
            return Err(PluginError::NoCaptioning { name, path, abi });
        };
        let raw = self.raw_images(images)?;
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        // SAFETY: `generate_captions` is a checked entry of a 1.1 table; `self.ptr` is a live
        // encoder of this library, used by this thread only (`&mut self`); each image's
        // `rgb_len` is `width × height × 3` (checked) and its bytes are borrowed from `images`
        // for the call; the writers are valid for the call.
        let (status, out, err) = with_writers(|out, err| unsafe {
            generate(self.ptr.as_ptr(), raw.as_ptr(), raw.len(), out, err)
        });
        if status != Status::OK {
            return Err(self.loaded.failure("generate captions", status, &err));
        }
        let captions: Vec<String> = serde_json::from_slice(&out).map_err(|e| {
            self.loaded
                .bad_reply("caption list", format!("not a JSON array of strings: {e}"))
        })?;
        if captions.len() != images.len() {
            let message = format!("{} captions for {} images", captions.len(), images.len());
            return Err(self.loaded.bad_reply("caption list", message));
        }
        Ok(captions)
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        // SAFETY: `self.ptr` came from this library's `create` and is destroyed exactly once,
        // here, after its last use; `self.loaded` keeps the library loaded until after this.
        unsafe { (self.loaded.entries.destroy)(self.ptr.as_ptr()) }
    }
}

/// `e` and its sources, `: `-separated (libloading's own message is only "dlopen failed"; the
/// system's reason is its source), without the system's repetition of `path`.
fn with_sources(e: &dyn std::error::Error, path: &Path) -> String {
    let repeated = format!("{}: ", path.display());
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        message.push_str(": ");
        message.push_str(text.trim().strip_prefix(&repeated).unwrap_or(text.trim()));
        source = s.source();
    }
    message
}

/// The error for a call that returned `status` (not OK) with message bytes `err`.
fn failure(
    name: String,
    path: PathBuf,
    during: &'static str,
    status: Status,
    err: &[u8],
) -> PluginError {
    let message = String::from_utf8_lossy(err);
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = if message.is_empty() {
        "(no message)".to_string()
    } else {
        message
    };
    if status == Status::PANIC {
        PluginError::Panicked {
            name,
            path,
            during,
            message,
        }
    } else {
        PluginError::Failed {
            name,
            path,
            during,
            status,
            message,
        }
    }
}

/// Calls `f` with two writers (`out`, `err`) collecting what the plugin writes, and returns
/// `f`'s result with both.
fn with_writers<R>(f: impl FnOnce(*const Writer, *const Writer) -> R) -> (R, Vec<u8>, Vec<u8>) {
    let mut out: Vec<u8> = Vec::new();
    let mut err: Vec<u8> = Vec::new();
    let out_writer = Writer {
        ctx: (&raw mut out).cast(),
        write: Some(append),
    };
    let err_writer = Writer {
        ctx: (&raw mut err).cast(),
        write: Some(append),
    };
    let result = f(&out_writer, &err_writer);
    (result, out, err)
}

/// The host's `write`: appends `len` bytes at `ptr` to the `Vec<u8>` at `ctx`.
///
/// # Safety
/// `ctx` is one of the vectors of a [`with_writers`] call still in progress, and `ptr` is valid
/// for `len` bytes (the ABI's contract with the plugin).
unsafe extern "C" fn append(ctx: *mut c_void, ptr: *const u8, len: usize) {
    if ctx.is_null() || ptr.is_null() || len == 0 || len > isize::MAX as usize {
        return;
    }
    // SAFETY: by this function's contract, `ctx` is a `Vec<u8>` nothing else touches during the
    // call, and `ptr` holds `len` readable bytes (and cannot overlap a vector the plugin does not
    // know about).
    unsafe {
        let buffer = &mut *ctx.cast::<Vec<u8>>();
        buffer.extend_from_slice(std::slice::from_raw_parts(ptr, len));
    }
}
