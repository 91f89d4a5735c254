//! After a failed read, the reader takes back what that read may have
//! left leased to it (see `store/orphans.rs`): entries Redis handed to
//! this consumer whose reply never arrived. Without this they sat unrun
//! until their lease ran out, and were then charged a lost attempt.

use crate::priority::Priority;
use crate::store::{self, Leased};

use super::Reader;

impl Reader {
    /// Up to `max` deliveries pending under this consumer on their first
    /// delivery that it neither holds nor abandoned, taken back and
    /// finished as a plain read's are (moved to their level, batch members
    /// counted; keys are claimed by the triage, which sees a key claimed
    /// for the same job as its own). `None` when there were none.
    ///
    /// Those that cannot be taken back or finished are left to expire, as
    /// before, and said so in the log.
    pub(super) async fn adopt_orphans(
        &self,
        max: usize,
        key_ttls: &[(String, u64)],
    ) -> Option<Vec<Leased>> {
        let mut found = false;
        let mut out = Vec::new();
        for level in Priority::ALL {
            if out.len() >= max {
                break;
            }
            match self.adopt_on(level, max - out.len(), key_ttls).await {
                Ok(Some(leased)) => {
                    found = true;
                    out.extend(leased);
                }
                Ok(None) => {}
                // Never a reason to stop reading: what is not taken back
                // goes the way it went before, a lease later. Redis still
                // away fails every level alike: one line says so, and the
                // next failed read tries again.
                Err(e) => {
                    tracing::warn!(
                        queue = %self.cfg.name,
                        level = %level,
                        error = %e,
                        "cannot look for deliveries a failed read left leased to this daemon; any are reclaimed as lost attempts once their lease runs out"
                    );
                    if store::is_connection_error(&e) {
                        break;
                    }
                }
            }
        }
        found.then_some(out)
    }

    /// [`Reader::adopt_orphans`] on `level`'s stream.
    async fn adopt_on(
        &self,
        level: Priority,
        max: usize,
        key_ttls: &[(String, u64)],
    ) -> Result<Option<Vec<Leased>>, store::QueueError> {
        let known = |id: &str| self.in_flight.known(id);
        let ids = self
            .reader
            .orphans(level, &self.consumer, known, max)
            .await?;
        if ids.is_empty() {
            return Ok(None);
        }
        let taken = self.reader.adopt(level, &self.consumer, &ids).await?;
        crate::obs::deliveries_taken_back(&self.cfg.name, taken.len());
        tracing::warn!(
            queue = %self.cfg.name,
            level = %level,
            entries = taken.len(),
            "taking back deliveries a failed read left leased to this daemon; they run now"
        );
        if level != Priority::Normal {
            // Only the normal stream's entries need finishing.
            return Ok(Some(taken.into_iter().map(|d| (d, None)).collect()));
        }
        // What made the read fail may make this fail for good (a level's
        // stream key holding another type): retrying here would stall the
        // queue. Taken back once, they are not taken back again, and go
        // the way they went before.
        let lease = self.reader.finish_plain(&taken, key_ttls).await.inspect_err(|e| {
            tracing::error!(
                queue = %self.cfg.name,
                entries = taken.len(),
                error = %e,
                "cannot finish the deliveries taken back (move them to their level, count their batch); they are left to expire and be reclaimed as lost attempts"
            );
        })?;
        Ok(Some(lease.deliveries))
    }
}
