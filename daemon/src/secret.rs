//! Where a secret's value comes from, and what replaces it wherever it
//! would be shown. Both the job types' granted secrets and the config's
//! `secret:NAME` values are read here. A leaf: it imports nothing from the
//! crate.

use std::ffi::OsString;
use std::path::Path;

/// What a secret's value is replaced with in logs, failures, records,
/// dead letters and alerts.
pub const REDACTED: &str = "[redacted]";

/// Whether `name` can name a `secret:NAME` value: letters, digits and `_`,
/// not starting with a digit (an environment variable name, and a safe
/// file name).
#[must_use]
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Secret `name`: the environment variable `name` if it is set and not
/// empty, else the file `$CREDENTIALS_DIRECTORY/name` (systemd's
/// `LoadCredential=`) without one trailing newline. `None` when neither
/// holds it.
#[must_use]
pub fn read(name: &str) -> Option<String> {
    read_from(
        name,
        std::env::var(name).ok(),
        std::env::var_os("CREDENTIALS_DIRECTORY"),
    )
}

/// [`read`] given the environment variable's value and the credentials
/// directory (tests cannot set the environment: edition 2024 makes that
/// unsafe).
#[must_use]
pub fn read_from(
    name: &str,
    env: Option<String>,
    credentials_dir: Option<OsString>,
) -> Option<String> {
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        return Some(v);
    }
    let mut v = std::fs::read_to_string(Path::new(&credentials_dir?).join(name)).ok()?;
    if v.ends_with('\n') {
        v.pop();
        if v.ends_with('\r') {
            v.pop();
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_variable_falls_through_to_the_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("TOKEN"), "from-file\r\n").unwrap();
        let creds = || Some(dir.path().as_os_str().to_owned());
        assert_eq!(
            read_from("TOKEN", Some(String::new()), creds()).as_deref(),
            Some("from-file")
        );
        assert_eq!(
            read_from("TOKEN", Some("from-env".into()), creds()).as_deref(),
            Some("from-env")
        );
        assert_eq!(read_from("NONE", None, creds()), None);
        assert_eq!(read_from("TOKEN", None, None), None);
    }
}
