//! Writing to the daemon's log.
//!
//! Each line goes through the host, which tags it with the job id and the job
//! type, so there is no need to repeat those in the message.

use crate::bindings::ward::plugin::host::{self, Level};

/// Logs `msg` at trace level.
pub fn trace(msg: &str) {
    host::log(Level::Trace, msg);
}

/// Logs `msg` at debug level.
pub fn debug(msg: &str) {
    host::log(Level::Debug, msg);
}

/// Logs `msg` at info level.
pub fn info(msg: &str) {
    host::log(Level::Info, msg);
}

/// Logs `msg` at warn level.
pub fn warn(msg: &str) {
    host::log(Level::Warn, msg);
}

/// Logs `msg` at error level.
pub fn error(msg: &str) {
    host::log(Level::Error, msg);
}
