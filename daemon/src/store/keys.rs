//! The names of a queue's keys. Every key of queue `Q` shares the hash tag
//! `{Q}`, so one script may touch any of them (and Redis Cluster keeps them
//! on one node).

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The queue's name.
    pub queue: String,
    /// `ward:{Q}:jobs`
    pub jobs: String,
    /// `ward:{Q}:dead`
    pub dead: String,
    /// `ward:{Q}:delayed`
    pub delayed: String,
    /// `ward:{Q}:wake`: pub/sub channel told of every new due time.
    pub wake: String,
    /// `ward:{Q}:seq`: counter for the ids of jobs that start delayed.
    pub seq: String,
    /// `ward:{Q}:acked`: how many acknowledged entries wait in the stream
    /// to be trimmed.
    pub acked: String,
    /// `ward:{Q}:breakers`: set of the upstreams that have a breaker hash
    /// `ward:{Q}:breaker:<upstream>`.
    pub breakers: String,
    /// `ward:{Q}:breaker:` (append an upstream): one circuit breaker's hash.
    pub breaker_prefix: String,
    /// `ward:{Q}:job:` (append a job id)
    pub record_prefix: String,
}

impl Keys {
    /// The keys of queue `queue`.
    #[must_use]
    pub fn new(queue: &str) -> Keys {
        Keys {
            queue: queue.to_string(),
            jobs: format!("ward:{{{queue}}}:jobs"),
            dead: format!("ward:{{{queue}}}:dead"),
            delayed: format!("ward:{{{queue}}}:delayed"),
            wake: format!("ward:{{{queue}}}:wake"),
            seq: format!("ward:{{{queue}}}:seq"),
            acked: format!("ward:{{{queue}}}:acked"),
            breakers: format!("ward:{{{queue}}}:breakers"),
            breaker_prefix: format!("ward:{{{queue}}}:breaker:"),
            record_prefix: format!("ward:{{{queue}}}:job:"),
        }
    }

    /// `ward:{Q}:job:<id>`
    #[must_use]
    pub fn record(&self, id: &str) -> String {
        format!("{}{id}", self.record_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_queue_hash_tag() {
        let k = Keys::new("emails");
        assert_eq!(k.jobs, "ward:{emails}:jobs");
        assert_eq!(k.record("1-0"), "ward:{emails}:job:1-0");
        assert_eq!(k.dead, "ward:{emails}:dead");
    }
}
