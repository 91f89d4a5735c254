//! `[admin]`: the admin HTTP API (see `crate::admin`), the table as written
//! and the validated settings. Validation is in `validate/admin.rs`.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:9470"     # off unless set
//!
//! [[admin.token]]
//! name = "ci-bot"               # shown in the audit trail
//! role = "operator"             # viewer | operator
//! secret = "WARD_ADMIN_CI"      # env var WARD_ADMIN_CI, else $CREDENTIALS_DIRECTORY/WARD_ADMIN_CI
//! ```
//!
//! A token's value is never written in the file: `secret` names where it
//! is read from when the API starts, like the `secret:NAME` values of
//! `[[alerts.webhook]]`.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

pub use super::validate::admin::validate;

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port` the API listens on; no API unless set.
    pub listen: Option<Spanned<String>>,
    /// `[[admin.token]]`: who may call it.
    #[serde(default, rename = "token")]
    pub tokens: Vec<Spanned<RawToken>>,
    /// Failed authentications one client address may make within a minute
    /// before it is refused for the rest of it (0: no limit).
    pub failed_auth_limit: Option<Spanned<i64>>,
    /// Addresses or CIDR ranges of reverse proxies in front of the API: a
    /// request from one is counted against the client its `X-Forwarded-For`
    /// names.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
}

/// `[[admin.token]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// The token's name: the actor of the audit entries it leaves.
    pub name: Option<Spanned<String>>,
    /// `viewer` (reads only, payloads redacted) or `operator`.
    pub role: Option<Spanned<String>>,
    /// The name of the secret holding the token: the environment variable
    /// of that name, else the file `$CREDENTIALS_DIRECTORY/<name>`.
    /// `secret:NAME` is accepted too.
    pub secret: Option<Spanned<String>>,
    /// Not allowed: read so that a token written in clear is refused with
    /// a message saying where it belongs, rather than as an unknown key.
    pub value: Option<Spanned<String>>,
    /// Not allowed either (see `value`).
    pub token: Option<Spanned<String>>,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only; payloads shown redacted as in dead letters.
    Viewer,
    /// Reads and acts (requeue, discard, ...); sees payloads as enqueued.
    Operator,
}

impl Role {
    /// The role's name as written in the config.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// `[admin] failed_auth_limit` unless set.
pub const DEFAULT_FAILED_AUTH_LIMIT: u32 = 10;

/// `[admin]`, validated (token values not read yet: that happens when the
/// API starts, so tools reading the config don't need them).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where the API listens; `None`: no API.
    pub listen: Option<SocketAddr>,
    /// The tokens, in file order.
    pub tokens: Vec<TokenConfig>,
    /// Failed authentications a client address may make within a minute
    /// before it is refused for the rest of that minute (0: no limit).
    pub failed_auth_limit: u32,
    /// Reverse proxies (a bare address is a one-address range) whose
    /// `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            tokens: Vec::new(),
            failed_auth_limit: DEFAULT_FAILED_AUTH_LIMIT,
            trusted_proxies: Vec::new(),
        }
    }
}

/// One `[[admin.token]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The token's name (unique).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The secret holding its value.
    pub secret: String,
}
