//! `.npy` bytes through the reader; what it accepts must survive the writer unchanged.
#![no_main]

use std::path::Path;

use embedlab::embed::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("v.npy");
    match npy::decode_f32(data, path) {
        Ok(v) => {
            assert_eq!(v.data.len(), v.n * v.dim);
            let again = npy::decode_f32(&npy::encode_f32(&v), path).expect("our own file reads");
            assert_eq!((again.n, again.dim), (v.n, v.dim));
            // Bits, not values: NaN payloads must survive too.
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&again.data), bits(&v.data));
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
