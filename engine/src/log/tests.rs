use super::*;
use crate::fs::glommio_fs::run_local;
use crate::fs::sim::SimFs;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

fn cfg() -> EngineConfig {
    EngineConfig {
        log_segment_bytes: 64 << 10,
        log_buffer_bytes: 8 << 10,
        ..EngineConfig::small_for_tests()
    }
}

async fn collect(fs: &SimFs, dir: &Path) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let log = Log::open(fs.clone(), dir, &cfg(), |r| {
        out.push((r.group, r.index, r.payload.to_vec()));
        Ok(())
    })
    .await?;
    drop(log);
    Ok(out)
}

/// A record that verifies but that the replayer refuses (a payload it cannot decode)
/// is reported at its own segment and offset, not where the replayer thought.
#[test]
fn a_refused_record_is_reported_where_it_lies() {
    run_local(async {
        let fs = SimFs::new(3);
        let dir = Path::new("/refused");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let mut last = 0;
        for i in 1..=20u64 {
            last = log.append(0, i, 1, &[i as u8; 100]).unwrap();
        }
        log.sync(last).await.unwrap();
        drop(log);
        let refused = Log::open(fs.clone(), dir, &cfg(), |r| {
            if r.index == 7 {
                return Err(Error::corruption("/elsewhere", 0, "bad payload"));
            }
            Ok(())
        })
        .await;
        match refused {
            Err(Error::Corruption {
                path,
                offset,
                reason,
            }) => {
                assert!(path.starts_with(dir), "reported at {}", path.display());
                assert!(offset > 0, "reported at offset 0");
                assert_eq!(reason, "bad payload");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("the refused record was accepted"),
        }
    })
    .unwrap();
}

#[test]
fn append_sync_reopen_roundtrip() {
    run_local(async {
        let fs = SimFs::new(1);
        let dir = Path::new("/log");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let mut last = 0;
        for i in 1..=500u64 {
            // Group i % 3 gets dense indexes 1, 2, 3, …
            last = log
                .append(i % 3, i.div_ceil(3), 1, &vec![i as u8; (i % 300) as usize])
                .unwrap();
        }
        log.sync(last).await.unwrap();
        assert_eq!(log.durable_lsn(), last);
        drop(log);
        fs.crash();
        fs.restart();
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.len(), 500);
        for (n, (g, i, p)) in recs.iter().enumerate() {
            let i2 = n as u64 + 1;
            assert_eq!((*g, *i), (i2 % 3, i2.div_ceil(3)));
            assert_eq!(p, &vec![i2 as u8; (i2 % 300) as usize]);
        }
    })
    .unwrap();
}

#[test]
fn group_commit_covers_concurrent_syncs_with_one_fsync() {
    run_local(async {
        let fs = SimFs::new(2);
        let log = Rc::new(
            Log::open(fs.clone(), Path::new("/gc"), &cfg(), |_| Ok(()))
                .await
                .unwrap(),
        );
        // A first sync puts a flush in flight; everything appended meanwhile is covered
        // by exactly one more fsync.
        let l0 = log.append(0, 0, 0, b"first").unwrap();
        let first = {
            let log = log.clone();
            glommio::spawn_local(async move { log.sync(l0).await })
        };
        let mut tasks = Vec::new();
        for i in 1..=50u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let lsn = log.append(0, i, 0, b"payload").unwrap();
                log.sync(lsn).await
            }));
        }
        first.await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let syncs = log.stats().syncs;
        assert!(
            syncs <= 2,
            "51 concurrent synced appends took {syncs} fsyncs"
        );
    })
    .unwrap();
}

#[test]
fn unsynced_records_are_lost_synced_ones_kept() {
    run_local(async {
        let fs = SimFs::new(3);
        let dir = Path::new("/l3");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let a = log.append(0, 1, 0, b"synced").unwrap();
        log.sync(a).await.unwrap();
        log.append(0, 2, 0, b"written, never synced").unwrap();
        log.flush().await.unwrap();
        log.append(0, 3, 0, b"only buffered").unwrap();
        drop(log);
        fs.crash();
        fs.restart();
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].2, b"synced");
    })
    .unwrap();
}

#[test]
fn mid_log_corruption_is_an_error_naming_file_and_offset() {
    run_local(async {
        let fs = SimFs::new(4);
        let dir = Path::new("/l4");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        for i in 1..=20u64 {
            let l = log.append(0, i, 0, &[7u8; 1000]).unwrap();
            log.sync(l).await.unwrap();
        }
        drop(log);
        let seg = dir.join(segment_name(1));
        // A flip inside the 3rd flush (each flush is its own page).
        fs.flip_bit(&seg, segment::FIRST_RECORD_OFFSET + 2 * 4096 + 100, 3)
            .unwrap();
        match collect(&fs, dir).await {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, seg);
                assert_eq!(offset, segment::FIRST_RECORD_OFFSET + 2 * 4096);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn damaged_last_record_is_a_torn_tail() {
    run_local(async {
        let fs = SimFs::new(5);
        let dir = Path::new("/l5");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        for i in 1..=10u64 {
            let l = log.append(0, i, 0, &[1u8; 500]).unwrap();
            log.sync(l).await.unwrap();
        }
        drop(log);
        let seg = dir.join(segment_name(1));
        let len = fs.file_len(&seg).unwrap();
        fs.flip_bit(&seg, len - 4096 + 40, 0).unwrap();
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.len(), 9);
        // The cut tail stays cut: appending and reopening works.
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let l = log.append(0, 11, 0, b"after").unwrap();
        log.sync(l).await.unwrap();
        drop(log);
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.len(), 10);
        assert_eq!(recs[9].2, b"after");
    })
    .unwrap();
}

#[test]
fn rotation_and_per_group_gc() {
    run_local(async {
        let fs = SimFs::new(6);
        let dir = Path::new("/l6");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        // Groups 1 and 0 alternate, each with dense indexes 1, 2, 3, …
        for i in 1..=400u64 {
            let l = log.append(i % 2, i.div_ceil(2), 0, &[9u8; 700]).unwrap();
            if i % 10 == 0 {
                log.sync(l).await.unwrap();
            }
        }
        let l = log.last_lsn();
        log.sync(l).await.unwrap();
        let segs = log.stats().segments;
        assert!(segs >= 4, "expected rotation, got {segs} segments");
        // Only group 0 truncated: nothing can go (group 1 still needs every segment).
        log.truncate_group(0, 200);
        assert_eq!(log.gc().await.unwrap(), 0);
        log.truncate_group(1, 100);
        let removed = log.gc().await.unwrap();
        assert!(removed >= 1, "nothing collected");
        drop(log);
        let recs = collect(&fs, dir).await.unwrap();
        assert!(
            recs.iter().all(|r| r.1 > 75),
            "a segment with needed records was removed"
        );
        assert!(recs.iter().any(|r| r.0 == 1 && r.1 == 101));
        let max_g0: u64 = recs.iter().filter(|r| r.0 == 0).map(|r| r.1).max().unwrap();
        let max_g1: u64 = recs.iter().filter(|r| r.0 == 1).map(|r| r.1).max().unwrap();
        assert_eq!((max_g0, max_g1), (200, 200));
    })
    .unwrap();
}

#[test]
fn failed_fsync_poisons_the_log() {
    run_local(async {
        let fs = SimFs::new(7);
        let log = Log::open(fs.clone(), Path::new("/l7"), &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let l = log.append(0, 1, 0, b"x").unwrap();
        fs.fail_op(1, crate::fs::sim::OpKind::Sync);
        assert!(log.sync(l).await.is_err());
        assert!(matches!(log.append(0, 2, 0, b"y"), Err(Error::Poisoned(_))));
        assert!(matches!(log.sync(l).await, Err(Error::Poisoned(_))));
    })
    .unwrap();
}

#[test]
fn cancelled_leader_releases_the_flush() {
    run_local(async {
        let fs = SimFs::new(8);
        let log = Log::open(fs.clone(), Path::new("/l8"), &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let l = log.append(0, 1, 0, b"x").unwrap();
        {
            // Poll the sync once (the leader yields before taking the buffer), then drop.
            let mut fut = std::pin::pin!(log.sync(l));
            let waker =
                futures_lite::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone()))
                    .await;
            let mut cx = std::task::Context::from_waker(&waker);
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        // Another task can lead now, and the record is still written.
        log.sync(l).await.unwrap();
        assert_eq!(log.durable_lsn(), l);
    })
    .unwrap();
}

/// Payload size that makes a record exactly one page, so in the old format (no flush
/// header) every record of a multi-page flush started on a page boundary.
const PAGE_RECORD_PAYLOAD: usize = 4096 - record::HEADER_BYTES;

/// Appends `n` one-page records of group 0 from `first_index` and syncs them as one
/// flush.
async fn synced_flush(log: &Log<SimFs>, first_index: u64, n: u64) {
    let mut l = 0;
    for i in first_index..first_index + n {
        l = log
            .append(0, i, 0, &vec![i as u8; PAGE_RECORD_PAYLOAD])
            .unwrap();
    }
    log.sync(l).await.unwrap();
}

/// Zeroes the 4 KiB page at `offset` of `path`, as a lost write leaves it.
fn zero_page(fs: &SimFs, path: &Path, offset: u64) {
    fs.write_raw(path, offset, &[0u8; 4096]).unwrap();
}

#[test]
fn zeroed_page_inside_a_synced_flush_is_corruption_not_padding() {
    run_local(async {
        let fs = SimFs::new(11);
        let dir = Path::new("/hole");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        synced_flush(&log, 1, 4).await;
        // A later flush states that the first one was fsynced.
        synced_flush(&log, 5, 1).await;
        drop(log);
        let seg = dir.join(segment_name(1));
        zero_page(&fs, &seg, segment::FIRST_RECORD_OFFSET + 2 * 4096);
        match collect(&fs, dir).await {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, seg);
                assert_eq!(offset, segment::FIRST_RECORD_OFFSET);
            }
            other => panic!("expected corruption, replayed {:?}", other.map(|r| r.len())),
        }
    })
    .unwrap();
}

#[test]
fn torn_last_flush_replays_exactly_the_records_before_it() {
    run_local(async {
        let fs = SimFs::new(12);
        let dir = Path::new("/torn");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        synced_flush(&log, 1, 2).await;
        synced_flush(&log, 3, 4).await;
        drop(log);
        let seg = dir.join(segment_name(1));
        // The second flush starts after the first one's 2 pages and padding (3 pages).
        let second = segment::FIRST_RECORD_OFFSET + 3 * 4096;
        zero_page(&fs, &seg, second + 2 * 4096);
        let recs = collect(&fs, dir).await.unwrap();
        let indexes: Vec<u64> = recs.iter().map(|r| r.1).collect();
        assert_eq!(indexes, vec![1, 2]);
        // The cut holds: the next recovery sees the same records and no corruption.
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.len(), 2);
    })
    .unwrap();
}

#[test]
fn torn_unsynced_write_at_a_crash_is_cut() {
    run_local(async {
        let fs = SimFs::new(13);
        fs.set_torn_write_probability(1.0);
        let dir = Path::new("/torn2");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        synced_flush(&log, 1, 3).await;
        for i in 4..10 {
            log.append(0, i, 0, &vec![i as u8; PAGE_RECORD_PAYLOAD])
                .unwrap();
        }
        log.flush().await.unwrap();
        drop(log);
        fs.crash();
        fs.restart();
        let recs = collect(&fs, dir).await.unwrap();
        let indexes: Vec<u64> = recs.iter().map(|r| r.1).collect();
        assert_eq!(indexes, vec![1, 2, 3]);
    })
    .unwrap();
}

#[test]
fn lost_page_of_an_unsynced_flush_before_a_surviving_one_is_a_torn_tail() {
    // Power loss may drop any unsynced page, not only a suffix: flush B lost a page
    // while a later flush C reached the disk. C's header does not claim B durable, so
    // B and C were never acknowledged and recovery ends before B.
    run_local(async {
        let fs = SimFs::new(14);
        let dir = Path::new("/reorder");
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        synced_flush(&log, 1, 1).await;
        for i in 2..5 {
            log.append(0, i, 0, &vec![i as u8; PAGE_RECORD_PAYLOAD])
                .unwrap();
        }
        log.flush().await.unwrap();
        synced_flush(&log, 5, 1).await;
        drop(log);
        let seg = dir.join(segment_name(1));
        // Flush A takes 2 pages; B starts at +2 pages and spans 4.
        zero_page(&fs, &seg, segment::FIRST_RECORD_OFFSET + 3 * 4096);
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1]);
    })
    .unwrap();
}

#[test]
fn index_gap_is_corruption_naming_the_record() {
    run_local(async {
        let fs = SimFs::new(15);
        let dir = Path::new("/gap");
        fs.create_dir_all(dir).await.unwrap();
        let seg = dir.join(segment_name(1));
        let mut w = SegmentWriter::create(&fs, &seg, 1, 0).await.unwrap();
        for i in [1u64, 2, 4] {
            w.append(0, i, 0, b"batch").unwrap();
            w.sync().await.unwrap();
        }
        w.close().await.unwrap();
        fs.sync_dir(dir).await.unwrap();
        match collect(&fs, dir).await {
            Err(Error::Corruption {
                path,
                offset,
                reason,
            }) => {
                assert_eq!(path, seg);
                // The third flush, past its header.
                let header = record::FLUSH_HEADER_BYTES as u64;
                assert_eq!(offset, segment::FIRST_RECORD_OFFSET + 2 * 4096 + header);
                assert!(reason.contains("index 4 follows index 2"), "{reason}");
            }
            other => panic!("expected corruption, replayed {:?}", other.map(|r| r.len())),
        }
    })
    .unwrap();
}

#[test]
fn append_refuses_an_index_gap() {
    run_local(async {
        let fs = SimFs::new(16);
        let log = Log::open(fs.clone(), Path::new("/ag"), &cfg(), |_| Ok(()))
            .await
            .unwrap();
        log.append(3, 7, 0, b"a").unwrap();
        log.append(3, 8, 0, b"b").unwrap();
        assert!(matches!(
            log.append(3, 10, 0, b"c"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            log.append(3, 8, 0, b"c"),
            Err(Error::InvalidArgument(_))
        ));
        log.append(3, 9, 0, b"c").unwrap();
    })
    .unwrap();
}

/// Appends `n` records of group 0 from `first` and syncs them; returns the last index.
async fn append_synced(log: &Log<SimFs>, first: u64, n: u64, len: usize) -> u64 {
    let mut lsn = 0;
    for i in first..first + n {
        lsn = log.append(0, i, 1, &vec![i as u8; len]).unwrap();
    }
    log.sync(lsn).await.unwrap();
    first + n - 1
}

fn segment_files(fs: &SimFs, dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs
        .list_files()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let len = fs.file_len(&p).ok()?;
            Some((name, len))
        })
        .collect();
    out.sort();
    out
}

/// A spare is zero-filled off the commit path; the first segment of a run (not
/// preallocated) rotates into it at the next write, later flushes overwrite its zeros,
/// a full segment is cut to its data when sealed, and a crash replays exactly the
/// synced records (the zeros after the last flush read as the end, not as damage).
#[test]
fn spare_segment_is_started_at_rotation_and_replays_exactly_its_records() {
    run_local(async {
        let fs = SimFs::new(21);
        let dir = Path::new("/spare");
        // 128 KiB segments: the spare's headroom (8 KiB) is more than the one page by
        // which the one-page flushes below overshoot the segment size.
        let cfg = EngineConfig {
            log_segment_bytes: 128 << 10,
            ..cfg()
        };
        let log = Log::open(fs.clone(), dir, &cfg, |_| Ok(())).await.unwrap();
        assert!(log.wants_spare());
        assert!(log.prepare_spare(|| false).await.unwrap());
        assert!(!log.wants_spare());
        let last = append_synced(&log, 1, 3, 100).await;
        // The write rotated out of the run's first segment into the spare.
        assert!(log.wants_spare(), "the spare was not taken");
        let spare_len = cfg.log_segment_bytes + cfg.log_segment_bytes / 16;
        let files = segment_files(&fs, dir);
        let active = files.last().unwrap();
        assert_eq!(
            active.1, spare_len,
            "the active segment is the spare: {files:?}"
        );
        // Fill it past the segment size: it is sealed (cut to its data) on rotation.
        assert!(log.prepare_spare(|| false).await.unwrap());
        let mut last = last;
        let before = log.stats().segments;
        while log.stats().segments == before {
            last = append_synced(&log, last + 1, 4, 700).await;
        }
        let files = segment_files(&fs, dir);
        assert!(files.len() >= 3, "no rotation: {files:?}");
        let sealed = &files[files.len() - 2];
        assert!(
            sealed.1 >= cfg.log_segment_bytes && sealed.1 < spare_len,
            "sealed segment not cut to its data: {files:?}"
        );
        let last = append_synced(&log, last + 1, 5, 50).await;
        log.append(0, last + 1, 1, b"never synced").unwrap();
        drop(log);
        fs.crash();
        fs.restart();
        let recs = collect(&fs, dir).await.unwrap();
        let idx: Vec<u64> = recs.iter().map(|r| r.1).collect();
        assert_eq!(idx, (1..=last).collect::<Vec<_>>());
        assert!(
            !segment_files(&fs, dir).iter().any(|f| f.0 == SPARE_NAME),
            "the spare outlived a restart"
        );
    })
    .unwrap();
}

/// Overlapping group commits (writes issued while earlier fsyncs run, completing out
/// of order under simulated I/O latency) keep the log's promise: after a crash at any
/// operation, with power loss keeping any subset of unsynced pages, every record whose
/// sync returned is replayed, and each group replays a dense prefix of its records.
#[test]
fn overlapping_group_commits_lose_no_acknowledged_record_at_a_crash() {
    let mut overlapped = 0;
    for seed in 0..40u64 {
        overlapped += run_local(overlapping_commits_case(seed)).unwrap();
    }
    assert!(
        overlapped > 100,
        "group commits hardly overlapped: {overlapped}"
    );
}

/// One seed: 24 writers (one log group each) append and sync until a crash armed at a
/// seeded operation; returns how many batches overlapped.
async fn overlapping_commits_case(seed: u64) -> u64 {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let fs = SimFs::new(seed);
    fs.set_adversarial_power_loss(true);
    fs.set_io_latency(Some(crate::fs::sim::IoLatency {
        max_turns: 6,
        stall_probability: 0.3,
        stall_turns: 40,
    }));
    let dir = Path::new("/overlap");
    let log = Rc::new(
        Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap(),
    );
    let acked: Rc<RefCell<Vec<(u64, u64)>>> = Rc::default();
    fs.crash_after_ops(rng.gen_range(50..1500));
    let mut tasks = Vec::new();
    for g in 0..24u64 {
        let (log, acked) = (log.clone(), acked.clone());
        let len = rng.gen_range(10..900);
        let mut task_rng = rand::rngs::SmallRng::seed_from_u64(rng.r#gen());
        tasks.push(glommio::spawn_local(async move {
            for index in 1.. {
                // Writers arrive at random moments, so appends land while a batch is
                // in flight (a closed loop in lockstep would only ever fill one).
                for _ in 0..task_rng.gen_range(0..12) {
                    futures_lite::future::yield_now().await;
                }
                let Ok(lsn) = log.append(g, index, 1, &vec![g as u8; len]) else {
                    return;
                };
                if log.sync(lsn).await.is_err() {
                    return;
                }
                acked.borrow_mut().push((g, index));
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let overlapped = log.stats().overlapped_batches;
    drop(log);
    fs.restart();
    let recs = collect(&fs, dir)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let mut last: HashMap<u64, u64> = HashMap::new();
    for r in &recs {
        let prev = last.insert(r.0, r.1).unwrap_or(0);
        assert_eq!(r.1, prev + 1, "seed {seed}: group {} not dense", r.0);
    }
    for (g, index) in acked.borrow().iter() {
        let kept = last.get(g).copied().unwrap_or(0);
        assert!(
            kept >= *index,
            "seed {seed}: acknowledged record {g}/{index} lost (kept {kept})"
        );
    }
    overlapped
}

/// Builds a version-2 segment by hand (36-byte flush headers, no commit time): what
/// the previous release wrote.
fn v2_segment(seq: u64, salt: u64, records: &[(u64, u64, &[u8])]) -> Vec<u8> {
    let mut page = Vec::new();
    crate::codec::put_u64(&mut page, segment::SEGMENT_MAGIC);
    crate::codec::put_u32(&mut page, 2);
    crate::codec::put_u64(&mut page, seq);
    crate::codec::put_u64(&mut page, salt);
    crate::codec::put_u32(&mut page, 0);
    let crc = crate::codec::crc32c(&page);
    crate::codec::put_u32(&mut page, crc);
    page.resize(4096, 0);
    let mut body = Vec::new();
    for &(g, i, p) in records {
        record::encode(&mut body, g, i, 0, p);
    }
    let mut head = Vec::new();
    crate::codec::put_u32(&mut head, record::FLUSH_MAGIC);
    crate::codec::put_u32(&mut head, 0);
    crate::codec::put_u64(&mut head, 4096);
    crate::codec::put_u64(&mut head, body.len() as u64);
    crate::codec::put_u64(&mut head, 4096);
    crate::codec::put_u32(&mut head, records.len() as u32);
    assert_eq!(head.len(), record::FLUSH_HEADER_BYTES_V2);
    let crc = crate::codec::crc32c_pair(&salt.to_le_bytes(), &head[8..]);
    crate::codec::write_u32_at(&mut head, 4, crc);
    page.extend_from_slice(&head);
    page.extend_from_slice(&body);
    page.resize(page.len().div_ceil(4096) * 4096, 0);
    page
}

/// A log written by the previous release (segment version 2) still replays, and
/// the log continues after it in version 3 with commit times.
#[test]
fn version_2_segments_replay_and_the_log_continues_in_version_3() {
    run_local(async {
        let fs = SimFs::new(21);
        let dir = Path::new("/v2");
        fs.create_dir_all(dir).await.unwrap();
        let bytes = v2_segment(1, 77, &[(0, 1, b"one"), (0, 2, b"two")]);
        let seg = dir.join(segment_name(1));
        let f = fs.create_rw(&seg).await.unwrap();
        f.write_at(0, &bytes).await.unwrap();
        f.sync().await.unwrap();
        f.close().await.unwrap();
        fs.sync_dir(dir).await.unwrap();
        let before = segment::wall_clock_ms();
        let log = Log::open(fs.clone(), dir, &cfg(), |_| Ok(()))
            .await
            .unwrap();
        let lsn = log.append(0, 3, 0, b"three").unwrap();
        log.sync(lsn).await.unwrap();
        drop(log);
        let recs = collect(&fs, dir).await.unwrap();
        assert_eq!(recs.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 2, 3]);
        let mut old = segment::SegmentReader::open(&fs, &seg, false)
            .await
            .unwrap();
        assert_eq!(old.version(), 2);
        assert_eq!(old.next().await.unwrap().unwrap().commit_ms, 0);
        let new = dir.join(segment_name(2));
        let mut r = segment::SegmentReader::open(&fs, &new, true).await.unwrap();
        assert_eq!(r.version(), segment::SEGMENT_VERSION);
        let rec = r.next().await.unwrap().unwrap();
        assert_eq!(rec.payload, b"three");
        assert!(
            rec.commit_ms >= before && rec.commit_ms <= segment::wall_clock_ms(),
            "commit time {} outside the write's window",
            rec.commit_ms
        );
    })
    .unwrap();
}
