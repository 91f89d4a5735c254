//! `[redis]`: the URL and the CA file of a TLS connection.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::defaults::DEFAULT_REDIS_URL;
use crate::config::raw::RawRedis;

/// The Redis URL (default when not given) and the `ca_file` resolved
/// against the config's folder `base`.
pub(super) fn redis(
    raw: RawRedis,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> (String, Option<PathBuf>) {
    let url = match raw.url {
        Some(url) => {
            if redis::Client::open(url.get_ref().as_str()).is_err() {
                problem(
                    url.span(),
                    format!(
                        "[redis] url `{}` is not a Redis URL; write it like \"redis://127.0.0.1:6379\" (or rediss:// for TLS)",
                        url.get_ref()
                    ),
                );
            }
            url.into_inner()
        }
        None => DEFAULT_REDIS_URL.to_string(),
    };
    let ca = raw.ca_file.map(|f| {
        let file = base.join(f.get_ref());
        match std::fs::read_to_string(&file) {
            Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
            Ok(_) => problem(
                f.span(),
                format!(
                    "[redis] ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                ),
            ),
            Err(e) => problem(
                f.span(),
                format!("[redis] ca_file {}: cannot read it: {e}", file.display()),
            ),
        }
        if !url.starts_with("rediss://") {
            problem(
                f.span(),
                "[redis] ca_file is only used with a rediss:// url; write the url as rediss://host:port for TLS, or remove ca_file".to_string(),
            );
        }
        file
    });
    (url, ca)
}
