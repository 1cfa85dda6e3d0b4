//! Undoing a failed ADD: the journal of what a call did to the node, the
//! network's lock, and the rollback that reads them.

pub mod journal;
pub mod lock;
pub mod rollback;

pub use journal::{Change, ContainerChange, Journal};
pub use lock::NetworkLock;
pub use rollback::Rollback;
