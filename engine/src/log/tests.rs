use super::*;
use crate::fs::glommio_fs::run_local;
use crate::fs::sim::SimFs;
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
            last = log
                .append(i % 3, i, 1, &vec![i as u8; (i % 300) as usize])
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
            assert_eq!((*g, *i), (i2 % 3, i2));
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
        for i in 1..=400u64 {
            let l = log.append(i % 2, i, 0, &[9u8; 700]).unwrap();
            if i % 10 == 0 {
                log.sync(l).await.unwrap();
            }
        }
        let l = log.last_lsn();
        log.sync(l).await.unwrap();
        let segs = log.stats().segments;
        assert!(segs >= 4, "expected rotation, got {segs} segments");
        // Only group 0 truncated: nothing can go (group 1 still needs every segment).
        log.truncate_group(0, 400);
        assert_eq!(log.gc().await.unwrap(), 0);
        log.truncate_group(1, 200);
        let removed = log.gc().await.unwrap();
        assert!(removed >= 1, "nothing collected");
        drop(log);
        let recs = collect(&fs, dir).await.unwrap();
        assert!(
            recs.iter().all(|r| r.1 > 150),
            "a segment with needed records was removed"
        );
        assert!(recs.iter().any(|r| r.1 == 400));
        let max_g1: u64 = recs.iter().filter(|r| r.0 == 1).map(|r| r.1).max().unwrap();
        assert_eq!(max_g1, 399);
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
