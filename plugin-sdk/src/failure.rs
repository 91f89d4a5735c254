//! How an attempt fails, and how the host should retry it.

use std::fmt;
use std::time::Duration;

use crate::bindings::ward::plugin::types as wit;

/// How a failure should be treated by the host's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Likely to succeed if tried again soon (timeouts, 502/503/504).
    Transient,
    /// Will succeed later, after the upstream recovers (429, quota); retried with a longer delay.
    Recoverable,
    /// Will never succeed as it is (validation errors, 400, missing records); never retried.
    Permanent,
}

impl FailureClass {
    /// The class's name as written in the WIT (`transient`, `recoverable`, `permanent`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Recoverable => "recoverable",
            Self::Permanent => "permanent",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<FailureClass> for wit::FailureClass {
    fn from(class: FailureClass) -> Self {
        match class {
            FailureClass::Transient => Self::Transient,
            FailureClass::Recoverable => Self::Recoverable,
            FailureClass::Permanent => Self::Permanent,
        }
    }
}

/// Why an attempt failed: the `Err` side of a plugin's handler.
///
/// Start from [`Failure::transient`], [`Failure::recoverable`] or
/// [`Failure::permanent`], then add details with the builder methods:
///
/// ```
/// use std::time::Duration;
/// use ward_plugin_sdk::Failure;
///
/// let failure = Failure::recoverable("rate limited")
///     .code("http-429")
///     .upstream("mailgun")
///     .retry_after(Duration::from_secs(30));
/// assert_eq!(failure.retry_after_ms(), Some(30_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    class: FailureClass,
    message: String,
    code: Option<String>,
    upstream: Option<String>,
    retry_after_ms: Option<u64>,
}

impl Failure {
    /// A failure of the given class with a human-readable message and no details.
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            code: None,
            upstream: None,
            retry_after_ms: None,
        }
    }

    /// A failure that is likely to go away if the attempt is retried soon
    /// (timeouts, 502/503/504).
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Transient, message)
    }

    /// A failure that will go away once the upstream recovers (429, quota);
    /// the host waits longer before retrying.
    pub fn recoverable(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Recoverable, message)
    }

    /// A failure that retrying cannot fix (validation errors, 400, missing
    /// records); the job goes straight to the dead-letter stream.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Permanent, message)
    }

    /// Sets a short machine-readable code, e.g. `"http-503"` or `"smtp-421"`.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Names the dependency that failed; the failure then counts against that
    /// upstream's circuit breaker.
    #[must_use]
    pub fn upstream(mut self, upstream: impl Into<String>) -> Self {
        self.upstream = Some(upstream.into());
        self
    }

    /// Passes on the upstream's own word on when to come back (e.g. from a
    /// `Retry-After` header).
    ///
    /// Stored in whole milliseconds, rounded up so that a short but non-zero
    /// delay never turns into "retry now", and saturating at `u64::MAX`.
    #[must_use]
    pub fn retry_after(mut self, delay: Duration) -> Self {
        let ms = delay.as_millis() + u128::from(!delay.subsec_nanos().is_multiple_of(1_000_000));
        self.retry_after_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
        self
    }

    /// How the host should treat this failure.
    pub fn class(&self) -> FailureClass {
        self.class
    }

    /// The human-readable explanation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The machine-readable code set with [`Failure::code`], if any.
    pub fn error_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The upstream set with [`Failure::upstream`], if any.
    pub fn upstream_name(&self) -> Option<&str> {
        self.upstream.as_deref()
    }

    /// The delay set with [`Failure::retry_after`], in milliseconds, if any.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after_ms
    }
}

impl fmt::Display for Failure {
    /// `class: message`, followed by whichever details are set, e.g.
    /// `recoverable: rate limited (code http-429, upstream mailgun, retry after 30000 ms)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)?;
        let details = [
            self.code.as_ref().map(|c| format!("code {c}")),
            self.upstream.as_ref().map(|u| format!("upstream {u}")),
            self.retry_after_ms.map(|ms| format!("retry after {ms} ms")),
        ];
        let details: Vec<String> = details.into_iter().flatten().collect();
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

impl From<Failure> for wit::Failure {
    fn from(failure: Failure) -> Self {
        Self {
            class: failure.class.into(),
            message: failure.message,
            code: failure.code,
            upstream: failure.upstream,
            retry_after_ms: failure.retry_after_ms,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A panic is how a test reports a wrong result.
mod tests {
    use super::*;

    #[test]
    fn constructors_set_the_class_and_nothing_else() {
        for (failure, class) in [
            (Failure::transient("t"), FailureClass::Transient),
            (Failure::recoverable("r"), FailureClass::Recoverable),
            (Failure::permanent("p"), FailureClass::Permanent),
        ] {
            assert_eq!(failure.class(), class);
            assert_eq!(failure.error_code(), None);
            assert_eq!(failure.upstream_name(), None);
            assert_eq!(failure.retry_after_ms(), None);
        }
        assert_eq!(Failure::transient(String::from("owned")).message(), "owned");
    }

    #[test]
    fn builders_fill_in_the_details() {
        let failure = Failure::recoverable("rate limited")
            .code("http-429")
            .upstream(String::from("mailgun"))
            .retry_after(Duration::from_millis(1500));
        assert_eq!(failure.class(), FailureClass::Recoverable);
        assert_eq!(failure.message(), "rate limited");
        assert_eq!(failure.error_code(), Some("http-429"));
        assert_eq!(failure.upstream_name(), Some("mailgun"));
        assert_eq!(failure.retry_after_ms(), Some(1500));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_milliseconds() {
        let ms = |d| Failure::transient("x").retry_after(d).retry_after_ms();
        assert_eq!(ms(Duration::ZERO), Some(0));
        assert_eq!(ms(Duration::from_nanos(1)), Some(1));
        assert_eq!(ms(Duration::from_micros(1500)), Some(2));
        assert_eq!(ms(Duration::from_secs(30)), Some(30_000));
    }

    #[test]
    fn retry_after_saturates() {
        let failure = Failure::transient("x").retry_after(Duration::MAX);
        assert_eq!(failure.retry_after_ms(), Some(u64::MAX));
    }

    #[test]
    fn display_lists_the_details_that_are_set() {
        assert_eq!(
            Failure::transient("timed out").to_string(),
            "transient: timed out"
        );
        let failure = Failure::recoverable("rate limited")
            .code("http-429")
            .retry_after(Duration::from_secs(1));
        assert_eq!(
            failure.to_string(),
            "recoverable: rate limited (code http-429, retry after 1000 ms)"
        );
        let failure = Failure::permanent("no such user").upstream("crm");
        assert_eq!(
            failure.to_string(),
            "permanent: no such user (upstream crm)"
        );
    }

    #[test]
    fn converts_into_the_generated_record() {
        let raw = wit::Failure::from(
            Failure::permanent("bad")
                .code("c")
                .upstream("u")
                .retry_after(Duration::from_millis(5)),
        );
        assert_eq!(raw.class, wit::FailureClass::Permanent);
        assert_eq!(raw.message, "bad");
        assert_eq!(raw.code.as_deref(), Some("c"));
        assert_eq!(raw.upstream.as_deref(), Some("u"));
        assert_eq!(raw.retry_after_ms, Some(5));
    }

    #[test]
    fn every_class_maps_to_the_same_wit_case() {
        assert_eq!(
            wit::FailureClass::from(FailureClass::Transient),
            wit::FailureClass::Transient
        );
        assert_eq!(
            wit::FailureClass::from(FailureClass::Recoverable),
            wit::FailureClass::Recoverable
        );
        assert_eq!(
            wit::FailureClass::from(FailureClass::Permanent),
            wit::FailureClass::Permanent
        );
    }
}
