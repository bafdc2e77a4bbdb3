//! A JSONL dataset file through the loader.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match embedlab::dataset::parse_jsonl(data, Path::new("/fuzz/d.jsonl"), None) {
        Ok(samples) => {
            let mut ids = HashSet::new();
            assert!(samples.iter().all(|s| ids.insert(&s.id)), "duplicate ids");
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
