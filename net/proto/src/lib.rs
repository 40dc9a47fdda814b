//! `nextdb-proto`: the native protocol (versions 1 and 2), byte by byte as `docs/protocol.md` describes.
//!
//! Both the server (`nextdb-net`, on glommio) and the client (`nextdb-client`, on std or
//! tokio) use this crate, so it depends on no runtime. Every multi-byte integer on the
//! wire is little-endian and is read or written only in [`wire`].

pub mod error;
pub mod frame;
pub mod limits;
pub mod message;
pub mod routing;
pub mod scram;
pub mod wire;

pub use error::{ErrorCode, ProtoError};
pub use frame::{FrameHeader, HEADER_BYTES};
pub use message::{
    BatchOp, BatchResult, ConfigRequest, Hello, HelloOk, Request, Response, TtlState,
};
pub use routing::{SlotMap, SlotRange, slot_of};
