//! A raw stream entry ([`Delivery`]) and how it is read as a job. The job
//! it becomes ([`JobEntry`], or [`Malformed`]) and what its attempt asks for
//! ([`Completion`]) are domain types, outside the store; they are re-exported
//! here so that `store::JobEntry` and `store::Completion` keep working.

pub use crate::job::{JobEntry, Malformed};
pub use crate::transition::Completion;

/// A raw stream entry as delivered by `XREADGROUP`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id.
    pub entry_id: String,
    /// Field/value pairs, as bytes.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Delivery {
    /// Reads the entry as a job (see [`super::fields`] for which fields
    /// are whose).
    ///
    /// # Errors
    /// [`Malformed`] when the `job` field is missing or not UTF-8, a field
    /// uses the reserved prefix `ward:` on a producer's entry, or Ward's
    /// `ward:attempt` field is not a positive number.
    pub fn parse(self) -> Result<JobEntry, Malformed> {
        super::fields::parse(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(fields: &[(&[u8], &[u8])]) -> Delivery {
        Delivery {
            entry_id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_plain_xadd_entry_is_a_first_attempt_with_the_entry_id_as_job_id() {
        let j = delivery(&[
            (b"job", b"send"),
            (b"payload", b"\xff\x00"),
            (b"user_id", b"7"),
        ])
        .parse()
        .unwrap();
        assert_eq!(j.id, "1-0");
        assert_eq!(j.attempt, 1);
        assert_eq!(j.payload, b"\xff\x00");
        assert_eq!(j.extra, vec![("user_id".to_string(), b"7".to_vec())]);
    }

    #[test]
    fn a_retry_entry_keeps_its_job_id_and_attempt() {
        let j = delivery(&[
            (b"id", b"5-1"),
            (b"job", b"send"),
            (b"attempt", b"3"),
            (b"checkpoint", b"c"),
        ])
        .parse()
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("5-1", 3));
        assert_eq!(j.checkpoint.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn entries_without_a_job_are_malformed_and_keep_their_fields() {
        let m = delivery(&[(b"payload", b"p"), (b"order_id", b"9")])
            .parse()
            .unwrap_err();
        assert!(m.why.contains("no `job` field"), "{}", m.why);
        assert_eq!(m.payload, b"p");
        assert_eq!(m.extra, vec![("order_id".to_string(), b"9".to_vec())]);
    }

    #[test]
    fn a_bad_attempt_number_is_malformed() {
        let m = delivery(&[
            (b"job", b"a"),
            (b"ward:id", b"1-0"),
            (b"ward:attempt", b"zero"),
        ])
        .parse()
        .unwrap_err();
        assert!(m.why.contains("`ward:attempt`"), "{}", m.why);
    }
}
