//! Feeds arbitrary bytes to the frame decoder the way the server reads a socket:
//! frames one after another from a buffer, each body decoded as a request and as a
//! response. Nothing may panic, loop, or allocate beyond the frame limit; whatever
//! decodes must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextdb_proto::frame::{HEADER_BYTES, decode_header};
use nextdb_proto::{Request, Response};

const MAX_FRAME: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    while pos < data.len() {
        let h = match decode_header(&data[pos..], MAX_FRAME) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => break,
        };
        assert!(h.total >= HEADER_BYTES && h.total <= MAX_FRAME + 4);
        let body = &data[pos + HEADER_BYTES..pos + h.total];
        if let Ok(req) = Request::decode(h.opcode, h.flags, body) {
            let mut out = Vec::new();
            req.encode(h.request_id, &mut out);
            let back = decode_header(&out, usize::MAX).unwrap().unwrap();
            let again = Request::decode(back.opcode, back.flags, &out[HEADER_BYTES..]).unwrap();
            assert_eq!(again, req);
        }
        if let Ok(resp) = Response::decode(h.opcode, h.flags, body) {
            let mut out = Vec::new();
            resp.encode(h.opcode, h.request_id, &mut out);
            let back = decode_header(&out, usize::MAX).unwrap().unwrap();
            let again = Response::decode(back.opcode, back.flags, &out[HEADER_BYTES..]).unwrap();
            assert_eq!(again, resp);
        }
        pos += h.total;
    }
});
