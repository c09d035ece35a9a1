//! libFuzzer entry for [`fuzz::container`]; `scripts/fuzz.sh` builds and runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::container(data));
