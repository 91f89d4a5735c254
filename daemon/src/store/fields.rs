//! The fields of a stream entry, and how an entry is read as a job.
//!
//! A producer writes `job`, `payload`, optionally `idempotency_key`, and any
//! correlation fields it likes (`order_id`, `user_id`, even `id` or
//! `attempt`). Ward writes entries too (a retry due at once, a promoted or a
//! requeued job), and marks its own bookkeeping with the reserved prefix
//! `ward:` ([`ENTRY`]), so a producer's field is never taken for Ward's: two
//! orders that both carry `id 42` stay two jobs, each with its entry id as
//! job id, and their `id` travels with them as a correlation field.

use super::entry::{Delivery, JobEntry, Malformed};

/// Extra (correlation) fields carried from an entry to its retries and dead
/// letter; past this many, the rest are dropped (the idempotency key never is).
pub const MAX_EXTRA_FIELDS: usize = 32;

/// The prefix of every field Ward writes for itself on a stream entry.
/// Producers must not use it: an entry of theirs that does is dead-lettered
/// with a reason naming the field.
pub const RESERVED_PREFIX: &str = "ward:";

/// Prepended to a correlation field's name where it would clash with one of
/// Ward's: in a job record (`x:order_id`, beside the record's own fields),
/// and in a dead-letter entry for a field named like one of its own
/// (`x:id`).
pub const EXTRA_PREFIX: &str = "x:";

/// The producer's field that carries an idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// The producer's field that names the batch a job is a member of (see
/// `store/batches.rs`); a correlation field, carried like the others.
pub const BATCH: &str = "batch";

/// Ward's bookkeeping fields on the entries it writes, by Lua name (the
/// scripts that write entries read this table from their preamble).
pub const ENTRY: [(&str, &str); 8] = [
    ("id", "ward:id"),
    ("attempt", "ward:attempt"),
    ("first_at", "ward:first_at"),
    ("last_delay_ms", "ward:last_delay_ms"),
    ("lease_expiries", "ward:lease_expiries"),
    ("checkpoint", "ward:checkpoint"),
    // On a first entry, written by `ward_enqueue` beside the producer-style
    // `batch` field: this member is counted in its batch's ledger already
    // (a plain XADD's is counted when a daemon first reads it).
    ("batch", "ward:batch"),
    // On a first entry with an idempotency key, written by `ward_enqueue`
    // (and APPLY's follow-ons) beside the `idempotency_key` field: the key
    // was set to this entry as it was added, so the daemon that first
    // reads it has nothing to claim. A producer that writes it on a plain
    // XADD gives up the claim, and so deduplication, for that entry.
    ("key_claimed", "ward:key_claimed"),
];

/// The reserved name of bookkeeping field `lua_name` (one of [`ENTRY`]).
fn reserved(lua_name: &str) -> &'static str {
    ENTRY
        .iter()
        .find(|(n, _)| *n == lua_name)
        .map_or("", |(_, f)| f)
}

/// What the fields of one entry say, before it is judged.
#[derive(Default)]
struct Read {
    job: Option<String>,
    payload: Vec<u8>,
    key: Option<String>,
    /// Ward's bookkeeping fields, by Lua name, as written.
    own: Vec<(&'static str, Vec<u8>)>,
    extra: Vec<(String, Vec<u8>)>,
    problems: Vec<String>,
}

/// Reads `d` as a job. See [`Delivery::parse`].
pub(super) fn parse(d: Delivery) -> Result<JobEntry, Malformed> {
    let legacy = is_legacy(&d);
    let mut r = Read::default();
    for (name, value) in d.fields {
        let Ok(name) = String::from_utf8(name) else {
            r.problems.push("a field name is not UTF-8".to_string());
            continue;
        };
        read_field(&mut r, name, value, legacy);
    }
    let is_ward_entry = r.own.iter().any(|(n, _)| *n == "id");
    // `ward:batch` and `ward:key_claimed` alone are `ward_enqueue`'s marks
    // on a first entry.
    if !is_ward_entry
        && let Some((n, _)) = r
            .own
            .iter()
            .find(|(n, _)| !matches!(*n, "batch" | "key_claimed"))
    {
        r.problems.push(format!(
            "the field `{}` is reserved: names starting with `{RESERVED_PREFIX}` are Ward's own; rename it",
            reserved(n)
        ));
    }
    if r.job.is_none() && r.problems.is_empty() {
        r.problems.push(
            "the entry has no `job` field; enqueue with `XADD ward:{Q}:jobs * job <type> payload <bytes>`"
                .to_string(),
        );
    }
    match r.job {
        Some(job) if r.problems.is_empty() => {
            let own = |n: &str| r.own.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
            let number = |n: &str| {
                own(n).and_then(|v| {
                    std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                })
            };
            let attempt = match own("attempt") {
                None => 1,
                Some(v) => match std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                {
                    Some(n) if n >= 1 => n,
                    _ => {
                        return Err(malformed(
                            d.entry_id,
                            (!is_ward_entry).then(|| r.key.clone()).flatten(),
                            format!(
                                "the `{}` field `{}` is not a positive number",
                                reserved("attempt"),
                                String::from_utf8_lossy(&v)
                            ),
                            r.payload,
                            r.extra,
                        ));
                    }
                },
            };
            let key_claimed = !is_ward_entry && r.key.is_some() && own("key_claimed").is_some();
            Ok(JobEntry {
                id: own("id")
                    .and_then(|v| String::from_utf8(v).ok())
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| d.entry_id.clone()),
                entry_id: d.entry_id,
                job,
                payload: r.payload,
                attempt,
                idempotency_key: r.key,
                checkpoint: own("checkpoint"),
                first_at: number("first_at"),
                last_delay_ms: number("last_delay_ms"),
                lease_expiries: number("lease_expiries")
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                key_claimed,
                extra: r.extra,
            })
        }
        job => {
            let mut extra = r.extra;
            if let Some(job) = job {
                extra.push(("job".to_string(), job.into_bytes()));
            }
            Err(malformed(
                d.entry_id,
                (!is_ward_entry).then_some(r.key).flatten(),
                r.problems.join("; "),
                r.payload,
                extra,
            ))
        }
    }
}

fn read_field(r: &mut Read, name: String, value: Vec<u8>, legacy: bool) {
    let own = ENTRY
        .iter()
        .find(|(lua, field)| name == *field || (legacy && name == *lua));
    if let Some((lua, _)) = own {
        r.own.push((lua, value));
        return;
    }
    match name.as_str() {
        "job" => match String::from_utf8(value) {
            Ok(j) if !j.is_empty() => r.job = Some(j),
            _ => r
                .problems
                .push("the `job` field is empty or not UTF-8".to_string()),
        },
        "payload" => r.payload = value,
        _ if name.starts_with(RESERVED_PREFIX) => {
            r.problems.push(format!(
                "the field `{name}` is reserved: names starting with `{RESERVED_PREFIX}` are Ward's own; rename it"
            ));
        }
        // The batch, like the key, travels whatever the cap: a member that
        // lost it on a retry would never leave its batch's count.
        BATCH => r.extra.push((name, value)),
        IDEMPOTENCY_KEY => {
            // An empty key is no key: nothing to deduplicate on.
            let key = String::from_utf8(value.clone())
                .ok()
                .filter(|k| !k.is_empty());
            if key.is_some() {
                r.key = key;
                // Carried to retries and dead letters whatever the cap.
                r.extra.push((name, value));
            }
        }
        _ if r.extra.len() < MAX_EXTRA_FIELDS => r.extra.push((name, value)),
        _ => {}
    }
}

/// An entry written by a Ward from before the `ward:` prefix: it carries
/// `id` and `attempt`, and its `id` is a Ward job id (an entry id, or
/// `d<ms>-<n>` for a job that started delayed). Read with the old names so
/// an upgrade mid-retry loses nothing; a producer's `id` rarely looks so.
fn is_legacy(d: &Delivery) -> bool {
    let has = |n: &[u8]| d.fields.iter().find(|(k, _)| k == n).map(|(_, v)| v);
    if d.fields
        .iter()
        .any(|(k, _)| k.starts_with(RESERVED_PREFIX.as_bytes()))
    {
        return false;
    }
    match (has(b"id"), has(b"attempt")) {
        (Some(id), Some(_)) => looks_like_job_id(id),
        _ => false,
    }
}

fn looks_like_job_id(id: &[u8]) -> bool {
    let id = id.strip_prefix(b"d").unwrap_or(id);
    let mut parts = id.splitn(2, |b| *b == b'-');
    let (Some(ms), Some(seq)) = (parts.next(), parts.next()) else {
        return false;
    };
    !ms.is_empty()
        && !seq.is_empty()
        && ms.iter().all(u8::is_ascii_digit)
        && seq.iter().all(u8::is_ascii_digit)
}

fn malformed(
    entry_id: String,
    unclaimed_key: Option<String>,
    why: String,
    payload: Vec<u8>,
    extra: Vec<(String, Vec<u8>)>,
) -> Malformed {
    Malformed {
        entry_id,
        why,
        payload,
        extra,
        unclaimed_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_fields(fields: &[(&str, &str)]) -> Result<JobEntry, Malformed> {
        Delivery {
            entry_id: "7-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
        .parse()
    }

    #[test]
    fn a_producers_id_and_attempt_are_correlation_fields_not_wards() {
        let j = parse_fields(&[
            ("job", "send"),
            ("id", "42"),
            ("attempt", "5"),
            ("first_at", "1"),
            ("lease_expiries", "4294967295"),
        ])
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("7-0", 1));
        assert_eq!((j.first_at, j.lease_expiries), (None, 0));
        let names: Vec<&str> = j.extra.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["id", "attempt", "first_at", "lease_expiries"]);
    }

    #[test]
    fn wards_own_entries_carry_their_bookkeeping_under_the_reserved_prefix() {
        let j = parse_fields(&[
            ("ward:id", "5-1"),
            ("job", "send"),
            ("ward:attempt", "3"),
            ("ward:checkpoint", "c"),
            ("ward:lease_expiries", "2"),
            ("id", "42"),
        ])
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt, j.lease_expiries), ("5-1", 3, 2));
        assert_eq!(j.checkpoint.as_deref(), Some(&b"c"[..]));
        assert_eq!(j.extra, vec![("id".to_string(), b"42".to_vec())]);
    }

    #[test]
    fn a_reserved_field_on_a_producers_entry_is_named_in_the_dead_letter() {
        let m = parse_fields(&[("job", "send"), ("ward:attempt", "2")]).unwrap_err();
        assert!(m.why.contains("`ward:attempt` is reserved"), "{}", m.why);
        let m = parse_fields(&[("job", "send"), ("ward:mine", "x")]).unwrap_err();
        assert!(m.why.contains("`ward:mine` is reserved"), "{}", m.why);
    }

    #[test]
    fn ward_enqueues_batch_mark_alone_is_not_a_producers_reserved_field() {
        let j = parse_fields(&[("job", "send"), ("batch", "b1"), ("ward:batch", "b1")]).unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("7-0", 1));
        assert_eq!(j.extra, vec![("batch".to_string(), b"b1".to_vec())]);
        let m = parse_fields(&[("job", "send"), ("ward:batch", "b"), ("ward:attempt", "2")])
            .unwrap_err();
        assert!(m.why.contains("`ward:attempt` is reserved"), "{}", m.why);
    }

    #[test]
    fn ward_enqueues_key_mark_spares_only_a_first_keyed_entry_its_claim() {
        let marked = [
            ("job", "send"),
            ("idempotency_key", "k"),
            ("ward:key_claimed", "1"),
        ];
        let j = parse_fields(&marked).unwrap();
        assert!(j.key_claimed && j.is_first_delivery());
        assert_eq!(j.idempotency_key.as_deref(), Some("k"));
        // No key: nothing was set, whatever the mark says.
        let j = parse_fields(&[("job", "send"), ("ward:key_claimed", "1")]).unwrap();
        assert!(!j.key_claimed);
        // An entry Ward wrote (a retry, a job moved under a new id) is
        // claimed as before, mark or not.
        let mut retry = marked.to_vec();
        retry.extend([("ward:id", "1-0"), ("ward:attempt", "2")]);
        assert!(!parse_fields(&retry).unwrap().key_claimed);
        let j = parse_fields(&[("job", "send"), ("idempotency_key", "k")]).unwrap();
        assert!(!j.key_claimed);
    }

    #[test]
    fn the_batch_is_read_past_the_extra_field_cap() {
        let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let mut fields: Vec<(&str, &str)> = vec![("job", "send")];
        fields.extend(names.iter().map(|n| (n.as_str(), "v")));
        fields.push(("batch", "b1"));
        let j = parse_fields(&fields).unwrap();
        assert!(j.extra.iter().any(|(k, v)| k == "batch" && v == b"b1"));
    }

    #[test]
    fn an_empty_idempotency_key_is_no_key() {
        let j = parse_fields(&[("job", "send"), ("idempotency_key", "")]).unwrap();
        assert_eq!(j.idempotency_key, None);
        assert!(j.extra.is_empty());
    }

    #[test]
    fn the_idempotency_key_is_read_past_the_extra_field_cap() {
        let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let mut fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        fields.push(("job", "send"));
        fields.push(("idempotency_key", "k-1"));
        let j = parse_fields(&fields).unwrap();
        assert_eq!(j.idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(
            j.extra.len(),
            MAX_EXTRA_FIELDS + 1,
            "the key rides along too"
        );
    }

    #[test]
    fn entries_of_an_older_ward_are_still_read_with_their_old_names() {
        let j = parse_fields(&[
            ("id", "d1700000000000-3"),
            ("job", "send"),
            ("attempt", "2"),
            ("first_at", "1700000000001"),
        ])
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("d1700000000000-3", 2));
        assert_eq!(j.first_at, Some(1_700_000_000_001));
    }

    #[test]
    fn a_plain_xadd_entry_is_a_first_attempt_with_its_bytes_and_fields() {
        let j = Delivery {
            entry_id: "1-0".into(),
            fields: vec![
                (b"job".to_vec(), b"send".to_vec()),
                (b"payload".to_vec(), b"\xff\x00".to_vec()),
                (b"user_id".to_vec(), b"7".to_vec()),
            ],
        }
        .parse()
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("1-0", 1));
        assert_eq!(j.payload, b"\xff\x00");
        assert_eq!(j.extra, vec![("user_id".to_string(), b"7".to_vec())]);
    }

    #[test]
    fn entries_without_a_job_are_malformed_and_keep_their_fields() {
        let m = parse_fields(&[("payload", "p"), ("order_id", "9")]).unwrap_err();
        assert!(m.why.contains("no `job` field"), "{}", m.why);
        assert_eq!(m.payload, b"p");
        assert_eq!(m.extra, vec![("order_id".to_string(), b"9".to_vec())]);
    }

    #[test]
    fn a_bad_attempt_number_on_wards_own_entry_is_malformed() {
        let m = parse_fields(&[("job", "a"), ("ward:id", "1-0"), ("ward:attempt", "zero")])
            .unwrap_err();
        assert!(m.why.contains("`ward:attempt`"), "{}", m.why);
    }

    #[test]
    fn only_a_producers_malformed_entry_has_a_key_to_give_back() {
        let m =
            parse_fields(&[("job", "a"), ("idempotency_key", "k"), ("ward:x", "1")]).unwrap_err();
        assert_eq!(m.unclaimed_key.as_deref(), Some("k"));
        // A job Ward wrote this entry for has run already: its key stays.
        let m = parse_fields(&[
            ("job", "a"),
            ("idempotency_key", "k"),
            ("ward:id", "1-0"),
            ("ward:attempt", "0"),
        ])
        .unwrap_err();
        assert_eq!(m.unclaimed_key, None);
        let m = parse_fields(&[("payload", "p"), ("idempotency_key", "")]).unwrap_err();
        assert_eq!(m.unclaimed_key, None, "an empty key is no key");
    }
}
