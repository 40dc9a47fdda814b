//! The background loops (flush, compaction, the log's spare segment) and shutdown.
//!
//! Ownership: `run_background` is one task of the owning core, spawned into a
//! low-share task queue (`runtime::spawn_background`); its flusher, compactor and spare
//! writer share that task through `zip`. `close` is called by the owner.

use super::Db;
use crate::Result;
use crate::fs::FileSystem;
use std::rc::Rc;

impl<F: FileSystem> Db<F> {
    /// The flush and compaction loops. Spawn this once into a low-priority task queue;
    /// it returns after `close`. Without it, writers do the work inline when they stall.
    pub async fn run_background(self: Rc<Self>) {
        self.background_running.set(true);
        let flusher = async {
            loop {
                let w = self.bg_wake.wait();
                if self.st.borrow().closing {
                    break;
                }
                match self.flush_one().await {
                    Ok(true) => continue,
                    Ok(false) => w.await,
                    Err(e) => {
                        self.set_error(&e);
                        break;
                    }
                }
            }
        };
        let compactor = async {
            loop {
                let w = self.bg_wake.wait();
                if self.st.borrow().closing {
                    break;
                }
                match self.compact_once().await {
                    Ok(true) => continue,
                    Ok(false) => w.await,
                    Err(e) => {
                        self.set_error(&e);
                        break;
                    }
                }
            }
        };
        // Keeps a spare log segment ready, so a rotation never writes a new file on
        // the commit path (`Log::prepare_spare`).
        let spares = async {
            loop {
                let w = self.bg_wake.wait();
                if self.st.borrow().closing {
                    break;
                }
                if self.log.wants_spare() {
                    let closing = || self.st.borrow().closing;
                    if let Err(e) = self.log.prepare_spare(closing).await {
                        tracing::warn!(
                            error = %e,
                            "cannot write a spare log segment; segments are created at rotation from now on"
                        );
                    }
                    continue;
                }
                w.await;
            }
        };
        // Copies sealed log segments into the archive (`Log::set_archive`); the log
        // keeps a segment until its copy is done.
        let archiver = async {
            loop {
                let sealed = self.log.sealed_wait();
                let w = self.bg_wake.wait();
                if self.st.borrow().closing {
                    break;
                }
                if self.log.wants_archive() {
                    match self.log.archive_next().await {
                        Ok(_) => continue,
                        // Not fatal to writes: the log keeps the segment, and the copy
                        // is tried again at the next seal or wake-up.
                        Err(e) => tracing::error!(error = %e, "cannot archive a log segment"),
                    }
                }
                futures_lite::future::or(sealed, w).await;
            }
        };
        let fg = futures_lite::future::zip(flusher, compactor);
        futures_lite::future::zip(fg, futures_lite::future::zip(spares, archiver)).await;
        self.background_running.set(false);
        self.changed.notify_all();
    }

    /// Syncs the log and stops the background loops. Memtables are not flushed: the
    /// log holds them and recovery replays it.
    pub async fn close(&self) -> Result<()> {
        self.st.borrow_mut().closing = true;
        self.bg_wake.notify_all();
        let r = self.sync_log().await;
        while self.background_running.get() {
            let w = self.changed.wait();
            self.bg_wake.notify_all();
            w.await;
        }
        r
    }
}
