//! The APPLY encoder's unit tests: the layout it writes, read back as
//! `apply.lua` reads it.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::job::{DeadReason, Failure, FailureClass, JobEntry};
use crate::transition::{FollowOn, Ran};

/// What is wrong with how `lua` reads APPLY's layout: a part or field
/// name the layout does not have, an ARGV or KEYS position written as a
/// number, or a field it never reads.
fn problems(lua: &str) -> Vec<String> {
    let code: Vec<&str> = lua
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect();
    let code = code.join("\n");
    let mut out = Vec::new();
    let mut read = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = code.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let word_len = rest[start..]
            .find(|c| !ident(c))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        rest = &rest[start + word_len..];
        // A layout local is `<PART>_<field>` (or `<PART>_N`): an upper-case
        // prefix, then the field's lower-case name.
        let upper = word
            .find(|c: char| c.is_ascii_lowercase())
            .map_or(word, |k| &word[..k]);
        let Some(part) = upper.strip_suffix('_').or_else(|| word.strip_suffix("_N")) else {
            // The preamble's own tables are read as `ENTRY.x` (see `script.rs`).
            if rest.starts_with('.')
                && !word.bytes().any(|b| b.is_ascii_lowercase())
                && word != "ENTRY"
            {
                out.push(format!(
                    "{word}.: not a table (the layout is locals: `{word}_<field>`)"
                ));
            }
            continue;
        };
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            continue;
        }
        let field = &word[part.len() + 1..];
        match LAYOUTS.iter().find(|l| l.table == part) {
            Some(_) if field == "N" => {}
            Some(l) if l.fields.contains(&field) => {
                read.insert((part.to_string(), field.to_string()));
            }
            Some(_) => out.push(format!("{word}: no such field")),
            None if field.bytes().any(|b| b.is_ascii_lowercase()) || field == "N" => {
                out.push(format!("{word}: no such part of the layout"));
            }
            None => {}
        }
    }
    for array in ["ARGV[", "KEYS["] {
        for (at, _) in code.match_indices(array) {
            let index = &code[at + array.len()..];
            let index = &index[..index.find(']').unwrap_or(index.len())];
            let named = LAYOUTS
                .iter()
                .any(|l| index.contains(&format!("{}_", l.table)));
            // `ARGV[i]` is a completion's kind, which starts it.
            if !named && index != "i" {
                out.push(format!(
                    "{array}{index}]: a position not read through the layout"
                ));
            }
        }
    }
    for l in &LAYOUTS {
        for f in l.fields {
            if !read.contains(&(l.table.to_string(), (*f).to_string())) {
                out.push(format!("{}_{f}: written, never read", l.table));
            }
        }
    }
    out
}

#[test]
fn apply_lua_reads_every_field_through_the_encoders_layout() {
    let lua = format!("{FOLLOW_ON_LUA}{APPLY}");
    assert_eq!(problems(&lua), Vec::<String>::new());
}

#[test]
fn the_layout_check_fails_on_a_field_the_encoder_does_not_write() {
    for (from, to) in [
        ("FULL_reason", "FULL_reasons"),
        ("ARGV[i + FULL_code]", "ARGV[i + 9]"),
        ("KEYS[kc + CKEY_idem]", "KEYS[kc + 3]"),
        ("HEAD_wake", "HED_wake"),
        ("HEAD_wake", "HEAD.wake"),
        ("FRESH_N", "FRESHN_N"),
    ] {
        assert!(APPLY.contains(from), "{from}");
        let changed = APPLY.replacen(from, to, 1);
        assert!(
            !problems(&changed).is_empty(),
            "{from} -> {to} went unnoticed"
        );
    }
}

#[test]
fn a_dead_letter_is_written_with_exactly_the_dead_entry_fields() {
    let body = &APPLY[APPLY.find("local function dead_letter").unwrap()..];
    let list = &body[body.find("local f = {").unwrap()..];
    let list = &list[..list.find('}').unwrap()];
    // The names are the quoted words: `{'id', c.id, 'job', c.job, ...`.
    let names: BTreeSet<&str> = list.split('\'').skip(1).step_by(2).collect();
    let want: BTreeSet<&str> = crate::store::DEAD_ENTRY_FIELDS.into_iter().collect();
    assert_eq!(names, want);
}

fn completion(
    entry: &str,
    id: &str,
    idempotency_key: Option<&str>,
    transition: Transition,
    outcome: Outcome,
) -> Completion {
    completion_with(entry, id, idempotency_key, transition, outcome, None)
}

/// [`completion`] with one more correlation field, first.
fn completion_with(
    entry: &str,
    id: &str,
    idempotency_key: Option<&str>,
    transition: Transition,
    outcome: Outcome,
    field: Option<(String, Vec<u8>)>,
) -> Completion {
    let mut extra: Vec<(String, Vec<u8>)> = field.into_iter().collect();
    extra.push(("user_id".into(), b"7".to_vec()));
    let entry = JobEntry {
        entry_id: entry.into(),
        id: id.into(),
        job: "send".into(),
        payload: b"p".to_vec(),
        attempt: if entry == id { 1 } else { 2 },
        idempotency_key: idempotency_key.map(Into::into),
        checkpoint: None,
        first_at: None,
        last_delay_ms: None,
        lease_expiries: 0,
        key_claimed: false,
        extra,
    };
    let ran = Ran {
        plugin_digest: Arc::from("abc"),
        idempotency_ttl: Duration::from_secs(1),
        started_ms: 10,
        first_at_ms: 10,
        finished_ms: 20,
        dead_payload: Some(b"redacted".to_vec()),
        ..Ran::default()
    };
    Completion::new(entry, outcome, transition, ran)
}

/// Reads the encoded batch the way `apply.lua` does; returns per
/// completion its kind, its field `entry`, and its keys.
fn walk(e: &Encoder) -> Vec<(String, String, Vec<String>)> {
    let arg = |k: usize| String::from_utf8_lossy(&e.args[k].bytes()).into_owned();
    let nd: usize = arg(Head::Digests.at()).parse().unwrap();
    let nb: usize = arg(Head::Batches.at()).parse().unwrap();
    let (mut i, mut kc, mut out) = (Head::N + nd, QueueKey::N + BatchKey::N * nb, Vec::new());
    while i < e.args.len() {
        let kind = arg(i);
        let (entry, keyed, nk);
        if kind == "f" {
            entry = arg(i + 1 + Fresh::Entry.at());
            keyed = !arg(i + 1 + Fresh::Idem.at()).is_empty();
            nk = if keyed { FreshKey::N } else { 1 };
            i += 1 + if keyed {
                Fresh::N
            } else {
                Fresh::Idem.at() + 1
            };
        } else {
            entry = arg(i + 1 + Full::Entry.at());
            keyed = !arg(i + 1 + Full::Idem.at()).is_empty();
            nk = if keyed { CompletionKey::N } else { 2 };
            let n: usize = arg(i + 1 + Full::Extras.at()).parse().unwrap();
            let m: usize = arg(i + 1 + Full::FollowOns.at()).parse().unwrap();
            i += 1 + Full::N + 2 * n + FollowOnArg::N * m;
        }
        out.push((kind, entry, e.keys[kc..kc + nk].to_vec()));
        kc += nk;
    }
    assert_eq!((i, kc), (e.args.len(), e.keys.len()));
    out
}

#[test]
fn each_batch_is_sent_once_and_its_members_refer_to_it_by_position() {
    let member = |entry: &str, id: &str, batch: Option<&str>, t: Transition| {
        let extra = batch.map(|b| ("batch".to_string(), b.as_bytes().to_vec()));
        completion_with(entry, id, None, t, Outcome::Success(b"r".to_vec()), extra)
    };
    let batch = [
        member("1-0", "1-0", Some("b1"), Transition::Succeed),
        member("2-0", "d1-1", Some("b2"), Transition::Succeed),
        member("3-0", "3-0", Some("b1"), Transition::Succeed),
        member("4-0", "4-0", None, Transition::Succeed),
    ];
    let keys = Keys::new("q");
    let e = Encoder::batch(&keys, Duration::from_secs(60), &batch);
    let b1 = keys.batch("b1");
    let b2 = keys.batch("b2");
    assert_eq!(
        e.keys[QueueKey::N..QueueKey::N + 2 * BatchKey::N],
        [b1.0, b1.1, b2.0, b2.1]
    );
    let arg = |k: usize| String::from_utf8_lossy(&e.args[k].bytes()).into_owned();
    assert_eq!(arg(Head::Batches.at()), "2");
    let walked = walk(&e);
    assert_eq!(walked.len(), 4);
    assert_eq!(walked[0].2, [keys.record("1-0")]);
    // Per completion, its batch's position, read where the script reads it.
    let mut i = Head::N + e.digests.len();
    let mut positions = Vec::new();
    for (kind, _, _) in &walked {
        if kind == "f" {
            positions.push(arg(i + 1 + Fresh::Batch.at()));
            i += 1 + Fresh::Idem.at() + 1;
        } else {
            positions.push(arg(i + 1 + Full::Batch.at()));
            let n: usize = arg(i + 1 + Full::Extras.at()).parse().unwrap();
            i += 1 + Full::N + 2 * n;
        }
    }
    assert_eq!(positions, ["1", "2", "1", "0"]);
}

#[test]
fn the_encoder_writes_each_completion_where_the_script_reads_it() {
    let failure = Outcome::Failure(Failure {
        class: FailureClass::Permanent,
        message: "no".into(),
        code: Some("bad".into()),
        upstream: None,
        retry_after_ms: None,
    });
    let ok = || Outcome::Success(b"r".to_vec());
    let retry = Transition::Retry {
        delay: Duration::from_millis(500),
    };
    let dead = Transition::DeadLetter(DeadReason::Permanent);
    let batch = [
        completion("1-0", "1-0", None, Transition::Succeed, ok()),
        completion("2-0", "2-0", Some("k"), Transition::Succeed, ok()),
        completion("3-0", "1-0", Some("k2"), retry, failure.clone()),
        completion("4-0", "0-1", None, dead, failure),
    ];
    let keys = Keys::new("q");
    let e = Encoder::batch(&keys, Duration::from_secs(60), &batch);
    let walked = walk(&e);
    let kinds: Vec<&str> = walked.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds, ["f", "f", "retry", "dead"]);
    let entries: Vec<&str> = walked.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(entries, ["1-0", "2-0", "3-0", "4-0"]);
    assert_eq!(walked[0].2, [keys.record("1-0")]);
    // A fresh success writes no history: its record and its key only.
    assert_eq!(walked[1].2, [keys.record("2-0"), keys.idempotency("k")]);
    // A fresh success writes no history: its record and its key only.
    assert_eq!(walked[1].2, [keys.record("2-0"), keys.idempotency("k")]);
    assert_eq!(
        walked[2].2,
        [
            keys.record("1-0"),
            keys.history("1-0"),
            keys.idempotency("k2")
        ]
    );
    assert_eq!(walked[3].2, [keys.record("0-1"), keys.history("0-1")]);
    assert_eq!(e.keys[QueueKey::Dead.at()], keys.dead);
    // The dead letter's fields, from its kind on.
    let dead = e.args.len() - 1 - 2 - Full::N;
    let field = |f: Full| String::from_utf8_lossy(&e.args[dead + 1 + f.at()].bytes()).into_owned();
    assert_eq!(field(Full::Id), "0-1");
    assert_eq!(field(Full::Reason), "permanent");
    assert_eq!(field(Full::Code), "bad");
    assert_eq!(field(Full::DeadPayload), "redacted");
    assert_eq!(
        &e.args[e.args.len() - 2..],
        [bytes(b"user_id"), bytes(b"7")]
    );
}

#[test]
fn a_success_with_follow_ons_takes_the_full_path_and_sends_each_after_its_extras() {
    let follow = |job: &str, key: Option<&str>, batch: Option<&str>| FollowOn {
        job_type: job.into(),
        payload: format!("{job}-payload").into_bytes(),
        key: key.map(Into::into),
        batch: batch.map(Into::into),
    };
    let mut parent = completion(
        "1-0",
        "1-0",
        None,
        Transition::Succeed,
        Outcome::Success(b"r".to_vec()),
    );
    parent.follow_ons = vec![
        follow("next", None, Some("b1")),
        follow("child", Some("row-9"), None),
    ];
    // A failure carries none, whatever the completion holds.
    let mut failed = completion(
        "2-0",
        "2-0",
        None,
        Transition::DeadLetter(DeadReason::Permanent),
        Outcome::Failure(Failure {
            class: FailureClass::Permanent,
            message: "no".into(),
            code: None,
            upstream: None,
            retry_after_ms: None,
        }),
    );
    failed.follow_ons = vec![follow("never", None, None)];
    let plain = completion(
        "3-0",
        "3-0",
        None,
        Transition::Succeed,
        Outcome::Success(b"r".to_vec()),
    );
    let batch = [parent, failed, plain];
    let keys = Keys::new("q");
    let e = Encoder::batch(&keys, Duration::from_secs(60), &batch);
    let walked = walk(&e);
    let kinds: Vec<&str> = walked.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["ok", "dead", "f"],
        "follow-ons leave the fresh path"
    );
    let arg = |k: usize| String::from_utf8_lossy(&e.args[k].bytes()).into_owned();
    let at = Head::N + e.digests.len();
    assert_eq!(arg(at + 1 + Full::FollowOns.at()), "2");
    // After the kind, the fields and the one extra pair (user_id), as the
    // script finds them: `i + FULL_extras + 2 * n`, then FOLLOW_N each.
    let first = at + 1 + Full::N + 2;
    let field = |k: usize, f: FollowOnArg| arg(first + FollowOnArg::N * k + f.at());
    assert_eq!(field(0, FollowOnArg::Job), "next");
    assert_eq!(field(0, FollowOnArg::Payload), "next-payload");
    assert_eq!(
        field(0, FollowOnArg::Key),
        "1-0/0",
        "keyed by parent and place"
    );
    assert_eq!(field(0, FollowOnArg::Batch), "b1");
    assert_eq!(field(1, FollowOnArg::Key), "row-9");
    assert_eq!(field(1, FollowOnArg::Batch), "");
    let dead = first + 2 * FollowOnArg::N;
    assert_eq!(arg(dead), "dead");
    assert_eq!(arg(dead + 1 + Full::FollowOns.at()), "0");
}

#[test]
fn a_result_over_its_limit_is_not_sent_and_the_record_is_told_why() {
    let mut c = completion(
        "1-0",
        "1-0",
        None,
        Transition::Succeed,
        Outcome::Success(vec![b'x'; 10]),
    );
    c = Completion::new(
        JobEntry {
            entry_id: "1-0".into(),
            id: "1-0".into(),
            job: "send".into(),
            payload: b"p".to_vec(),
            attempt: 1,
            idempotency_key: None,
            checkpoint: None,
            first_at: None,
            last_delay_ms: None,
            lease_expiries: 0,
            key_claimed: false,
            extra: c.extra().to_vec(),
        },
        c.outcome().clone(),
        Transition::Succeed,
        Ran {
            results: crate::transition::ResultPolicy {
                ttl: Some(Duration::from_secs(3600)),
                max_bytes: 4,
            },
            ..Ran::default()
        },
    );
    let batch = [c];
    let e = Encoder::batch(&Keys::new("q"), Duration::from_secs(60), &batch);
    let arg = |k: usize| String::from_utf8_lossy(&e.args[k].bytes()).into_owned();
    let at = Head::N + e.digests.len();
    assert_eq!(arg(at), "ok");
    assert_eq!(arg(at + 1 + Full::Result.at()), "");
    assert_eq!(
        arg(at + 1 + Full::ResultNote.at()),
        "result not kept: 10 bytes, over this job type's result_max_bytes of 4"
    );
    assert_eq!(arg(at + 1 + Full::ResultTtl.at()), "3600");
}

#[test]
fn a_reply_names_each_unrecordable_completion_by_its_position_with_redis_words() {
    let applied = Applied::read(
        "1e0e",
        &[
            "2-0 WRONGTYPE Operation against a key".to_string(),
            "4-0 OOM command not allowed".to_string(),
        ],
    );
    assert_eq!(applied.took, [true, false, false, false]);
    assert_eq!(
        applied.unrecordable,
        [
            (1, "WRONGTYPE Operation against a key".to_string()),
            (3, "OOM command not allowed".to_string())
        ]
    );
    assert_eq!(Applied::read("10", &[]).unrecordable, []);
}
