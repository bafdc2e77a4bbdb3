//! What can go wrong finding, loading and calling a plugin; every message is one line naming the
//! plugin and its file.

use std::path::{Path, PathBuf};

use embedlab_plugin::{AbiVersion, Status};

/// An error from a plugin or from loading one.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("invalid plugin name {name:?}: use letters, digits, '_' and '-'")]
    InvalidName { name: String },

    #[error("no plugin named {name}: looked for {file} in {}", folders(searched))]
    NotFound {
        name: String,
        file: String,
        searched: Vec<PathBuf>,
    },

    #[error("cannot read plugin folder {}: {message}", path.display())]
    UnreadableFolder { path: PathBuf, message: String },

    #[error("not a plugin: {} failed to load: {message}", path.display())]
    NotLoadable { path: PathBuf, message: String },

    #[error("not a plugin: {} lacks the embedlab_plugin_v1 symbol: {message}", path.display())]
    MissingSymbol { path: PathBuf, message: String },

    #[error("plugin {name} at {} returned no function table", path.display())]
    NullTable { name: String, path: PathBuf },

    #[error(
        "plugin {name} at {} speaks ABI {plugin}; this embedlab speaks {host} — {}",
        path.display(),
        abi_advice(*plugin, *host)
    )]
    AbiMismatch {
        name: String,
        path: PathBuf,
        plugin: AbiVersion,
        host: AbiVersion,
    },

    #[error(
        "plugin {name} at {}: its function table is {size} bytes, but ABI {abi} needs at least \
         {needed} — the plugin is broken; rebuild it",
        path.display()
    )]
    TableTooSmall {
        name: String,
        path: PathBuf,
        abi: AbiVersion,
        size: usize,
        needed: usize,
    },

    #[error("plugin {name} at {}: the `{entry}` entry of its function table is null", path.display())]
    NullEntry {
        name: String,
        path: PathBuf,
        entry: &'static str,
    },

    #[error(
        "plugin at {} calls itself {reported:?}, but its file name says {expected:?}",
        path.display()
    )]
    NameMismatch {
        path: PathBuf,
        expected: String,
        reported: String,
    },

    #[error("plugin {name} at {} returned an invalid {what}: {message}", path.display())]
    BadReply {
        name: String,
        path: PathBuf,
        what: &'static str,
        message: String,
    },

    #[error("plugin {name} at {}: {during} failed ({status}): {message}", path.display())]
    Failed {
        name: String,
        path: PathBuf,
        during: &'static str,
        status: Status,
        message: String,
    },

    #[error("plugin {name} at {} panicked during {during}: {message}", path.display())]
    Panicked {
        name: String,
        path: PathBuf,
        during: &'static str,
        message: String,
    },

    #[error("plugin {name} at {}: this encoder does not encode {what}", path.display())]
    Unsupported {
        name: String,
        path: PathBuf,
        what: &'static str,
    },

    #[error(
        "plugin {name} at {} cannot generate captions (it speaks ABI {abi} and has no \
         `generate_captions` entry, which ABI 1.1 added)",
        path.display()
    )]
    NoCaptioning {
        name: String,
        path: PathBuf,
        abi: embedlab_plugin::AbiVersion,
    },

    #[error(
        "plugin {name} at {}: image {index} is {width}×{height} but has {len} bytes of RGB8",
        path.display()
    )]
    BadImage {
        name: String,
        path: PathBuf,
        index: usize,
        width: u32,
        height: u32,
        len: usize,
    },

    #[error(
        "plugin {name} at {} wrote {written} floats for {n} inputs × dim {dim} (expected {})",
        path.display(),
        n.saturating_mul(*dim)
    )]
    OutputSize {
        name: String,
        path: PathBuf,
        n: usize,
        dim: usize,
        written: usize,
    },

    /// `input` is the input's index in the call of `n`.
    #[error(
        "plugin {name} at {}: model \"{model}\" returned NaN or infinity ({during}, input {input} \
         of a batch of {n})",
        path.display()
    )]
    NonFinite {
        name: String,
        path: PathBuf,
        model: String,
        during: &'static str,
        input: usize,
        n: usize,
    },
}

impl PluginError {
    /// The plugin's file, when the error is about one.
    pub fn path(&self) -> Option<&Path> {
        use PluginError::*;
        match self {
            InvalidName { .. } | NotFound { .. } => None,
            UnreadableFolder { path, .. }
            | NotLoadable { path, .. }
            | MissingSymbol { path, .. }
            | NullTable { path, .. }
            | AbiMismatch { path, .. }
            | TableTooSmall { path, .. }
            | NullEntry { path, .. }
            | NameMismatch { path, .. }
            | BadReply { path, .. }
            | Failed { path, .. }
            | Panicked { path, .. }
            | Unsupported { path, .. }
            | NoCaptioning { path, .. }
            | BadImage { path, .. }
            | OutputSize { path, .. }
            | NonFinite { path, .. } => Some(path),
        }
    }
}

/// `a, b, c`.
fn folders(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no folders (none given, EMBEDLAB_PLUGIN_PATH unset, binary folder unknown)"
            .to_string();
    }
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do about a plugin of ABI `plugin` that a host of ABI `host` refused.
fn abi_advice(plugin: AbiVersion, host: AbiVersion) -> String {
    if plugin.major == host.major {
        format!(
            "upgrade embedlab, or rebuild the plugin against embedlab-plugin (ABI {}.{})",
            host.major, host.minor
        )
    } else {
        format!(
            "rebuild the plugin against embedlab-plugin (ABI {}.x)",
            host.major
        )
    }
}
