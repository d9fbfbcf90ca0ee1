//! The record of a live WebSocket connection that its shard keeps. Plain
//! data apart from the driver in `connection`, so the shard state can
//! hold it without depending on the driver.

use std::cell::RefCell;
use std::rc::Rc;

use super::outq::OutQueue;
use crate::realtime::session::Session;
use crate::realtime::tenant::Tenant;

/// A live WebSocket connection, registered on its shard.
pub struct Conn {
    /// Protocol state.
    pub session: RefCell<Session>,
    /// Write queue.
    pub out: Rc<OutQueue>,
    /// Its tenant's state on this shard.
    pub tenant: Rc<RefCell<Tenant>>,
}
