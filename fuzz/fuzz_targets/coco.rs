//! COCO annotation files through the loader: parse, then merge across files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // JSON text holds no raw NUL byte, so NULs split the input into several files, alternately
    // an instances file and a captions file (one input without NUL: a lone instances file), to
    // reach the merge's checks across files.
    let (mut captions, mut instances) = (Vec::new(), Vec::new());
    for (i, bytes) in data.split(|&b| b == 0).enumerate() {
        if i % 2 == 0 {
            instances.push((Path::new("instances.json"), bytes));
        } else {
            captions.push((Path::new("captions.json"), bytes));
        }
    }
    let images = Some(Path::new("/fuzz/images"));
    if let Err(err) = embedlab::dataset::parse_coco(&captions, &instances, images) {
        let _ = err.to_string();
    }
});
