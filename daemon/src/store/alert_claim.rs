//! The fleet-wide claim on sending an alert: one daemon of the fleet sends
//! a given alert (kind, queue, job type) per cooldown, however many see it.

use std::sync::LazyLock;
use std::time::Duration;

use super::script::script;
use super::{Queue, QueueError};

static CLAIM_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/alert_claim.lua")));

impl Queue {
    /// Claims the alert of `kind` and job type `job` (`*` for the whole
    /// queue) for daemon `owner` during `cooldown`: true when `owner` holds
    /// it now (it was free, or already `owner`'s), false when another
    /// daemon sends this alert this cooldown.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn claim_alert(
        &self,
        kind: &str,
        job: &str,
        owner: &str,
        cooldown: Duration,
    ) -> Result<bool, QueueError> {
        let mut con = self.con.clone();
        let ms = u64::try_from(cooldown.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let held: i64 = CLAIM_SCRIPT
            .key(self.keys.alert_claim(kind, job))
            .arg(owner)
            .arg(ms)
            .invoke_async(&mut con)
            .await?;
        Ok(held == 1)
    }
}
