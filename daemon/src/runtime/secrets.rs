//! Keeping a job type's granted secrets out of what an attempt leaves
//! behind: failure texts, captured output, results and checkpoints.

use std::collections::BTreeMap;

use crate::secret::REDACTED;

/// `text` with every value of `secrets` replaced by [`REDACTED`].
#[must_use]
pub fn redact(text: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for value in secrets.values() {
        // An empty value would match everywhere and hides nothing.
        if !value.is_empty() && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), REDACTED);
        }
    }
    out
}

/// [`redact`] for text that was cut short before it could be redacted
/// (captured output stops at its cap): a secret straddling the cut left
/// only its start behind, which no longer matches, so a tail that begins
/// any secret is hidden too.
#[must_use]
pub fn redact_cut(text: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut out = redact(text, secrets);
    let longest_tail = secrets
        .values()
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            (1..v.len())
                .rev()
                .filter(|&n| v.is_char_boundary(n))
                .find(|&n| out.ends_with(&v[..n]))
        })
        .max();
    if let Some(n) = longest_tail {
        out.truncate(out.len() - n);
        out.push_str(REDACTED);
    }
    out
}

/// `bytes` with every value of `secrets` replaced by [`REDACTED`]: results
/// and checkpoints are bytes, and are stored in Redis like failure texts.
#[must_use]
pub fn redact_bytes(bytes: Vec<u8>, secrets: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = bytes;
    for value in secrets.values().map(String::as_bytes) {
        if value.is_empty() || !out.windows(value.len()).any(|w| w == value) {
            continue;
        }
        let mut replaced = Vec::with_capacity(out.len());
        let mut rest = &out[..];
        while let Some(at) = rest.windows(value.len()).position(|w| w == value) {
            replaced.extend_from_slice(&rest[..at]);
            replaced.extend_from_slice(REDACTED.as_bytes());
            rest = &rest[at + value.len()..];
        }
        replaced.extend_from_slice(rest);
        out = replaced;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([("TOKEN".to_string(), "s3cr3t-value".to_string())])
    }

    #[test]
    fn a_secret_cut_in_two_by_the_output_cap_leaves_nothing_of_itself() {
        assert_eq!(
            redact_cut("token=s3cr3t-va", &secrets()),
            "token=[redacted]"
        );
        assert_eq!(
            redact_cut("s3cr3t-value and s3", &secrets()),
            "[redacted] and [redacted]"
        );
        assert_eq!(redact_cut("nothing here", &secrets()), "nothing here");
    }

    #[test]
    fn results_and_checkpoints_are_redacted_byte_for_byte() {
        let bytes = b"\xff{\"t\":\"s3cr3t-value\"}s3cr3t-value".to_vec();
        assert_eq!(
            redact_bytes(bytes, &secrets()),
            b"\xff{\"t\":\"[redacted]\"}[redacted]".to_vec()
        );
        assert_eq!(redact_bytes(b"plain".to_vec(), &secrets()), b"plain");
    }
}
