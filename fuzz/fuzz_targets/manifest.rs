//! A manifest's text through everything `embedlab run` does before planning: parse, layer,
//! sweep expansion, validation and path resolution. Reads no file (paths are only joined to the
//! manifest's folder, which need not exist).
#![no_main]

use std::path::Path;

use embedlab::manifest::{self, ManifestError, Overrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `manifest::load` refuses a file that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match manifest::parse(text, Path::new("/fuzz/m.toml"), &Overrides::default()) {
        Ok(_) | Err(ManifestError::At { .. }) => {}
        // With no environment or `--set` layer, an error blamed on one misleads the user.
        Err(err) => panic!("an error not located in the file: {err}"),
    }
});
