//! Redis Cluster hash slots: a script or a multi-key command runs on one
//! node only if all its keys hash to one slot. Every key of queue `Q` is
//! `ward:{Q}:…` and a queue name may not contain braces, so the first
//! `{…}` of any of its keys is `{Q}`, whatever ids, upstreams or group
//! names follow; the tests below hold every key shape and every script call
//! of the store to that.
//!
//! State that is not a queue's (the audit stream `ward:audit`) is one key,
//! only ever used alone in a command.

use redis::cluster_routing::Slot;

/// The cluster hash slot of `key` (CRC16 of its hash tag, or of the whole
/// key when it has none).
#[must_use]
pub fn slot(key: impl AsRef<[u8]>) -> Slot {
    Slot::for_key(key)
}

/// The slot of `key` as a number, 0 to 16383 (what `CLUSTER KEYSLOT` says).
#[must_use]
pub fn slot_number(key: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key.as_bytes())) % 16384
}

/// The part of `key` that Redis Cluster hashes: the first non-empty `{…}`,
/// else the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|b| *b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// Keys that a single command may not take together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keys `{first}` and `{other}` hash to different cluster slots")]
pub struct CrossSlot {
    /// The first key.
    pub first: String,
    /// A key in another slot.
    pub other: String,
}

/// The one slot that all of `keys` hash to (`None` for no keys).
///
/// # Errors
/// Two keys in different slots.
pub fn one_slot<K: AsRef<[u8]>>(keys: &[K]) -> Result<Option<Slot>, CrossSlot> {
    let Some(first) = keys.first() else {
        return Ok(None);
    };
    let want = slot(first);
    for k in &keys[1..] {
        if slot(k) != want {
            return Err(CrossSlot {
                first: String::from_utf8_lossy(first.as_ref()).into_owned(),
                other: String::from_utf8_lossy(k.as_ref()).into_owned(),
            });
        }
    }
    Ok(Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::priority::Priority;
    use crate::store::Keys;

    /// Every key shape of queue `q`, with ids, upstreams and group names
    /// that try to open hash tags of their own.
    fn every_key(q: &str) -> Vec<Vec<u8>> {
        let k = Keys::new(q);
        let hostile = ["plain", "{other}", "}{", "a{b}c", ""];
        let mut keys: Vec<Vec<u8>> = [
            &k.jobs,
            &k.jobs_high,
            &k.jobs_low,
            &k.dead,
            &k.delayed,
            &k.wake,
            &k.seq,
            &k.acked,
            &k.breakers,
            &k.breaker_prefix,
            &k.record_prefix,
            &k.cancels,
            &k.control,
            &k.paused,
            &k.held,
            &k.upstream_prefix,
            &k.limits,
            &k.batches,
            &k.batches_unfinished,
            &k.progress,
            &k.grouping,
        ]
        .into_iter()
        .map(|s| s.clone().into_bytes())
        .collect();
        for p in [Priority::High, Priority::Normal, Priority::Low] {
            keys.push(k.stream(p).as_bytes().to_vec());
        }
        for id in hostile {
            for s in [
                k.record(id),
                k.history(id),
                k.job_progress(id),
                k.idempotency(id),
                k.daemon(id),
                k.schedule(id),
                k.breaker(id),
                k.upstream(id),
                k.upstream_slots(id),
                k.batch(id).0,
                k.batch(id).1,
                k.alert_claim(id, id),
            ] {
                keys.push(s.into_bytes());
            }
            let g = k.group(id, id.as_bytes());
            keys.push(g.slots);
            keys.push(g.waiting);
            keys.push(g.queued);
            keys.push(k.series(id.len() as u64 * 1_000_003).into_bytes());
        }
        // The shapes scripts build themselves, from their Lua constants.
        for (_, shape) in super::super::keys::LUA {
            keys.push(format!("ward:{{{q}}}:{shape}x").into_bytes());
        }
        keys
    }

    #[test]
    fn every_key_of_a_queue_is_in_the_queue_slot() {
        for q in [
            "emails",
            "a",
            "queue:with:colons",
            "ünïcode",
            "x".repeat(128).as_str(),
        ] {
            let keys = every_key(q);
            let got = one_slot(&keys).unwrap_or_else(|e| panic!("queue {q}: {e}"));
            assert_eq!(
                got,
                Some(slot(q)),
                "queue {q}: the slot is the queue name's"
            );
        }
    }

    #[test]
    fn slot_numbers_are_the_ones_redis_computes() {
        // `CLUSTER KEYSLOT` of these keys (an empty `{}` is no tag).
        assert_eq!(slot_number("foo"), 12182);
        assert_eq!(slot_number("q"), 11958);
        assert_eq!(slot_number("ward:{q}:jobs"), 11958);
        assert_eq!(slot_number("emails"), 3728);
        assert_eq!(slot_number("a{}b"), 13694);
        // The same slots as the client library's.
        let keys = ["foo", "ward:{q}:jobs", "a{}b", "x}y{z}", "{emails}"];
        for a in keys {
            for b in keys {
                assert_eq!(
                    slot(a) == slot(b),
                    slot_number(a) == slot_number(b),
                    "{a} {b}"
                );
            }
        }
    }

    #[test]
    fn different_queues_may_land_in_different_slots() {
        let a = Keys::new("emails");
        let b = Keys::new("reports");
        let err = one_slot(&[&a.jobs, &b.jobs]).unwrap_err();
        assert_eq!(err.other, "ward:{reports}:jobs");
        assert_eq!(one_slot::<&str>(&[]), Ok(None));
        // The audit stream is not a queue's: never in a command with one.
        assert_ne!(slot(crate::store::AUDIT_KEY), slot("ward:{audit}:jobs"));
    }

    /// Reads the store's sources: every key a script or command is given
    /// (`.key(…)`) comes from the queue's [`Keys`] (directly, or through a
    /// local bound from it), so a script's keys are one queue's and a
    /// cluster routes it to the queue's node.
    #[test]
    fn every_script_call_takes_its_keys_from_one_queue() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut files = vec![dir.join("apply/mod.rs")];
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            // This file names `.key(` only in its own checks.
            if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("slots.rs") {
                files.push(p);
            }
        }
        // Locals bound from `self.keys` (checked below, in their files).
        let derived = [
            ("ledger", "self.keys.batch("),
            ("slots", "self.keys.group("),
            ("waiting", "self.keys.group("),
            ("g", "self.keys.group("),
            ("k", "Encoder::batch(&self.keys"),
            ("held_key", "fn held_key(keys: &Keys)"),
        ];
        let mut seen = 0;
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap();
            let name = f.display();
            for (at, _) in src.match_indices(".key(") {
                let arg: String = src[at + 5..]
                    .chars()
                    .take_while(|c| *c != ')' && *c != '\n')
                    .collect();
                seen += 1;
                if arg.contains("keys.") {
                    continue;
                }
                let local = arg
                    .trim_start_matches('&')
                    .split(['(', '.'])
                    .next()
                    .unwrap_or("");
                let Some((_, source)) = derived.iter().find(|(l, _)| *l == local) else {
                    panic!("{name}: `.key({arg})` is not one of the queue's keys");
                };
                assert!(
                    src.contains(source),
                    "{name}: `{local}` is not bound from the queue's keys"
                );
            }
        }
        assert!(
            seen > 40,
            "found only {seen} `.key(` calls: did the sources move?"
        );
    }
}
