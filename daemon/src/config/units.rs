//! The units config values are written in: durations (`"30s"`) and sizes
//! (`"64MiB"`), and the serde adapters that parse them while keeping the
//! value's place in the file for messages.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// Parses a size as written in configs: `"64MiB"`, `"512KiB"`, `"1GB"`, `"4096"`.
///
/// # Errors
/// A message quoting the input and showing the accepted form.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let invalid = || format!("invalid size `{s}`; write it like \"64MiB\", \"512KiB\" or \"1GiB\"");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_size: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return Err(invalid()),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit_size))
        .ok_or_else(invalid)
}

/// Parses a duration as written in configs and on the command line
/// (`"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`).
///
/// # Errors
/// Returns a message that quotes the input and shows the accepted form.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration `{s}` ({e}); write it like \"250ms\", \"30s\" or \"5m\"")
    })
}

/// Serde adapter: an optional duration string, parsed, with its span.
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Spanned<Duration>>, D::Error> {
    let raw = Spanned::<String>::deserialize(d)?;
    let span = raw.span();
    let parsed = parse_duration(raw.get_ref()).map_err(serde::de::Error::custom)?;
    Ok(Some(Spanned::new(span, parsed)))
}

/// Serde adapter: an optional duration string, parsed, without its span
/// (for tables whose problems are reported at the table's line).
pub(crate) fn opt_plain_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let raw = String::deserialize(d)?;
    parse_duration(&raw)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }
}
