//! Phoenix channel events, one file each: how the payload is read, what it
//! does to the session and tenant, and what is answered.

pub mod access_token;
pub mod broadcast;
pub mod heartbeat;
pub mod phx_join;
pub mod phx_leave;
pub mod presence;
