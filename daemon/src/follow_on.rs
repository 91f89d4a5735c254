//! Follow-on jobs: jobs a success enqueues, in the same atomic step that
//! acknowledges it (the next stage of a job type with `then`, and the
//! children a plugin asks for). Pure: the store encodes them for APPLY.
//!
//! A follow-on is enqueued only if the success is recorded (its delivery
//! was still pending), so a retried or redelivered job never enqueues its
//! follow-ons twice; and each carries an idempotency key (its own, or one
//! derived from the parent's id and its place, see [`FollowOn::key_for`]),
//! so a job that somehow succeeds twice does not duplicate them either.

/// One job to enqueue when the attempt that asked for it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOn {
    /// Its job type (enqueued into the parent's queue).
    pub job_type: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its idempotency key; `None` derives one from the parent (see
    /// [`FollowOn::key_for`]).
    pub key: Option<String>,
    /// The batch it joins (counted in that batch's ledger); `None`: none.
    pub batch: Option<String>,
}

impl FollowOn {
    /// The idempotency key the follow-on at `index` (from 0) of job
    /// `parent` is enqueued under: its own, or `<parent>/<index>`, stable
    /// across reruns of the parent.
    #[must_use]
    pub fn key_for(&self, parent: &str, index: usize) -> String {
        match self.key.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => k.to_string(),
            None => format!("{parent}/{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follow_on_without_a_key_is_keyed_by_its_parent_and_place() {
        let mut f = FollowOn {
            job_type: "next".into(),
            payload: Vec::new(),
            key: None,
            batch: None,
        };
        assert_eq!(f.key_for("1-0", 0), "1-0/0");
        assert_eq!(f.key_for("1-0", 3), "1-0/3");
        f.key = Some(String::new());
        assert_eq!(f.key_for("1-0", 1), "1-0/1", "an empty key is none");
        f.key = Some("row-9".into());
        assert_eq!(f.key_for("1-0", 1), "row-9");
    }
}
