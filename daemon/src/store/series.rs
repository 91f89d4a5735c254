//! The per-minute counts of finished jobs (`ward:{Q}:series:<minute>`, see
//! [`crate::series`]): written in one transaction per flush, read back a
//! window of minutes at a time.

use std::collections::{BTreeSet, HashMap};

use super::{Queue, QueueError};
use crate::series::{Bucket, KEEP, Minute};

impl Queue {
    /// Adds `buckets` to their minutes' hashes (one `HINCRBY` each) and
    /// keeps each minute touched for [`KEEP`], in one `MULTI`: all of it
    /// lands, or none (so a flush tried again counts nothing twice).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn add_series(&self, buckets: &[Bucket]) -> Result<(), QueueError> {
        if buckets.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for b in buckets {
            pipe.hincr(self.keys.series(b.minute), &b.field, b.n)
                .ignore();
        }
        let keep = i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX);
        let minutes: BTreeSet<u64> = buckets.iter().map(|b| b.minute).collect();
        for m in minutes {
            pipe.pexpire(self.keys.series(m), keep).ignore();
        }
        let mut con = self.con.clone();
        let () = pipe.query_async(&mut con).await?;
        Ok(())
    }

    /// The counts of each minute of `minutes` (oldest first; a minute
    /// nothing finished in is empty), in one round trip.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn series(
        &self,
        minutes: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<Minute>, QueueError> {
        let minutes: Vec<u64> = minutes.collect();
        let mut pipe = redis::pipe();
        for m in &minutes {
            pipe.hgetall(self.keys.series(*m));
        }
        let mut con = self.con.clone();
        let hashes: Vec<HashMap<String, u64>> = pipe.query_async(&mut con).await?;
        Ok(minutes
            .into_iter()
            .zip(hashes)
            .map(|(m, f)| Minute::from_fields(m, &f))
            .collect())
    }
}
