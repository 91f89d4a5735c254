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
