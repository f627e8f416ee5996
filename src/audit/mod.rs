//! The tamper-evident audit log: every change is recorded, per tenant, as a hash chain
//! (`hash = SHA-256(prev_hash || canonical event)`) with gapless sequence numbers. The store
//! appends records inside the transaction of the change they describe. The event shape and the
//! hashing live in `model::audit` (below the store); this folder holds the services over them:
//! signed checkpoints, export, verification, sinks and anchors.

pub mod anchor;
pub mod checkpoint;
pub mod export;
pub mod sinks;
pub mod verify;

pub use crate::model::audit::*;
