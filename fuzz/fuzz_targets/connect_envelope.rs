//! The Connect envelope decoder (`sandbank_protocol::connect`), as envd reads request bodies and
//! the client reads streams: never panics, decodes the same envelopes however the bytes are
//! split, and what it decodes re-encodes to exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbank_protocol::connect::{decode_single_envelope, encode_envelope, Envelope, EnvelopeDecoder};

/// Feeds `data` in chunks of `chunk` bytes; returns the envelopes, whether it stopped on an
/// error, and the `finish()` result.
fn decode_all(data: &[u8], chunk: usize) -> (Vec<Envelope>, bool, bool) {
    let mut dec = EnvelopeDecoder::default();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        dec.push(piece);
        loop {
            match dec.next() {
                Ok(Some(env)) => out.push(env),
                Ok(None) => break,
                Err(_) => return (out, true, false),
            }
        }
    }
    let finished = dec.finish().is_ok();
    (out, false, finished)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };

    let whole = decode_all(data, data.len());
    let split = decode_all(data, chunk as usize % 7 + 1);
    assert_eq!(whole, split, "decoding depends on how the bytes were split");

    // The decoded envelopes are a prefix of the input, byte for byte.
    let (envs, errored, finished) = whole;
    let reencoded: Vec<u8> = envs.iter().flat_map(|e| encode_envelope(e.flags, &e.payload).to_vec()).collect();
    assert_eq!(&data[..reencoded.len()], &reencoded[..]);
    if finished && !errored {
        assert_eq!(reencoded.len(), data.len(), "finish() accepted leftover bytes");
    }

    // A single-envelope body: Ok exactly when the input is one whole envelope.
    if let Ok(payload) = decode_single_envelope(data) {
        assert_eq!(&encode_envelope(data[0], &payload)[..], data);
    }

    // Anything encoded decodes back (compressed envelopes are refused by design).
    let env = encode_envelope(chunk & !sandbank_protocol::connect::FLAG_COMPRESSED, data);
    assert_eq!(&decode_single_envelope(&env).expect("an encoded envelope decodes")[..], data);
});
