//! Feeds arbitrary bytes to the bitstream reader: it must return, never panic or hang.
//! Run: `cd codec && RUSTC_BOOTSTRAP=1 cargo fuzz run bitstream -- -max_total_time=60`.
#![no_main]

use codec::bitstream::{self, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stream) = bitstream::read(data) {
        // A current-version stream that parses must serialize back to the same bytes.
        if let Payload::Single(payload) = stream.payload {
            let again = bitstream::write(&stream.header, stream.extras, payload)
                .expect("parsed streams re-serialize");
            assert_eq!(again, data);
        }
    }
});
