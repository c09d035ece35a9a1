//! libFuzzer entry for [`fuzz::alpha`]; `scripts/fuzz.sh` builds and runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::alpha(data));
