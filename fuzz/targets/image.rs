//! libFuzzer entry for [`fuzz::image`]; `scripts/fuzz.sh` builds and runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::image(data));
