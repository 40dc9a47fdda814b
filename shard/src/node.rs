//! Starting and stopping a node: one executor thread per shard, the channel mesh
//! between them, and the per-core context that services use.

use crate::admission::Admission;
use crate::config::{
    DRAIN_POLL, IO_MEMORY_PER_SHARD, MEMLOCK_MARGIN_BYTES, MESH_QUEUE_DEPTH, NodeConfig, OPEN_POLL,
    SHUTDOWN_POLL, SYNC_NONE_INTERVAL, SyncMode,
};
use crate::error::ShardError;
use crate::exec::ShardCore;
use crate::failure;
use crate::meta;
use crate::ops::{ShardOp, ShardReply};
use crate::router::{Router, Transport};
use crate::routing::PartitionMap;
use crate::shutdown::Shutdown;
use event_listener::Event;
use futures_lite::future;
use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::{Latency, Placement, Shares};
use nextdb_engine::db::Db;
use nextdb_engine::fs::glommio_fs::DmaFs;
use std::future::Future;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A request for another core and where its answer goes.
pub struct Envelope {
    op: ShardOp,
    reply: flume::Sender<ShardReply>,
}

/// What every service on a core sees: its router (shard, partition map, the other
/// cores over the mesh; `Deref` makes `ctx.route(..)`, `ctx.core` read as before) and
/// the node's lifecycle.
pub struct ShardContext {
    pub router: Router<DmaFs, Mesh>,
    shutdown: Arc<Shutdown>,
    /// Notified (on this core) once shutdown begins.
    stop_local: Rc<Event>,
}

impl Deref for ShardContext {
    type Target = Router<DmaFs, Mesh>;
    fn deref(&self) -> &Self::Target {
        &self.router
    }
}

/// The node's transport between cores: glommio's channel mesh, one envelope per
/// request, the answer on a one-shot channel.
pub struct Mesh {
    senders: Senders<Envelope>,
    /// shard id → mesh peer index (join order decides peer indexes).
    peers: Arc<Vec<AtomicUsize>>,
}

impl Transport for Mesh {
    async fn send(&self, shard: usize, op: ShardOp) -> ShardReply {
        let (tx, rx) = flume::bounded(1);
        let peer = self.peers[shard].load(Ordering::Relaxed);
        if self
            .senders
            .send_to(peer, Envelope { op, reply: tx })
            .await
            .is_err()
        {
            return Err(ShardError::ShuttingDown);
        }
        rx.recv_async()
            .await
            .unwrap_or(Err(ShardError::ShuttingDown))
    }
}

impl ShardContext {
    /// Whether the node is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_stopping()
    }

    /// Completes once shutdown begins (noticed by this core).
    pub async fn stopped(&self) {
        loop {
            // Listening before checking: a notification in between is not lost.
            let w = self.stop_local.listen();
            if self.is_stopping() {
                return;
            }
            w.await;
        }
    }

    /// A service cannot run (e.g. its port is taken): stop the whole node with `why`.
    pub fn fail(&self, why: String) {
        eprintln!("nextdb: shard {}: {why}", self.id());
        self.shutdown.fail_with(why);
    }

    /// Called by a service once it accepts requests on this core; the node reports
    /// ready when every core has.
    pub fn mark_ready(&self, what: &str) {
        if self.shutdown.mark_ready() == self.shards {
            println!("nextdb: ready: {what} on {} shards", self.shards);
        }
    }
}

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Memlock(String),
    #[error("{0}")]
    DataDir(String),
    #[error("cannot start shard {shard}: {why}")]
    Executor { shard: usize, why: String },
    #[error("shard {shard} failed: {why}")]
    Shard { shard: usize, why: String },
    /// Why the node stopped: a service, or a core that failed or panicked.
    #[error("{0}")]
    Failed(String),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

pub struct Node;

impl Node {
    /// Locked memory the node needs: registered I/O buffers of every shard.
    pub fn memlock_needed(shards: usize) -> u64 {
        shards as u64 * IO_MEMORY_PER_SHARD as u64 + MEMLOCK_MARGIN_BYTES
    }

    /// Raises RLIMIT_MEMLOCK as far as it can; fails with the command to run if the
    /// limit stays below what the shards need.
    pub fn ensure_memlock(shards: usize) -> Result<Option<String>, NodeError> {
        let note = nextdb_engine::fs::glommio_fs::raise_memlock_limit().err();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
            return Err(NodeError::Memlock(format!(
                "cannot read RLIMIT_MEMLOCK: {}",
                std::io::Error::last_os_error()
            )));
        }
        let need = Self::memlock_needed(shards);
        if lim.rlim_cur < need {
            return Err(NodeError::Memlock(format!(
                "RLIMIT_MEMLOCK is {} bytes; {shards} shards need {need}. Run `ulimit -l unlimited` \
                 before starting nextdb (or set LimitMEMLOCK=infinity in its systemd unit, or \
                 `--ulimit memlock=-1` for docker)",
                lim.rlim_cur
            )));
        }
        Ok(note.map(|n| {
            format!(
                "{n} (continuing: {} bytes are enough for {shards} shards with small I/O buffers)",
                lim.rlim_cur
            )
        }))
    }

    /// Runs the node until SIGINT/SIGTERM (or `shutdown.stop()`), calling `service`
    /// once on every core. Returns after every core has drained and closed its engine.
    pub fn run<S, Fut>(
        cfg: NodeConfig,
        shutdown: Arc<Shutdown>,
        service: S,
    ) -> Result<(), NodeError>
    where
        S: Fn(Rc<ShardContext>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        failure::install_panic_hook();
        let shards = cfg.shards;
        meta::check_or_create(&cfg.data_dir, shards).map_err(NodeError::DataDir)?;
        let mesh = MeshBuilder::<Envelope, _>::full(shards, MESH_QUEUE_DEPTH);
        let peers: Arc<Vec<AtomicUsize>> =
            Arc::new((0..shards).map(|_| AtomicUsize::new(usize::MAX)).collect());
        let cpus = crate::config::allowed_cpus();
        let mut handles = Vec::new();
        for id in 0..shards {
            let placement = match cpus.len() {
                n if cfg.pin_cores && n > 0 => Placement::Fixed(cpus[id % n]),
                _ => Placement::Unbound,
            };
            let (cfg, mesh, peers, sd, service) = (
                cfg.clone(),
                mesh.clone(),
                peers.clone(),
                shutdown.clone(),
                service.clone(),
            );
            let h = nextdb_engine::runtime::executor_builder(placement)
                .name(&format!("nextdb-shard-{id}"))
                .spawn(move || async move {
                    run_shard(id, cfg, mesh, peers, sd.clone(), service)
                        .await
                        .inspect_err(|_| sd.fail())
                })
                .map_err(|e| {
                    // The cores already started wait at the mesh barrier; the
                    // process exits with this error.
                    shutdown.fail();
                    NodeError::Executor {
                        shard: id,
                        why: e.to_string(),
                    }
                })?;
            handles.push(h);
        }
        Self::join_cores(handles, &shutdown)
    }

    /// Waits for every core; the node's first recorded failure (a core that could
    /// not start, a service, a panic) is the reason reported, else the first core
    /// that ended badly.
    fn join_cores(
        handles: Vec<glommio::ExecutorJoinHandle<Result<(), String>>>,
        shutdown: &Shutdown,
    ) -> Result<(), NodeError> {
        let mut first_err = None;
        for (id, h) in handles.into_iter().enumerate() {
            let r = h
                .join()
                .unwrap_or_else(|e| Err(format!("executor failed: {e}")));
            if let Err(why) = r
                && first_err.is_none()
            {
                first_err = Some(NodeError::Shard { shard: id, why });
            }
        }
        if let Some(why) = shutdown.failure() {
            return Err(NodeError::Failed(why));
        }
        first_err.map_or(Ok(()), Err)
    }
}

type MeshJoin = MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>;

/// One core's life: join the mesh, open the engine, serve, drain, close. Every exit
/// path counts this core as drained, and a failure stops the whole node.
async fn run_shard<S, Fut>(
    id: usize,
    cfg: NodeConfig,
    mesh: MeshJoin,
    peers: Arc<Vec<AtomicUsize>>,
    shutdown: Arc<Shutdown>,
    service: S,
) -> Result<(), String>
where
    S: Fn(Rc<ShardContext>) -> Fut,
    Fut: Future<Output = ()>,
{
    failure::enter_core(id, shutdown.clone());
    // Joining is a barrier: every core gets here before any proceeds.
    let Ok((senders, receivers)) = mesh.join().await else {
        return Err(give_up(
            id,
            &shutdown,
            "cannot join the channel mesh".into(),
        ));
    };
    peers[id].store(senders.peer_id(), Ordering::SeqCst);
    let db = match open_engine(id, &cfg).await {
        Ok(db) => db,
        Err(why) => return Err(give_up(id, &shutdown, why)),
    };
    let admission = Admission::new(cfg.max_requests_in_flight, cfg.request_timeout);
    let core = match ShardCore::new(id, db.clone(), cfg.sync, admission) {
        Ok(core) => {
            core.live.set_slow_op_ms(cfg.slow_op_ms);
            core.live.set_slow_op_redact(cfg.slow_op_redact);
            Rc::new(core)
        }
        Err(e) => {
            let why = format!("cannot start the partition's raft group: {e}");
            let _ = db.close().await;
            return Err(give_up(id, &shutdown, why));
        }
    };
    let served = match start_core(&cfg, &core, receivers, &shutdown) {
        Ok(stop_local) => {
            // Serve only once every core opened its engine (or one failed).
            shutdown.mark_opened();
            while shutdown.opened() < cfg.shards && !shutdown.is_stopping() {
                glommio::timer::sleep(OPEN_POLL).await;
            }
            let mesh = Mesh { senders, peers };
            let ctx = Rc::new(ShardContext {
                router: Router::new(core, PartitionMap::even(cfg.shards), mesh),
                shutdown: shutdown.clone(),
                stop_local,
            });
            failure::inject_panic(id);
            if !shutdown.is_stopping() {
                service(ctx).await;
            }
            Ok(())
        }
        Err(why) => {
            shutdown.fail_with(format!("shard {id}: {why}"));
            Err(why)
        }
    };
    // Drained: no connection of this core waits for anything. Other cores may still
    // call into this engine until they drain too.
    shutdown.mark_drained(id);
    while shutdown.drained() < cfg.shards {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    let closed = db
        .close()
        .await
        .map_err(|e| format!("closing the engine failed: {e}"));
    served.and(closed)
}

/// A core that cannot start: the node stops, and this core counts as drained so the
/// others close their engines instead of waiting for it.
fn give_up(id: usize, shutdown: &Shutdown, why: String) -> String {
    shutdown.fail_with(format!("shard {id}: {why}"));
    shutdown.mark_drained(id);
    why
}

async fn open_engine(id: usize, cfg: &NodeConfig) -> Result<Rc<Db<DmaFs>>, String> {
    let dir = cfg.data_dir.join(format!("shard-{id}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = Db::open(DmaFs::new(), &dir, cfg.engine.clone())
        .await
        .map_err(|e| format!("cannot open the engine in {}: {e}", dir.display()))?;
    if let Some(archive) = &cfg.archive_dir {
        let to = archive.join(nextdb_engine::db::shard_dir_name(id as u32));
        db.set_log_archive(&to)
            .await
            .map_err(|e| format!("cannot archive the log into {}: {e}", to.display()))?;
    }
    Ok(db)
}

/// Starts a core's background work (flush and compaction, requests from other
/// cores, the shutdown watcher, the periodic sync). Returns what wakes this core's
/// services at shutdown.
fn start_core(
    cfg: &NodeConfig,
    core: &Rc<ShardCore<DmaFs>>,
    receivers: Receivers<Envelope>,
    shutdown: &Arc<Shutdown>,
) -> Result<Rc<Event>, String> {
    nextdb_engine::runtime::spawn_background(&core.db).map_err(|e| e.to_string())?;
    answer_other_cores(core, receivers);
    // The partition's group re-applies what it committed and starts serving now
    // rather than at the first request, so an idle node becomes ready (`/readyz`).
    let c = core.clone();
    glommio::spawn_local(async move {
        if let Err(e) = c.replica().wait_serving().await {
            tracing::error!(shard = c.id, error = %e, "the partition's group cannot serve");
        }
    })
    .detach();
    let stop_local = Rc::new(Event::new());
    {
        let (sd, n) = (shutdown.clone(), stop_local.clone());
        glommio::spawn_local(async move {
            while !sd.is_stopping() {
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
            n.notify(usize::MAX);
        })
        .detach();
    }
    if cfg.sync == SyncMode::None {
        spawn_sync_tick(core.db.clone(), shutdown.clone())?;
    }
    Ok(stop_local)
}

/// Requests from other cores: answered inline when they finish on the first poll
/// (memtable or cached reads, or BUSY), else in their own task; admission control
/// bounds how many such tasks exist.
fn answer_other_cores(core: &Rc<ShardCore<DmaFs>>, mut receivers: Receivers<Envelope>) {
    for (_, stream) in receivers.streams() {
        let core = core.clone();
        glommio::spawn_local(async move {
            while let Some(env) = stream.recv().await {
                core.stats.borrow_mut().cross_core_received += 1;
                let Envelope { op, reply } = env;
                let mut fut = Box::pin(core.clone().run(op));
                match future::poll_once(&mut fut).await {
                    Some(r) => {
                        let _ = reply.try_send(r);
                    }
                    None => {
                        glommio::spawn_local(async move {
                            let r = fut.await;
                            let _ = reply.try_send(r);
                        })
                        .detach();
                    }
                }
            }
        })
        .detach();
    }
}

/// With `--sync none`, fsyncs the log every `SYNC_NONE_INTERVAL`.
fn spawn_sync_tick(db: Rc<Db<DmaFs>>, shutdown: Arc<Shutdown>) -> Result<(), String> {
    let tq = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "nextdb-sync-tick",
    );
    glommio::spawn_local_into(
        async move {
            while !shutdown.is_stopping() {
                glommio::timer::sleep(SYNC_NONE_INTERVAL).await;
                if let Err(e) = db.sync_log().await {
                    tracing::error!(error = %e, "periodic log sync failed");
                }
            }
        },
        tq,
    )
    .map_err(|e| e.to_string())?
    .detach();
    Ok(())
}
