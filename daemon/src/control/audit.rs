//! Who acts, and the audit trail every action leaves: one entry in
//! `ward:audit` (see [`crate::store::AuditRecord`]) and one log line.

use std::fmt;

use crate::store::{AuditRecord, QueueError, Store};

/// Through what an operator acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The `ward` command.
    Cli,
    /// The admin HTTP API.
    Api,
    /// The web screen (a session opened with an API token).
    Web,
}

impl Via {
    /// The name the audit trail shows.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::Web => "web",
        }
    }
}

/// Who performs an action: a person at the command line, or an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The name the audit trail shows.
    pub name: String,
    /// Through what.
    pub via: Via,
}

impl Actor {
    /// A person at the command line: `by` (`--by`), else `$USER`, else
    /// `unknown`.
    #[must_use]
    pub fn cli(by: Option<&str>) -> Actor {
        let name = by
            .map(str::to_string)
            .filter(|b| !b.trim().is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".to_string());
        Actor {
            name,
            via: Via::Cli,
        }
    }

    /// The holder of the API token named `token`.
    #[must_use]
    pub fn api(token: &str) -> Actor {
        Actor {
            name: token.to_string(),
            via: Via::Api,
        }
    }

    /// The web screen's session of the token named `token`.
    #[must_use]
    pub fn web(token: &str) -> Actor {
        Actor {
            name: token.to_string(),
            via: Via::Web,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.via.as_str())
    }
}

/// One action to put on the record.
#[derive(Debug, Clone, Default)]
pub struct Action<'a> {
    /// What: `pause`, `resume`, `cancel`, `requeue`, `discard`, `edit`, ...
    pub action: &'a str,
    /// The queue acted on.
    pub queue: &'a str,
    /// On what: job ids, a job type, a filter.
    pub target: String,
    /// How many jobs it changed.
    pub count: u64,
    /// The operator's note.
    pub note: &'a str,
    /// Anything else worth keeping, as JSON (`None` for nothing).
    pub detail: Option<serde_json::Value>,
}

/// Puts `action`, done by `actor`, on the audit trail and in the log;
/// returns the audit entry's id.
///
/// # Errors
/// Redis errors. The action itself has happened by then: callers report
/// the failure to record it rather than undo the action.
pub async fn record(
    store: &Store,
    actor: &Actor,
    action: Action<'_>,
) -> Result<String, QueueError> {
    let record = AuditRecord {
        id: String::new(),
        at_ms: crate::clock::now_ms(),
        by: actor.name.clone(),
        via: actor.via.as_str().to_string(),
        action: action.action.to_string(),
        queue: action.queue.to_string(),
        target: action.target,
        count: action.count,
        note: action.note.to_string(),
        detail: action.detail.map(|d| d.to_string()).unwrap_or_default(),
    };
    tracing::info!(
        target: "ward::audit",
        by = %record.by, via = %record.via, action = %record.action, queue = %record.queue,
        target_ = %record.target, count = record.count, note = %record.note,
        "operator action"
    );
    store.append_audit(&record).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cli_actor_is_named_by_by_before_user() {
        assert_eq!(Actor::cli(Some("ana")).name, "ana");
        assert_eq!(Actor::cli(Some("ana")).via, Via::Cli);
        // A blank --by is no name: fall back to $USER or `unknown`.
        assert!(!Actor::cli(Some("  ")).name.trim().is_empty());
    }
}
