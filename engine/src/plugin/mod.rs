//! Encoder plugins: finding them, loading them (ABI handshake first) and calling them safely.
//!
//! A plugin named `NAME` is the library `libembedlab_NAME.so` (`embedlab_NAME.dll`,
//! `libembedlab_NAME.dylib`), searched for in order in the `--plugin-dir` folders, the folders of
//! `EMBEDLAB_PLUGIN_PATH`, the running binary's folder and its `plugins/` subfolder; the first
//! file found is the plugin (a broken one is an error, not skipped). The ABI itself is defined
//! and documented in the `embedlab-plugin` crate; all `unsafe` is in `loader.rs`.

mod error;
mod loader;
#[cfg(test)]
mod tests;

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use embedlab_plugin::{
    ABI_VERSION, AbiVersion, Description, Image, Modality, ModelInfo, Status,
};
pub use error::PluginError;

/// The environment variable listing plugin folders (`:`-separated; `;` on Windows).
pub const PATH_VAR: &str = "EMBEDLAB_PLUGIN_PATH";

/// The folders searched for plugins, in order, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPath {
    dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// `extra_dirs` (the `--plugin-dir` folders), then `EMBEDLAB_PLUGIN_PATH`, then the running
    /// binary's folder and its `plugins/` subfolder.
    pub fn new(extra_dirs: &[PathBuf]) -> SearchPath {
        let exe = std::env::current_exe().ok();
        SearchPath::compose(
            extra_dirs,
            std::env::var_os(PATH_VAR).as_deref(),
            exe.as_deref(),
        )
    }

    /// Exactly `dirs`, in order (for tests, and for callers that want no defaults).
    pub fn only(dirs: &[PathBuf]) -> SearchPath {
        SearchPath::compose(dirs, None, None)
    }

    fn compose(extra: &[PathBuf], env: Option<&OsStr>, exe: Option<&Path>) -> SearchPath {
        let mut dirs: Vec<PathBuf> = extra.to_vec();
        if let Some(list) = env {
            dirs.extend(std::env::split_paths(list));
        }
        if let Some(folder) = exe.and_then(Path::parent) {
            dirs.push(folder.to_path_buf());
            dirs.push(folder.join("plugins"));
        }
        let mut unique: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for dir in dirs {
            if !dir.as_os_str().is_empty() && !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        SearchPath { dirs: unique }
    }

    /// The folders, in search order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// The library file of plugin `name` on this platform: `libembedlab_<name>.so`.
pub fn file_name(name: &str) -> String {
    format!("{DLL_PREFIX}embedlab_{name}{DLL_SUFFIX}")
}

/// The plugin name a library file name stands for (`libembedlab_x.so` → `x`), if it is one.
fn name_of_file(file: &str) -> Option<&str> {
    let name = file
        .strip_prefix(DLL_PREFIX)?
        .strip_prefix("embedlab_")?
        .strip_suffix(DLL_SUFFIX)?;
    valid_name(name).then_some(name)
}

/// Whether a manifest's `plugin` value is a library path rather than a plugin name: it has a
/// folder separator or the platform's library suffix.
pub fn is_path(plugin: &str) -> bool {
    plugin.contains(['/', std::path::MAIN_SEPARATOR]) || plugin.ends_with(DLL_SUFFIX)
}

/// Whether `name` can be a plugin's name (and so part of a library file name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The plugin `name`: the first `libembedlab_<name>.so` along `search`, loaded and checked.
pub fn find(name: &str, search: &SearchPath) -> Result<Plugin, PluginError> {
    if !valid_name(name) {
        return Err(PluginError::InvalidName {
            name: name.to_string(),
        });
    }
    let file = file_name(name);
    match search
        .dirs
        .iter()
        .map(|dir| dir.join(&file))
        .find(|path| path.is_file())
    {
        Some(path) => Plugin::load(&path),
        None => Err(PluginError::NotFound {
            name: name.to_string(),
            file,
            searched: search.dirs.clone(),
        }),
    }
}

/// Every plugin library along `search` (folder by folder in order, files sorted by name), each
/// loaded, or the error that stopped it (including a folder that exists but cannot be read).
/// Folders that do not exist are skipped.
pub fn list(search: &SearchPath) -> Vec<Result<Plugin, PluginError>> {
    let mut found = Vec::new();
    for dir in &search.dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                found.push(Err(PluginError::UnreadableFolder {
                    path: dir.clone(),
                    message: e.to_string(),
                }));
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(OsStr::to_str)
                    .and_then(name_of_file)
                    .is_some()
            })
            .filter(|path| path.is_file())
            .collect();
        paths.sort();
        found.extend(paths.iter().map(|path| Plugin::load(path)));
    }
    found
}

/// A loaded plugin. Cheap to clone; the library stays loaded while any clone or encoder lives.
#[derive(Clone)]
pub struct Plugin {
    loaded: Arc<loader::Loaded>,
}

impl Plugin {
    /// Loads the plugin library at `path` (named `libembedlab_<name>.so`; the plugin must call
    /// itself `<name>`).
    pub fn load(path: &Path) -> Result<Plugin, PluginError> {
        let file = path.file_name().and_then(OsStr::to_str).unwrap_or_default();
        let Some(expected) = name_of_file(file) else {
            let message = format!("the file name is not {}", file_name("<name>"));
            return Err(PluginError::NotLoadable {
                path: path.to_path_buf(),
                message,
            });
        };
        let loaded = loader::load(path, expected)?;
        Ok(Plugin {
            loaded: Arc::new(loaded),
        })
    }

    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    pub fn version(&self) -> &str {
        &self.loaded.version
    }

    /// The ABI version the plugin speaks (accepted by this engine's [`ABI_VERSION`]).
    pub fn abi(&self) -> AbiVersion {
        self.loaded.abi
    }

    /// The library file.
    pub fn path(&self) -> &Path {
        &self.loaded.path
    }

    /// The models the plugin offers (read once, at load).
    pub fn models(&self) -> Vec<ModelInfo> {
        self.loaded.models.clone()
    }

    /// A new encoder from `config` (`{"model": id, "model_dir": "/abs/dir", "options": {...}}`).
    pub fn create(&self, config: &serde_json::Value) -> Result<EncoderHandle, PluginError> {
        let raw = self.loaded.create(config)?;
        Ok(EncoderHandle { raw })
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("version", &self.version())
            .field("abi", &self.abi())
            .field("path", &self.path())
            .finish()
    }
}

/// An encoder a plugin made. `Send` (one thread at a time); dropping it destroys the plugin's
/// encoder.
pub struct EncoderHandle {
    raw: loader::RawEncoder,
}

impl EncoderHandle {
    /// What the encoder is (asked once, at create).
    pub fn describe(&self) -> &Description {
        &self.raw.description
    }

    /// The plugin that made this encoder.
    pub fn plugin_name(&self) -> &str {
        &self.raw.plugin().name
    }

    /// One vector per text: `texts.len() × dim` floats, row-major.
    pub fn encode_texts(&mut self, texts: &[&str]) -> Result<Vec<f32>, PluginError> {
        self.raw.encode_texts(texts)
    }

    /// One vector per image (RGB8, `width × height × 3` bytes each): `images.len() × dim` floats.
    pub fn encode_images(&mut self, images: &[Image<'_>]) -> Result<Vec<f32>, PluginError> {
        self.raw.encode_images(images)
    }

    /// One caption per image, in order; an error if the plugin (ABI 1.0) or its model cannot
    /// caption.
    pub fn generate_captions(&mut self, images: &[Image<'_>]) -> Result<Vec<String>, PluginError> {
        self.raw.generate_captions(images)
    }
}

impl fmt::Debug for EncoderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plugin = self.raw.plugin();
        f.debug_struct("EncoderHandle")
            .field("plugin", &plugin.name)
            .field("path", &plugin.path)
            .field("description", self.describe())
            .finish()
    }
}
