//! The loader against real libraries: `plugins/fixture` built by cargo, as the working plugin and
//! as broken variants (cargo features, each in its own target directory so builds never
//! overwrite each other).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::json;

use super::*;

const FIXTURE: &str = "fixture_plugin";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

/// The workspace's target directory: `CARGO_TARGET_DIR` or `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    }
}

/// The folder holding `libembedlab_fixture_plugin.so` built with `feature` (`None`: the working
/// plugin, built in the workspace's own target directory). Built once per test process.
fn fixture(feature: Option<&'static str>) -> PathBuf {
    static BUILT: Mutex<BTreeMap<Option<&str>, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = built.get(&feature) {
        return dir.clone();
    }
    let target = match feature {
        None => target_dir(),
        Some(feature) => target_dir().join("plugin-fixtures").join(feature),
    };
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(workspace()).args([
        "build",
        "--quiet",
        "-p",
        "embedlab-fixture-plugin",
        "--target-dir",
    ]);
    cargo.arg(&target);
    if let Some(feature) = feature {
        cargo.args(["--features", feature]);
    }
    let output = cargo.output().expect("running cargo");
    assert!(
        output.status.success(),
        "building the fixture plugin ({feature:?}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = target.join("debug");
    assert!(
        dir.join(file_name(FIXTURE)).is_file(),
        "no {} in {}",
        file_name(FIXTURE),
        dir.display()
    );
    built.insert(feature, dir.clone());
    dir
}

fn fixture_plugin() -> Plugin {
    find(FIXTURE, &SearchPath::only(&[fixture(None)])).expect("the fixture plugin loads")
}

fn encoder(model: &str) -> EncoderHandle {
    fixture_plugin()
        .create(&json!({ "model": model }))
        .expect("the fixture encoder is created")
}

/// The error loading the fixture built with `feature`.
fn variant_error(feature: &'static str) -> PluginError {
    find(FIXTURE, &SearchPath::only(&[fixture(Some(feature))])).expect_err("the variant is refused")
}

fn so(name: &str) -> String {
    file_name(name)
}

#[test]
fn fixture_plugin_reports_name_version_abi_path_and_models() {
    let dir = fixture(None);
    let plugin = fixture_plugin();
    assert_eq!(plugin.name(), FIXTURE);
    assert_eq!(plugin.version(), "0.1.0");
    assert_eq!(plugin.abi(), ABI_VERSION);
    assert_eq!(plugin.path(), dir.join(so(FIXTURE)));
    let ids: Vec<String> = plugin.models().into_iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        [
            "ok",
            "text-only",
            "fail-create",
            "fail-encode",
            "panic",
            "nan",
            "dim-zero",
            "wrong-count"
        ]
    );
    let debug = format!("{plugin:?}");
    assert!(
        debug.contains("fixture_plugin") && debug.contains("abi"),
        "{debug}"
    );
}

#[test]
fn fixture_plugin_describes_and_encodes_texts() {
    let mut encoder = encoder("ok");
    let description = encoder.describe().clone();
    assert_eq!(description.modalities, [Modality::Text, Modality::Image]);
    assert_eq!((description.dim, description.parameters), (4, 0));
    assert_eq!(description.weights_digest, "sha256:fixture");
    assert_eq!(encoder.plugin_name(), FIXTURE);

    let vectors = encoder.encode_texts(&["hello world", "héllo", ""]).unwrap();
    // chars, ASCII vowels, words, 1
    assert_eq!(
        vectors,
        [11.0, 3.0, 2.0, 1.0, 5.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(encoder.encode_texts(&[]).unwrap(), Vec::<f32>::new());
}

#[test]
fn fixture_plugin_encodes_images() {
    let mut encoder = encoder("ok");
    let rgb = [10, 20, 30, 30, 40, 50];
    let images = [
        Image {
            width: 2,
            height: 1,
            rgb: &rgb,
        },
        Image {
            width: 0,
            height: 0,
            rgb: &[],
        },
    ];
    // width, height, mean red, mean green
    assert_eq!(
        encoder.encode_images(&images).unwrap(),
        [2.0, 1.0, 20.0, 30.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn plugin_options_reach_the_encoder() {
    let plugin = fixture_plugin();
    let mut encoder = plugin
        .create(&json!({ "model": "ok", "model_dir": "/nowhere", "options": { "scale": 2 } }))
        .unwrap();
    assert_eq!(encoder.encode_texts(&["ab"]).unwrap(), [4.0, 2.0, 2.0, 2.0]);
    let err = plugin
        .create(&json!({ "model": "ok", "options": { "scale": "big" } }))
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("create failed (bad config): option scale must be a number"),
        "{err}"
    );
}

#[test]
fn plugin_text_only_encoder_refuses_images_and_bad_images_never_reach_the_plugin() {
    let mut text_only = encoder("text-only");
    assert_eq!(text_only.describe().modalities, [Modality::Text]);
    let image = Image {
        width: 1,
        height: 1,
        rgb: &[1, 2, 3],
    };
    let err = text_only.encode_images(&[image]).unwrap_err();
    assert!(
        matches!(err, PluginError::Unsupported { what: "images", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with(": this encoder does not encode images"),
        "{err}"
    );

    let mut encoder = encoder("ok");
    let short = Image {
        width: 2,
        height: 2,
        rgb: &[0; 11],
    };
    let err = encoder.encode_images(&[image, short]).unwrap_err();
    assert!(
        err.to_string()
            .ends_with(": image 1 is 2×2 but has 11 bytes of RGB8"),
        "{err}"
    );
}

#[test]
fn plugin_create_error_names_plugin_path_status_and_message() {
    let plugin = fixture_plugin();
    let err = plugin
        .create(&json!({ "model": "fail-create" }))
        .unwrap_err();
    let path = plugin.path().display();
    assert_eq!(
        err.to_string(),
        format!(
            "plugin fixture_plugin at {path}: create failed (model unavailable): fixture model fail-create never loads"
        )
    );
    let err = plugin.create(&json!({ "model": "nope" })).unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::Failed {
                status: Status::BAD_CONFIG,
                during: "create",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown model \"nope\""), "{err}");
    let err = plugin.create(&json!(["not", "an", "object"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid config: expected a JSON object"),
        "{err}"
    );
}

#[test]
fn plugin_encode_error_names_plugin_path_status_and_message() {
    let mut encoder = encoder("fail-encode");
    let err = encoder.encode_texts(&["a"]).unwrap_err();
    let path = fixture(None).join(so(FIXTURE));
    assert_eq!(
        err.to_string(),
        format!(
            "plugin fixture_plugin at {}: encode texts failed (bad input): fixture model fail-encode refuses every \
             batch of texts",
            path.display()
        )
    );
    let err = encoder
        .encode_images(&[Image {
            width: 1,
            height: 1,
            rgb: &[0, 0, 0],
        }])
        .unwrap_err();
    assert!(
        err.to_string().contains("encode images failed (bad input)"),
        "{err}"
    );
}

#[test]
fn plugin_panic_becomes_an_error_and_the_process_survives() {
    let mut encoder = encoder("panic");
    let err = encoder.encode_texts(&["a", "b"]).unwrap_err();
    assert!(
        matches!(
            &err,
            PluginError::Panicked {
                during: "encode texts",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(
            "panicked during encode texts: fixture model panic panics on every batch of texts \
             (at plugins/fixture/src/lib.rs:"
        ),
        "{err}"
    );
    // The encoder is poisoned; the plugin and its other encoders work on.
    let err = encoder.encode_texts(&["a"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("an earlier call on this encoder panicked"),
        "{err}"
    );
    drop(encoder);
    let mut fresh = self::encoder("ok");
    assert_eq!(fresh.encode_texts(&["ab"]).unwrap(), [2.0, 1.0, 1.0, 1.0]);
}

#[test]
fn plugin_encoder_outlives_its_plugin_value_and_moves_between_threads() {
    let plugin = fixture_plugin();
    let mut encoder = plugin.create(&json!({ "model": "ok" })).unwrap();
    drop(plugin);
    let vectors = std::thread::spawn(move || encoder.encode_texts(&["a e"]).unwrap())
        .join()
        .unwrap();
    assert_eq!(vectors, [3.0, 2.0, 2.0, 1.0]);
}

#[test]
fn plugin_of_another_abi_major_is_refused_with_a_clear_message() {
    let err = variant_error("abi-v2");
    let path = fixture(Some("abi-v2")).join(so(FIXTURE));
    assert_eq!(
        err.to_string(),
        format!(
            "plugin fixture_plugin at {} speaks ABI 2.0; this embedlab speaks 1.1 — rebuild the plugin against \
             embedlab-plugin (ABI 1.x)",
            path.display()
        )
    );
}

#[test]
fn plugin_of_a_newer_abi_minor_is_refused() {
    let err = variant_error("newer-minor");
    assert!(
        matches!(
            err,
            PluginError::AbiMismatch {
                plugin: AbiVersion { major: 1, minor: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("speaks ABI 1.2; this embedlab speaks 1.1 — upgrade embedlab"),
        "{err}"
    );
}

#[test]
fn plugin_with_a_short_table_is_refused() {
    let err = variant_error("short-table");
    assert!(
        matches!(err, PluginError::TableTooSmall { size: 16, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("its function table is 16 bytes, but ABI 1.1 needs at least 88"),
        "{err}"
    );
}

#[test]
fn plugin_library_without_the_symbol_is_not_a_plugin() {
    let err = variant_error("no-symbol");
    let path = fixture(Some("no-symbol")).join(so(FIXTURE));
    let text = err.to_string();
    let prefix = format!(
        "not a plugin: {} lacks the embedlab_plugin_v1 symbol: ",
        path.display()
    );
    assert!(text.starts_with(&prefix), "{text}");
    assert!(
        text.contains("undefined symbol") || text.contains("symbol not found"),
        "the system's reason: {text}"
    );
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(
            text.ends_with(": dlsym failed: undefined symbol: embedlab_plugin_v1"),
            "{text}"
        );
    }
}

#[test]
fn plugin_file_that_is_no_library_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(so("junk"));
    std::fs::write(&path, "this is not a shared library\n").unwrap();
    let err = find("junk", &SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "not a plugin: {} failed to load: ",
            path.display()
        )),
        "{text}"
    );
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(
            text.ends_with(": dlopen failed: file too short"),
            "the system's reason: {text}"
        );
    }
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn no_such_plugin_lists_the_folders_searched() {
    let dirs = [PathBuf::from("/no/such/a"), PathBuf::from("/no/such/b")];
    let err = find("absent", &SearchPath::only(&dirs)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no plugin named absent: looked for {} in /no/such/a, /no/such/b",
            so("absent")
        )
    );
    let err = find("absent", &SearchPath::only(&[])).unwrap_err();
    assert!(err.to_string().contains("in no folders"), "{err}");
}

#[test]
fn plugin_names_that_are_not_file_names_are_refused() {
    for name in ["", "../evil", "a/b", "a b", "é"] {
        let err = find(name, &SearchPath::only(&[fixture(None)])).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
}

#[test]
fn plugin_search_stops_at_the_first_file_found() {
    // A broken plugin earlier in the path is reported, not skipped for a working one later.
    let search = SearchPath::only(&[fixture(Some("abi-v2")), fixture(None)]);
    assert!(matches!(
        find(FIXTURE, &search),
        Err(PluginError::AbiMismatch { .. })
    ));
    let search = SearchPath::only(&[PathBuf::from("/no/such"), fixture(None)]);
    assert_eq!(
        find(FIXTURE, &search).unwrap().path(),
        fixture(None).join(so(FIXTURE))
    );
}

#[test]
fn plugin_whose_file_name_disagrees_with_its_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture(None).join(so(FIXTURE)),
        dir.path().join(so("renamed")),
    )
    .unwrap();
    let err = find("renamed", &SearchPath::only(&[dir.path().to_path_buf()])).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("calls itself \"fixture_plugin\", but its file name says \"renamed\""),
        "{err}"
    );
}

#[test]
fn plugin_list_loads_every_plugin_library_and_reports_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture(None).join(so(FIXTURE)),
        dir.path().join(so(FIXTURE)),
    )
    .unwrap();
    std::fs::copy(
        fixture(Some("no-symbol")).join(so(FIXTURE)),
        dir.path().join(so("broken")),
    )
    .unwrap();
    std::fs::write(dir.path().join(so("junk")), "not a library").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    std::fs::write(
        dir.path().join(format!(
            "{}other{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )),
        "",
    )
    .unwrap();
    std::fs::copy(
        fixture(Some("abi-v2")).join(so(FIXTURE)),
        other.path().join(so(FIXTURE)),
    )
    .unwrap();
    let missing = dir.path().join("missing");
    let search = SearchPath::only(&[
        dir.path().to_path_buf(),
        missing,
        other.path().to_path_buf(),
    ]);

    let found = list(&search);
    let summary: Vec<String> = found
        .iter()
        .map(|entry| match entry {
            Ok(plugin) => format!("ok {}", plugin.name()),
            Err(e) => {
                let file = e
                    .path()
                    .and_then(Path::file_name)
                    .and_then(OsStr::to_str)
                    .unwrap_or("?");
                let kind = format!("{e:?}");
                format!("{file} {}", kind.split_whitespace().next().unwrap())
            }
        })
        .collect();
    assert_eq!(
        summary,
        [
            format!("{} MissingSymbol", so("broken")),
            format!("ok {FIXTURE}"),
            format!("{} NotLoadable", so("junk")),
            format!("{} AbiMismatch", so(FIXTURE)),
        ]
    );
    // Each plugin's models are there for `plugins list`.
    assert_eq!(found[1].as_ref().unwrap().models().len(), 8);
}

#[test]
fn plugin_search_path_order_and_duplicates() {
    let extra = [
        PathBuf::from("/cli/a"),
        PathBuf::from("/cli/b"),
        PathBuf::from("/cli/a"),
    ];
    let env = std::env::join_paths(["/env/x", "", "/cli/b", "/env/y"]).unwrap();
    let search = SearchPath::compose(
        &extra,
        Some(&env),
        Some(Path::new("/opt/embedlab/bin/embedlab")),
    );
    let dirs: Vec<&str> = search.dirs().iter().map(|d| d.to_str().unwrap()).collect();
    assert_eq!(
        dirs,
        [
            "/cli/a",
            "/cli/b",
            "/env/x",
            "/env/y",
            "/opt/embedlab/bin",
            "/opt/embedlab/bin/plugins"
        ]
    );
    assert_eq!(
        SearchPath::compose(&[], None, None).dirs(),
        &[] as &[PathBuf]
    );
    // `new` ends with the running binary's folder.
    let exe_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let dirs = SearchPath::new(&[PathBuf::from("/cli")]).dirs().to_vec();
    assert_eq!(dirs.first(), Some(&PathBuf::from("/cli")));
    assert_eq!(
        &dirs[dirs.len() - 2..],
        [exe_dir.clone(), exe_dir.join("plugins")]
    );
}

#[test]
fn plugin_file_names_follow_the_platform() {
    assert_eq!(
        file_name("candle"),
        format!(
            "{}embedlab_candle{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )
    );
    assert_eq!(
        name_of_file(&file_name("fixture_plugin")),
        Some("fixture_plugin")
    );
    assert_eq!(name_of_file(&file_name("")), None);
    assert_eq!(name_of_file("embedlab.rlib"), None);
    if cfg!(target_os = "linux") {
        assert_eq!(file_name("candle"), "libembedlab_candle.so");
    }
}

#[test]
fn plugin_output_size_message() {
    let err = PluginError::OutputSize {
        name: "x".into(),
        path: "/p/libembedlab_x.so".into(),
        n: 3,
        dim: 4,
        written: 8,
    };
    assert_eq!(
        err.to_string(),
        "plugin x at /p/libembedlab_x.so wrote 8 floats for 3 inputs × dim 4 (expected 12)"
    );
}

#[test]
fn plugin_handles_are_send() {
    fn send<T: Send>() {}
    send::<EncoderHandle>();
    send::<Plugin>();
    fn sync<T: Sync>() {}
    sync::<Plugin>();
}

#[test]
fn fixture_plugin_generates_one_caption_per_image() {
    let mut encoder = encoder("ok");
    let red = Image {
        width: 1,
        height: 2,
        rgb: &[200, 0, 0, 100, 50, 0],
    };
    let blue = Image {
        width: 1,
        height: 1,
        rgb: &[0, 10, 90],
    };
    let captions = encoder.generate_captions(&[red, blue]).unwrap();
    assert_eq!(
        captions,
        ["a 1×2 image, mostly red", "a 1×1 image, mostly blue"]
    );
    assert!(encoder.generate_captions(&[]).unwrap().is_empty());

    let err = self::encoder("text-only")
        .generate_captions(&[blue])
        .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "generate captions failed (unsupported): fixture model text-only does not caption"
        ),
        "{err}"
    );
}

#[test]
fn wrong_outputs_are_refused_naming_plugin_and_model() {
    let image = Image {
        width: 1,
        height: 1,
        rgb: &[1, 2, 3],
    };
    let err = encoder("nan").encode_texts(&["a", "b"]).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "libembedlab_fixture_plugin.so: model \"nan\" returned NaN or infinity \
             (encode texts, input 0 of a batch of 2)"
        ),
        "{err}"
    );
    let err = encoder("nan").encode_images(&[image]).unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::NonFinite {
                during: "encode images",
                ..
            }
        ),
        "{err:?}"
    );

    let err = fixture_plugin()
        .create(&json!({ "model": "dim-zero" }))
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("create failed (internal error): the encoder describes itself with dim 0"),
        "{err}"
    );

    let err = encoder("wrong-count")
        .generate_captions(&[image])
        .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "generate captions failed (internal error): the model generated 2 captions for 1 images"
        ),
        "{err}"
    );
}

#[test]
fn plugin_of_abi_1_0_loads_but_cannot_caption() {
    let plugin = find(FIXTURE, &SearchPath::only(&[fixture(Some("abi-1-0"))]))
        .expect("an ABI 1.0 plugin loads");
    assert_eq!(plugin.abi(), AbiVersion { major: 1, minor: 0 });
    let mut encoder = plugin.create(&json!({ "model": "ok" })).unwrap();
    assert_eq!(encoder.encode_texts(&["ab"]).unwrap(), [2.0, 1.0, 1.0, 1.0]);
    let image = Image {
        width: 1,
        height: 1,
        rgb: &[1, 2, 3],
    };
    let err = encoder.generate_captions(&[image]).unwrap_err();
    assert!(matches!(err, PluginError::NoCaptioning { .. }), "{err:?}");
    assert!(
        err.to_string().contains(
            "cannot generate captions (it speaks ABI 1.0 and has no `generate_captions` entry"
        ),
        "{err}"
    );
}
