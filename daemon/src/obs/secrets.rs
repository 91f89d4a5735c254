//! Secrets the daemon knows, and keeping them out of what it sends.
//!
//! A config value written `secret:NAME` is read when the daemon starts from
//! the environment variable `NAME`, or else from the file
//! `$CREDENTIALS_DIRECTORY/NAME` (what systemd's `LoadCredential=NAME:/path`
//! provides). Every value read this way is registered with the process-wide
//! redactor, and [`redact`] replaces it with `[redacted]` in any text that
//! leaves the daemon (alert bodies and webhook errors). A job type's granted
//! secrets are redacted by its sandbox instead ([`crate::runtime::Sandbox`]).

use std::sync::{LazyLock, RwLock};

// The name check moved to a leaf; kept reachable here for callers.
use crate::secret::REDACTED;
pub use crate::secret::valid_name;

/// Reads secret `name`: the environment variable `name` if it is set and
/// not empty, else the file `$CREDENTIALS_DIRECTORY/name` (one trailing
/// newline removed). The value is registered for [`redact`].
///
/// # Errors
/// A message saying where the secret was looked for.
pub fn resolve(name: &str) -> Result<String, String> {
    resolve_from(
        name,
        std::env::var(name).ok(),
        std::env::var_os("CREDENTIALS_DIRECTORY"),
    )
}

/// [`resolve`] given the environment variable's value and the credentials
/// directory.
fn resolve_from(
    name: &str,
    env: Option<String>,
    credentials_dir: Option<std::ffi::OsString>,
) -> Result<String, String> {
    if !valid_name(name) {
        return Err(format!("`{name}` is not a valid secret name"));
    }
    let Some(value) = crate::secret::read_from(name, env, credentials_dir.clone()) else {
        let from_file = credentials_dir.map(|d| std::path::Path::new(&d).join(name));
        return Err(format!(
            "secret `{name}` is not set: set the environment variable {name}, or provide the file $CREDENTIALS_DIRECTORY/{name} (systemd: LoadCredential={name}:/path/to/file){}",
            match &from_file {
                Some(p) => format!("; {} is not readable", p.display()),
                None => String::new(),
            }
        ));
    };
    if value.is_empty() {
        return Err(format!("secret `{name}` is empty"));
    }
    register(&value);
    Ok(value)
}

static KNOWN: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Registers a secret value: from now on [`redact`] hides it. Empty values
/// are ignored.
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(mut known) = KNOWN.write()
        && !known.iter().any(|k| k == value)
    {
        known.push(value.to_string());
        // Longest first, so a secret that contains another is hidden whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every registered secret value replaced by `[redacted]`.
#[must_use]
pub fn redact(text: &str) -> String {
    let Ok(known) = KNOWN.read() else {
        // A writer panicked mid-update; say nothing rather than leak.
        return REDACTED.to_string();
    };
    redact_with(&known, text)
}

fn redact_with(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_environment_variable_names() {
        assert!(valid_name("ALERT_TOKEN") && valid_name("_x1"));
        assert!(!valid_name("") && !valid_name("1A") && !valid_name("a b") && !valid_name("../x"));
    }

    #[test]
    fn every_occurrence_of_every_secret_is_redacted_longest_first() {
        let secrets = vec!["hunter2-long".to_string(), "hunter2".to_string()];
        assert_eq!(
            redact_with(&secrets, "a hunter2-long b hunter2 c hunter2"),
            "a [redacted] b [redacted] c [redacted]"
        );
        assert_eq!(redact_with(&secrets, "nothing here"), "nothing here");
    }

    #[test]
    fn secrets_come_from_the_credentials_directory_when_not_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("WARD_UNIT_TEST_CRED"), "s3cr3t-from-file\n").unwrap();
        // Edition 2024 makes set_var unsafe (and unsafe code is forbidden):
        // the lookups are passed in instead.
        let got = resolve_in("WARD_UNIT_TEST_CRED", None, Some(dir.path()));
        assert_eq!(got.as_deref(), Ok("s3cr3t-from-file"));
        let missing = resolve_in("WARD_UNIT_TEST_NONE", None, Some(dir.path())).unwrap_err();
        assert!(
            missing.contains("LoadCredential=WARD_UNIT_TEST_NONE"),
            "{missing}"
        );
        assert_eq!(
            resolve_in("X", Some("from-env"), Some(dir.path())).as_deref(),
            Ok("from-env"),
            "the environment wins"
        );
        assert_eq!(redact("a s3cr3t-from-file b"), "a [redacted] b");
    }

    /// [`resolve`] with the environment lookups replaced.
    fn resolve_in(
        name: &str,
        env: Option<&str>,
        creds: Option<&std::path::Path>,
    ) -> Result<String, String> {
        super::resolve_from(
            name,
            env.map(str::to_string),
            creds.map(|p| p.as_os_str().to_owned()),
        )
    }
}
