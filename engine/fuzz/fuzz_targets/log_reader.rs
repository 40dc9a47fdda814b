//! Fuzz target: arbitrary bytes as the body of a log segment. The record parser that
//! recovery uses must never panic, loop forever or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextdb_engine::log::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::scan_all(data);
    // Every position, as the corruption scan probes page boundaries.
    for start in (0..data.len()).step_by(512) {
        let _ = record::parse(&data[start..]);
    }
});
