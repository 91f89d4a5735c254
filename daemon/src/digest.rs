//! The one digest Ward shows (plugin identities, payload markers, result
//! digests). A leaf: it imports nothing from the crate.

use sha2::{Digest, Sha256};

/// sha256 of `bytes`, lower-case hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
