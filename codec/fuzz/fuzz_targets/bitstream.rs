//! Feeds arbitrary bytes to the bitstream reader: it must return, never panic or hang.
//! Run: `cd codec && RUSTC_BOOTSTRAP=1 cargo fuzz run bitstream -- -max_total_time=60`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stream) = codec::bitstream::read(data) {
        // A stream that parses must serialize back to the same bytes.
        let again = codec::bitstream::write(&stream.header, &stream.sections).expect("parsed streams re-serialize");
        assert_eq!(again, data);
    }
});
