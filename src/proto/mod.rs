//! Sans-io codecs: nothing here performs I/O or reads a clock.

pub mod http;
pub mod json;
pub mod nats;
pub mod pg;
pub mod phoenix;
pub mod ws;
