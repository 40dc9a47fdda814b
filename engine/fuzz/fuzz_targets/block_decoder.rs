//! Feeds arbitrary bytes to the SSTable block decoder: construction and iteration in
//! both directions must never panic, and must terminate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextdb_engine::sst::Block;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a seek target length, so seeks are exercised too.
    let (target, body) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize).min(rest.len()).min(32)),
        None => (&[][..], data),
    };
    let Ok(block) = Block::new(body.to_vec()) else {
        return;
    };
    // Every entry takes at least three bytes, so a correct iterator stops in time.
    let limit = block.size() / 3 + 1;
    let mut it = block.iter();
    it.seek_to_first();
    let mut n = 0;
    while it.valid() {
        let _ = (it.key().len(), it.value().len());
        it.next();
        n += 1;
        assert!(n <= limit, "forward iteration did not terminate");
    }
    let _ = it.status();
    let mut it = block.iter();
    it.seek_to_last();
    let mut n = 0;
    while it.valid() {
        it.prev();
        n += 1;
        assert!(n <= limit, "backward iteration did not terminate");
    }
    let _ = it.status();
    let mut it = block.iter();
    it.seek(target);
    if it.valid() {
        it.prev();
        it.next();
    }
    let _ = it.status();
});
