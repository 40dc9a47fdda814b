//! `nextdb-shard`: the node. One glommio executor per core, each owning a shard (its
//! storage engine, its key locks, its counters); a partition map that routes a key to
//! its owning core; a channel mesh between cores for requests that land on the wrong
//! one. Services (the native protocol server, later pgwire) run on every core and call
//! [`router::Router::call`], which executes locally or sends the operation to the owner.

pub mod admission;
pub mod backup;
pub mod config;
pub mod error;
pub mod exec;
pub mod failure;
pub mod live;
pub mod locks;
pub mod meta;
pub mod node;
pub mod op_timing;
pub mod ops;
pub mod raft;
pub mod router;
pub mod routing;
pub mod settings;
pub mod shutdown;
pub mod stats;

pub use config::{NodeConfig, SyncMode};
pub use error::ShardError;
pub use node::{Node, ShardContext};
pub use ops::{ShardOp, ShardResult};
pub use router::{Router, Transport};
