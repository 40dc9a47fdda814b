//! Fuzz target: arbitrary bytes as the body of a log segment. The flush-header and
//! record parsers that recovery uses must never panic, loop forever or read out of
//! bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextdb_engine::log::record;

fuzz_target!(|data: &[u8]| {
    let _ = record::scan_all(data, 0, 0);
    // Every page boundary, as the damage scan probes them for flush headers.
    for start in (0..data.len()).step_by(512) {
        let _ = record::parse(&data[start..]);
        let _ = record::decode_flush_header(&data[start..], 0, start as u64);
        let _ = record::check_flush_records(&data[start..], 1);
    }
});
