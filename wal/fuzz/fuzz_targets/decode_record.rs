//! Fuzzes the record decoder: any bytes may be on disk after a crash or bit rot, and decoding
//! them must never panic, never read past the buffer, and accept only frames that the encoder
//! would produce byte for byte; the batched checksum check (`checked_prefix`) must agree.
//!
//! Run: `cd wal/fuzz && cargo +nightly fuzz run decode_record`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use logbook_wal::codec::{self, Decoded, SegmentHeader};

fuzz_target!(|data: &[u8]| {
    // A segment header either decodes and re-encodes to the same bytes, or is refused.
    if let Ok(h) = SegmentHeader::decode(data) {
        assert_eq!(&h.encode()[..36], &data[..36]);
    }
    // Walk the buffer frame by frame as recovery does: frames inside the checksum-verified
    // prefix are decoded without checking their checksum again, and must come out the same.
    let checked_to = codec::checked_prefix(data);
    let mut pos = 0;
    while pos < data.len() {
        let decoded = codec::decode(&data[pos..]);
        if pos < checked_to {
            assert_eq!(codec::decode_prechecked(&data[pos..]), decoded);
            assert!(matches!(decoded, Decoded::Record { .. } | Decoded::Invalid(_)));
        }
        match decoded {
            Decoded::Record { record, frame_len } => {
                assert!(frame_len >= codec::FRAME_HEADER_LEN && frame_len <= data.len() - pos);
                let mut again = Vec::new();
                let n = codec::encode(&record, &mut again);
                assert_eq!(n, frame_len);
                assert_eq!(again, &data[pos..pos + frame_len], "accepted a non-canonical frame");
                pos += frame_len;
            }
            Decoded::End | Decoded::Incomplete | Decoded::Invalid(_) => break,
        }
    }
});
