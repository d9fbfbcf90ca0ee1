//! Standby status updates: the one encoder, and the handle that lets the
//! row checks (`authorize`) ping the stream while a long batch is checked.
//! A leaf beneath the driver so `authorize` need not import it.

use bytes::BytesMut;

use super::stream::Status;
use crate::proto::pg::replication::{
    encode_standby_status_update, PgTimestamp, StandbyStatusUpdate,
};
use crate::server::pgconn::{PgConn, PgError};
use crate::server::shard::now_unix;

/// Sends status updates on the stream while a long batch is checked: the
/// walsender ends a session that sends nothing for `wal_sender_timeout`,
/// and one that did so in the middle of a large transaction's checks would
/// retry the same transaction for ever.
pub struct KeepAlive<'a> {
    pub(super) repl: &'a mut PgConn,
    pub(super) buf: &'a mut BytesMut,
    /// The positions as the batch began.
    pub(super) status: Status,
}

impl KeepAlive<'_> {
    /// One status update (positions unchanged since the batch began).
    pub async fn ping(&mut self) -> Result<(), PgError> {
        status_update(self.buf, self.status, false);
        self.repl.send_copy_data(self.buf).await
    }
}

/// Encodes a standby status update into `buf`: `received` written,
/// `flushed` flushed and applied.
pub(crate) fn status_update(buf: &mut BytesMut, st: Status, reply_requested: bool) {
    buf.clear();
    encode_standby_status_update(
        buf,
        &StandbyStatusUpdate {
            write: st.received,
            flush: st.flushed,
            apply: st.flushed,
            client_time: PgTimestamp::from_unix_micros(now_unix() * 1_000_000),
            reply_requested,
        },
    );
}
