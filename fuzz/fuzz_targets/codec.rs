//! Fuzz target: the codec. Whatever the bytes, decoding never panics, and if they decode,
//! encoding the message gives back exactly the same bytes (one encoding per message).

#![no_main]

use libfuzzer_sys::fuzz_target;
use udpft::proto::wire::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let mut buf = vec![0u8; message.encoded_len()];
        let len = message.encode(&mut buf);
        assert_eq!(&buf[..len], data, "re-encoding changed the datagram");
    }
});
