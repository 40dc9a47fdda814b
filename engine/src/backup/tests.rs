//! Backup, incremental backup, verify and point-in-time restore of one engine on the
//! simulated file system, with the background (flushes, compactions, the archiver)
//! running while the backups copy.

use super::manifest::{BackupManifest, FileEntry};
use super::restore::restore;
use super::verify::{read_backup_manifest, verify};
use crate::EngineConfig;
use crate::db::{BackupTarget, Db, WriteOptions, prev_files, shard_dir_name};
use crate::fs::sim::SimFs;
use crate::fs::{FileSystem, RwFile};
use crate::log::segment::wall_clock_ms;
use crate::runtime::testing::run_bounded;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn cfg() -> EngineConfig {
    EngineConfig {
        memtable_bytes: 16 << 10,
        log_segment_bytes: 64 << 10,
        log_buffer_bytes: 8 << 10,
        level1_bytes: 64 << 10,
        target_file_bytes: 16 << 10,
        ..EngineConfig::small_for_tests()
    }
}

const SYNC: WriteOptions = WriteOptions {
    sync: true,
    ttl_ms: None,
};

fn key(i: u64) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

async fn put_range(db: &Db<SimFs>, from: u64, to: u64) {
    for i in from..to {
        db.put(&key(i), &[i as u8; 200], &SYNC).await.unwrap();
    }
}

/// One shard's backup into `dir`, with `BACKUP` written as the node writes it.
async fn backup(
    fs: &SimFs,
    db: &Db<SimFs>,
    dir: &Path,
    prev: Option<&Path>,
) -> (BackupManifest, u64, u64) {
    let rel = shard_dir_name(0);
    let prev = match prev {
        Some(p) => Some((
            p.join(&rel),
            prev_files(&read_backup_manifest(fs, p).await.unwrap().files, &rel),
        )),
        None => None,
    };
    let t = BackupTarget {
        shard: 0,
        dir: dir.join(&rel),
        rel,
        prev,
    };
    let b = db.backup(&t).await.unwrap();
    let m = BackupManifest {
        created_ms: wall_clock_ms(),
        shards: vec![b.point],
        files: b.files.clone(),
    };
    super::write_backup_manifest(fs, dir, &m).await.unwrap();
    (m, b.bytes_copied, b.files_linked)
}

async fn wait_archived(db: &Db<SimFs>) {
    while db.archive_pending() {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

async fn present(fs: &SimFs, data: &Path, n: u64) -> Vec<bool> {
    let db = Db::open(fs.clone(), &data.join(shard_dir_name(0)), cfg())
        .await
        .unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        out.push(db.get(&key(i)).await.unwrap().is_some());
    }
    db.close().await.unwrap();
    out
}

fn sst_entries(m: &BackupManifest) -> Vec<&FileEntry> {
    m.files
        .iter()
        .filter(|f| f.path.ends_with(".sst"))
        .collect()
}

#[test]
fn backup_incremental_verify_and_point_in_time_restore() {
    run_bounded(Duration::from_secs(120), || async {
        let fs = SimFs::new(7);
        let data = PathBuf::from("/data/shard-0");
        let archive = Path::new("/archive");
        let db = Db::open(fs.clone(), &data, cfg()).await.unwrap();
        db.set_log_archive(&archive.join(shard_dir_name(0)))
            .await
            .unwrap();
        crate::runtime::spawn_background(&db).unwrap();
        put_range(&db, 0, 300).await;
        db.flush().await.unwrap();
        let (m1, copied1, linked1) = backup(&fs, &db, Path::new("/b1"), None).await;
        assert_eq!(linked1, 0);
        assert!(
            !sst_entries(&m1).is_empty(),
            "the first backup holds tables"
        );

        // Moment T between two batches of writes, each side a few ms away.
        put_range(&db, 300, 400).await;
        glommio::timer::sleep(Duration::from_millis(5)).await;
        let t = wall_clock_ms();
        glommio::timer::sleep(Duration::from_millis(5)).await;
        put_range(&db, 400, 500).await;
        let (m2, copied2, linked2) =
            backup(&fs, &db, Path::new("/b2"), Some(Path::new("/b1"))).await;
        wait_archived(&db).await;
        // Tables of the first backup still live are linked, not copied again.
        let kept = sst_entries(&m2)
            .iter()
            .filter(|f| sst_entries(&m1).iter().any(|g| g.path == f.path))
            .count() as u64;
        assert_eq!(linked2, kept, "every unchanged table is linked");
        let new_sst: u64 = sst_entries(&m2)
            .iter()
            .filter(|f| !sst_entries(&m1).iter().any(|g| g.path == f.path))
            .map(|f| f.size)
            .sum();
        let log_bytes: u64 = m2
            .files
            .iter()
            .filter(|f| f.path.contains("/log/"))
            .map(|f| f.size)
            .sum();
        assert!(
            copied2 <= new_sst + log_bytes + 8192,
            "copied {copied2} of {new_sst} new table bytes"
        );
        assert!(copied1 > 0);

        for b in ["/b1", "/b2"] {
            let r = verify(&fs, Path::new(b)).await.unwrap();
            assert!(r.problems.is_empty(), "{b}: {:?}", r.problems);
        }
        let r = verify(&fs, &data).await.unwrap();
        assert!(r.problems.is_empty(), "live shard: {:?}", r.problems);
        db.close().await.unwrap();

        // Plain restore of the incremental backup: everything written before it.
        restore(&fs, Path::new("/b2"), None, None, Path::new("/r2"))
            .await
            .unwrap();
        assert!(present(&fs, Path::new("/r2"), 500).await.iter().all(|p| *p));

        // Point-in-time: the first backup rolled forward to T.
        let rep = restore(
            &fs,
            Path::new("/b1"),
            Some(archive),
            Some(t),
            Path::new("/rt"),
        )
        .await
        .unwrap();
        assert!(rep.shards[0].1 <= t);
        let got = present(&fs, Path::new("/rt"), 500).await;
        assert!(got[..400].iter().all(|p| *p), "a write before T is missing");
        assert!(got[400..].iter().all(|p| !*p), "a write after T is present");

        // A moment before the backup's point, or past the archive, is refused.
        let early = restore(
            &fs,
            Path::new("/b2"),
            Some(archive),
            Some(t),
            Path::new("/re"),
        )
        .await;
        assert!(format!("{:?}", early.unwrap_err()).contains("before the backup's point"));
        let late = restore(
            &fs,
            Path::new("/b1"),
            Some(archive),
            Some(u64::MAX / 2),
            Path::new("/rl"),
        )
        .await;
        assert!(format!("{:?}", late.unwrap_err()).contains("archive ends"));

        // A flipped byte in a copied table: verify names it, restore refuses.
        let victim = Path::new("/b2").join(&sst_entries(&m2)[0].path);
        flip_byte(&fs, &victim, 100).await;
        let r = verify(&fs, Path::new("/b2")).await.unwrap();
        let name = victim.display().to_string();
        assert!(
            r.problems.iter().any(|p| p.contains(&name)),
            "{:?}",
            r.problems
        );
        let refused = restore(&fs, Path::new("/b2"), None, None, Path::new("/rc")).await;
        assert!(format!("{}", refused.unwrap_err()).contains("corrupt"));
    });
}

async fn flip_byte(fs: &SimFs, path: &Path, at: u64) {
    let f = fs.open_rw(path).await.unwrap();
    let size = f.size().await.unwrap();
    let page = at / 4096 * 4096;
    let mut data = f.read_at(page, 4096).await.unwrap();
    let len = data.len();
    data[(at - page) as usize] ^= 0x40;
    data.resize(4096, 0);
    f.write_at(page, &data).await.unwrap();
    f.truncate(size.max(page + len as u64)).await.unwrap();
    f.sync().await.unwrap();
}
