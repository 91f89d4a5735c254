//! The job as a plugin sees it.

use serde::de::DeserializeOwned;

use crate::bindings;
use crate::failure::Failure;

/// The failure code for a payload the plugin cannot read at all.
const INVALID_PAYLOAD: &str = "invalid-payload";

/// One attempt's view of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id: the stream entry id of its first enqueue. Stable across attempts.
    pub id: String,
    /// The job type, as configured in `[[job]] name`.
    pub name: String,
    /// The payload bytes exactly as they were enqueued (not necessarily UTF-8).
    pub payload: Vec<u8>,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
    /// The idempotency key given at enqueue; forward it upstream (e.g. as an
    /// `Idempotency-Key` header) so a retried side effect is not applied twice.
    ///
    /// Ward passes the job id when the enqueuer gave no key, so today this is
    /// always `Some` and stable across every attempt of the job.
    pub idempotency_key: Option<String>,
    /// What the previous attempt saved with [`save_checkpoint`](crate::save_checkpoint), if anything.
    pub checkpoint: Option<Vec<u8>>,
}

impl Job {
    /// Parses the payload as JSON into `T`.
    ///
    /// # Errors
    ///
    /// A payload that is not valid JSON, or does not match `T`, yields a
    /// permanent failure with code `invalid-payload`: retrying the same bytes
    /// cannot help. The message includes serde's explanation.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            Failure::permanent(format!("payload is not the expected JSON: {e}"))
                .code(INVALID_PAYLOAD)
        })
    }

    /// Returns the payload as text.
    ///
    /// # Errors
    ///
    /// A payload that is not valid UTF-8 yields a permanent failure with code
    /// `invalid-payload`.
    pub fn payload_str(&self) -> Result<&str, Failure> {
        std::str::from_utf8(&self.payload).map_err(|e| {
            Failure::permanent(format!("payload is not valid UTF-8: {e}")).code(INVALID_PAYLOAD)
        })
    }
}

impl From<bindings::Job> for Job {
    fn from(job: bindings::Job) -> Self {
        Self {
            id: job.id,
            name: job.name,
            payload: job.payload,
            attempt: job.attempt,
            idempotency_key: job.idempotency_key,
            checkpoint: job.checkpoint,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A panic is how a test reports a wrong result.
mod tests {
    use super::*;
    use crate::FailureClass;

    fn job(payload: &[u8]) -> Job {
        Job {
            id: "1700000000000-0".into(),
            name: "test".into(),
            payload: payload.to_vec(),
            attempt: 1,
            idempotency_key: None,
            checkpoint: None,
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Payload {
        n: u32,
    }

    #[test]
    fn json_parses_a_matching_payload() {
        assert_eq!(
            job(br#"{"n":3}"#).json::<Payload>().unwrap(),
            Payload { n: 3 }
        );
    }

    #[test]
    fn invalid_json_is_a_permanent_invalid_payload_failure() {
        let failure = job(b"{not json").json::<Payload>().unwrap_err();
        assert_eq!(failure.class(), FailureClass::Permanent);
        assert_eq!(failure.error_code(), Some(INVALID_PAYLOAD));
        assert!(
            failure.message().contains("key must be a string"),
            "{failure}"
        );
    }

    #[test]
    fn json_of_the_wrong_shape_names_the_missing_field() {
        let failure = job(br#"{"m":3}"#).json::<Payload>().unwrap_err();
        assert_eq!(failure.class(), FailureClass::Permanent);
        assert_eq!(failure.error_code(), Some(INVALID_PAYLOAD));
        assert!(failure.message().contains("missing field `n`"), "{failure}");
    }

    #[test]
    fn payload_str_accepts_utf8_and_rejects_the_rest() {
        assert_eq!(job("héllo".as_bytes()).payload_str().unwrap(), "héllo");
        let failure = job(&[0xff, 0xfe]).payload_str().unwrap_err();
        assert_eq!(failure.class(), FailureClass::Permanent);
        assert_eq!(failure.error_code(), Some(INVALID_PAYLOAD));
    }

    #[test]
    fn converts_from_the_generated_record() {
        let raw = bindings::Job {
            id: "id".into(),
            name: "name".into(),
            payload: vec![0, 255],
            attempt: 3,
            idempotency_key: Some("key".into()),
            checkpoint: Some(vec![1]),
        };
        let job = Job::from(raw);
        assert_eq!(job.payload, [0, 255]);
        assert_eq!(job.attempt, 3);
        assert_eq!(job.idempotency_key.as_deref(), Some("key"));
        assert_eq!(job.checkpoint.as_deref(), Some(&[1][..]));
    }
}
