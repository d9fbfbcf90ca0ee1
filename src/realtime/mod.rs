//! Runtime-free domain logic: everything here is plain data and functions of
//! it, driven by the `server` layer. Time is always passed in.

pub mod auth;
pub mod presence;
