//! Reading Redis replies: stream entries, and what is not the expected shape.

use redis::Value;

use super::{Delivery, QueueError};

pub(super) fn looks_like_entry_id(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let ms = parts.next().unwrap_or("");
    let seq = parts.next().unwrap_or("0");
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// `XREADGROUP` replies `nil` on timeout, else `[[stream, [entry...]]]`.
pub(super) fn parse_xread(reply: Value) -> Result<Vec<Delivery>, QueueError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        // RESP3 servers answer with a map of stream name to entries.
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        other => return Err(protocol("XREADGROUP", &other)),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            return Err(protocol("XREADGROUP", &stream));
        };
        if parts.len() != 2 {
            return Err(protocol("XREADGROUP", &Value::Array(parts)));
        }
        let entries = parts.pop().unwrap_or(Value::Nil);
        out.extend(parse_entries(entries, "XREADGROUP")?);
    }
    Ok(out)
}

/// Parses `[[id, [field, value, ...]], ...]`.
pub(super) fn parse_entries(reply: Value, what: &'static str) -> Result<Vec<Delivery>, QueueError> {
    let Value::Array(entries) = reply else {
        return Err(protocol(what, &reply));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(protocol(what, &entry));
        };
        if parts.len() != 2 {
            return Err(protocol(what, &Value::Array(parts)));
        }
        let fields = parts.pop().unwrap_or(Value::Nil);
        let id = parts.pop().unwrap_or(Value::Nil);
        let entry_id = match id {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::SimpleString(s) => s,
            other => return Err(protocol(what, &other)),
        };
        let flat = match fields {
            Value::Array(items) => items,
            // A deleted entry still in a pending list comes back with nil fields.
            Value::Nil => Vec::new(),
            other => return Err(protocol(what, &other)),
        };
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((bytes_of(k), bytes_of(v)));
        }
        out.push(Delivery {
            entry_id,
            fields: pairs,
        });
    }
    Ok(out)
}

pub(super) fn bytes_of(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

pub(super) fn protocol(what: &'static str, got: &Value) -> QueueError {
    let mut detail = format!("{got:?}");
    crate::cut::truncate(&mut detail, 200);
    QueueError::Protocol { what, detail }
}
