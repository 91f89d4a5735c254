//! How scripts are built: each starts with a generated preamble of the facts
//! Rust and Lua share (key shapes, dead-letter entry fields, the function
//! library's version), so they are stated once, in Rust, followed by the
//! helpers every script may use (`lua/common.lua`).

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::dead::DEAD_ENTRY_FIELDS;
use super::enqueue::{FUNCTIONS_VERSION, MAX_TIME_MS};
use super::fields::{ENTRY, EXTRA_PREFIX, MAX_EXTRA_FIELDS, RESERVED_PREFIX};
use super::keys;
use crate::fairness;

/// The helper that builds a job's stream entry from its record, for the
/// scripts that put jobs back in the stream (PROMOTE, RELEASE).
pub(super) const RECORD_ENTRY: &str = include_str!("lua/record_entry.lua");

/// The Lua every script and the function library start with.
static PREAMBLE: LazyLock<String> = LazyLock::new(|| {
    let mut lua = String::from("-- Generated from daemon/src/store/script.rs; do not edit here.\n");
    let fields: Vec<String> = DEAD_ENTRY_FIELDS
        .iter()
        .map(|f| format!("{f} = true"))
        .collect();
    // Writing to a String cannot fail.
    let _ = writeln!(lua, "local DEAD_ENTRY_FIELDS = {{{}}}", fields.join(", "));
    let entry: Vec<String> = ENTRY
        .iter()
        .map(|(lua, field)| format!("{lua} = {}", quote(field)))
        .collect();
    let _ = writeln!(lua, "local ENTRY = {{{}}}", entry.join(", "));
    let max_time = MAX_TIME_MS.to_string();
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let (recheck, jitter, per_place, recheck_max, queued_ttl) = (
        ms(fairness::RECHECK),
        ms(fairness::RECHECK_JITTER),
        ms(fairness::RECHECK_PER_PLACE),
        ms(fairness::RECHECK_MAX),
        ms(fairness::QUEUED_TTL),
    );
    for (name, value) in keys::LUA.into_iter().chain([
        ("FUNCTIONS_VERSION", FUNCTIONS_VERSION),
        ("EXTRA_PREFIX", EXTRA_PREFIX),
        ("RESERVED_PREFIX", RESERVED_PREFIX),
        ("BATCH_PAUSE_PREFIX", super::pause::BATCH_PAUSE_PREFIX),
        ("MAX_TIME_MS", max_time.as_str()),
        // The waits of a parked job (see crate::fairness::busy_delay).
        ("GROUP_RECHECK_MS", recheck.as_str()),
        ("GROUP_RECHECK_JITTER_MS", jitter.as_str()),
        ("GROUP_RECHECK_PER_PLACE_MS", per_place.as_str()),
        ("GROUP_RECHECK_MAX_MS", recheck_max.as_str()),
        ("GROUP_QUEUED_TTL_MS", queued_ttl.as_str()),
    ]) {
        let _ = writeln!(lua, "local {name} = {}", quote(value));
    }
    let _ = writeln!(lua, "local MAX_EXTRA_FIELDS = {MAX_EXTRA_FIELDS}");
    lua.push_str(include_str!("lua/common.lua"));
    lua
});

/// A script: the preamble, then `prelude` (Lua of its own, such as a
/// generated argument layout or helpers shared by a few scripts), then
/// `body` (a file under `lua/`). Hashed once:
/// `invoke_async` sends EVALSHA and falls back to EVAL only when the server
/// does not have the script yet (e.g. after a restart).
pub(super) fn script(prelude: &str, body: &str) -> redis::Script {
    redis::Script::new(&format!("{}{prelude}{body}", *PREAMBLE))
}

/// The function library named `ward`: its first line must name it.
pub(super) fn library(body: &str) -> String {
    format!("#!lua name=ward\n{}{body}", *PREAMBLE)
}

/// `s` as a Lua string literal.
pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One EVALSHA of a script, written as a single command: each key and
/// argument goes once into the command's buffer. redis-rs's
/// `ScriptInvocation` first copies each into a `Vec<u8>` of its own, then
/// all of them into the command: an allocation and two copies per
/// argument, which on APPLY (about ten arguments per job) was a sixth of
/// the daemon's allocations per job.
pub(super) struct Call<'s> {
    script: &'s redis::Script,
    cmd: redis::Cmd,
}

impl<'s> Call<'s> {
    /// A call of `script` with `keys` keys, to be added first, then its
    /// arguments; `args` and `bytes` size the buffers (a guess is fine).
    pub(super) fn new(script: &'s redis::Script, keys: usize, args: usize, bytes: usize) -> Self {
        let hash = script.get_hash();
        let mut cmd = redis::Cmd::with_capacity(3 + keys + args, 16 + hash.len() + bytes);
        cmd.arg("EVALSHA").arg(hash).arg(keys);
        Call { script, cmd }
    }

    /// Adds the next key or argument.
    pub(super) fn arg(&mut self, a: impl redis::ToRedisArgs) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    /// Runs the call; when Redis does not have the script (a restart, a
    /// `SCRIPT FLUSH`), loads it and runs the call again, as
    /// `ScriptInvocation::invoke_async` does.
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        con: &mut super::Connection,
    ) -> redis::RedisResult<T> {
        match self.cmd.query_async(con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.load_async(con).await?;
                self.cmd.query_async(con).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preamble_states_the_shared_facts() {
        assert!(PREAMBLE.contains("local KEY_NAMESPACE = 'ward:'\n"));
        assert!(PREAMBLE.contains("local HISTORY_SUFFIX = ':history'\n"));
        assert!(PREAMBLE.contains("id = true, job = true, queue = true"));
        assert!(PREAMBLE.contains("local ENTRY = {id = 'ward:id', attempt = 'ward:attempt'"));
        assert_eq!(quote("it's"), r"'it\'s'");
    }
}
