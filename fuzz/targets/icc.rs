//! libFuzzer entry for [`fuzz::icc`]; `scripts/fuzz.sh` builds and runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::icc(data));
