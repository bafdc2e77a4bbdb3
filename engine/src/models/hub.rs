//! The Hugging Face hub source, through `hf-hub`'s blocking client: files already in the Hugging
//! Face cache are used as they are (no network), others are downloaded into that cache; each is
//! then copied into the staging folder and hashed. Every failure becomes one line; a panic inside
//! the client is caught and reported the same way.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use super::ModelError;
use super::error::one_line;
use super::install::{Manifest, ManifestFile, Staging, check};
use super::registry::{HubSource, ModelSpec, is_safe_relative};

/// How the hub is reached.
#[derive(Clone, Debug)]
pub(crate) struct HubConfig {
    pub enabled: bool,
    /// `HF_HUB_OFFLINE` is set: only the Hugging Face cache is read.
    pub offline: bool,
    /// Overrides the endpoint (`HF_ENDPOINT` is honoured otherwise).
    pub endpoint: Option<String>,
    /// Overrides the Hugging Face cache folder (`HF_HOME` is honoured otherwise).
    pub cache_dir: Option<PathBuf>,
}

impl HubConfig {
    pub fn from_env() -> HubConfig {
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        HubConfig {
            enabled: true,
            offline,
            endpoint: None,
            cache_dir: None,
        }
    }

    /// The Hugging Face cache (`Cache::from_env` panics without a home folder: guarded).
    fn cache(&self, id: &str) -> Result<Cache, ModelError> {
        match &self.cache_dir {
            Some(dir) => Ok(Cache::new(dir.clone())),
            None => guarded(id, "Hugging Face cache", || {
                Ok::<_, std::convert::Infallible>(Cache::from_env())
            }),
        }
    }

    fn api(&self, id: &str) -> Result<Api, ModelError> {
        let builder = guarded(id, "client", || {
            Ok::<_, std::convert::Infallible>(ApiBuilder::from_env().with_progress(false))
        })?;
        let mut builder = builder;
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(dir) = &self.cache_dir {
            builder = builder.with_cache_dir(dir.clone());
        }
        guarded(id, "client", || builder.build())
    }
}

/// The repository at `revision` (its default branch when `None`).
fn repo(name: &str, revision: Option<&str>) -> Repo {
    match revision {
        Some(rev) => Repo::with_revision(name.to_string(), RepoType::Model, rev.to_string()),
        None => Repo::model(name.to_string()),
    }
}

/// Fetches the pinned files of `spec` from `hub`, checking each digest.
pub(crate) fn fetch_pinned(
    config: &HubConfig,
    spec: &ModelSpec,
    hub: &HubSource,
    staging: &Staging,
    say: &dyn Fn(&str),
) -> Result<Manifest, ModelError> {
    let id = spec.id.as_str();
    let repo = repo(&hub.repo, hub.revision.as_deref());
    let mut client = Client::new(config, id, repo);
    let mut files = Vec::with_capacity(spec.files.len());
    for pinned in &spec.files {
        let path = client.get(&pinned.path, say)?;
        let (sha256, size) = copy(staging, &pinned.path, &path)?;
        check(id, pinned, &sha256)?;
        files.push(ManifestFile {
            path: pinned.path.clone(),
            sha256,
            size,
        });
    }
    let revision = hub.revision.as_deref().unwrap_or("main");
    Ok(Manifest {
        id: id.to_string(),
        origin: format!("hub {}@{revision}", hub.repo),
        pinned: true,
        weights: spec.weights.clone(),
        files,
    })
}

/// Fetches a model the registry does not know: the repository's files that a model needs (see
/// [`select_files`]) at its current commit; their digests are recorded, not checked.
pub(crate) fn fetch_unpinned(
    config: &HubConfig,
    id: &str,
    staging: &Staging,
    say: &dyn Fn(&str),
) -> Result<Manifest, ModelError> {
    if config.offline {
        return Err(hub_error(
            id,
            "HF_HUB_OFFLINE is set and the model is not in the registry, so its file list is unknown"
                .to_string(),
        ));
    }
    let api = config.api(id)?;
    say(&format!("model {id}: asking the hub for its files"));
    let info = guarded(id, "listing files", || api.model(id.to_string()).info())?;
    let names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    let selected = select_files(&names);
    let weights = super::pick_weights(selected.iter().map(String::as_str)).ok_or_else(|| {
        hub_error(
            id,
            format!(
                "no weights file among the repository's {} files",
                names.len()
            ),
        )
    })?;
    let mut client = Client::new(config, id, repo(id, Some(&info.sha)));
    let mut files = Vec::with_capacity(selected.len());
    for name in &selected {
        let path = client.get(name, say)?;
        let (sha256, size) = copy(staging, name, &path)?;
        files.push(ManifestFile {
            path: name.clone(),
            sha256,
            size,
        });
    }
    Ok(Manifest {
        id: id.to_string(),
        origin: format!("hub {id}@{}", info.sha),
        pinned: false,
        weights,
        files,
    })
}

/// The files of a repository worth installing: configuration, tokenizer and one format of
/// weights (safetensors when there are any). Other frameworks' weights, exports (ONNX, OpenVINO,
/// Core ML, TF Lite), images, READMEs and dot files are left out.
pub(crate) fn select_files(names: &[String]) -> Vec<String> {
    const SKIP_DIRS: &[&str] = &["onnx", "openvino", "coreml", "tflite", "tf", "flax"];
    const SKIP_EXT: &[&str] = &[
        "md",
        "h5",
        "msgpack",
        "ot",
        "onnx",
        "onnx_data",
        "tflite",
        "mlmodel",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
    ];
    const TORCH_EXT: &[&str] = &["bin", "pt", "pth", "ckpt"];
    let has_safetensors = names.iter().any(|n| n.ends_with(".safetensors"));
    let mut selected: Vec<String> = names
        .iter()
        .filter(|name| {
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .unwrap_or_default();
            let hidden = name.split('/').any(|c| c.starts_with('.'));
            let export = name
                .split_once('/')
                .is_some_and(|(first, _)| SKIP_DIRS.contains(&first));
            let duplicate = has_safetensors && TORCH_EXT.contains(&ext.as_str());
            let skipped = hidden || export || duplicate || SKIP_EXT.contains(&ext.as_str());
            is_safe_relative(name) && !skipped
        })
        .cloned()
        .collect();
    selected.sort();
    selected
}

/// A lazily built client for one repository; the Hugging Face cache is looked at first.
struct Client<'a> {
    config: &'a HubConfig,
    id: &'a str,
    repo: Repo,
    api: Option<ApiRepo>,
}

impl<'a> Client<'a> {
    fn new(config: &'a HubConfig, id: &'a str, repo: Repo) -> Client<'a> {
        Client {
            config,
            id,
            repo,
            api: None,
        }
    }

    /// The local path of `file`: from the Hugging Face cache, else downloaded into it.
    fn get(&mut self, file: &str, say: &dyn Fn(&str)) -> Result<PathBuf, ModelError> {
        let id = self.id;
        if let Some(path) = self.config.cache(id)?.repo(self.repo.clone()).get(file) {
            return Ok(path);
        }
        if self.config.offline {
            return Err(hub_error(
                id,
                format!("{file}: not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
            ));
        }
        if self.api.is_none() {
            let api = self.config.api(id)?;
            self.api = Some(api.repo(self.repo.clone()));
        }
        let api = self.api.as_ref().expect("just built");
        say(&format!("model {id}: downloading {file} from the hub"));
        guarded(id, file, || api.download(file))
    }
}

/// Runs a client call, turning its error or panic into one line naming `what`.
fn guarded<T, E: std::fmt::Display>(
    id: &str,
    what: &str,
    call: impl FnOnce() -> Result<T, E>,
) -> Result<T, ModelError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(hub_error(id, format!("{what}: {e}"))),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the hub client panicked".to_string());
            Err(hub_error(id, format!("{what}: {message}")))
        }
    }
}

fn copy(staging: &Staging, rel: &str, from: &Path) -> Result<(String, u64), ModelError> {
    let mut file = std::fs::File::open(from).map_err(|e| staging.io(from, e))?;
    staging.write_file(rel, &mut file, &|e| staging.io(from, e))
}

fn hub_error(id: &str, message: String) -> ModelError {
    ModelError::Hub {
        id: id.to_string(),
        message: one_line(&message),
    }
}
