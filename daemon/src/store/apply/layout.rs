//! APPLY's argument layout, declared once: one enum per part, whose
//! variants are the part's fields in order, and the Lua locals (one per
//! field, holding its position) the script reads them through.

/// One part of APPLY's layout as the script sees it: a local per field,
/// `<table>_<field>`, holding the field's position (from 1).
#[derive(Debug)]
pub(super) struct Layout {
    /// The part's name, the locals' prefix; `<table>_N` holds the number
    /// of fields.
    pub(super) table: &'static str,
    /// Field names, in order.
    pub(super) fields: &'static [&'static str],
}

impl Layout {
    /// `local T_a, T_b = 1, 2` and `local T_N = 2`. Locals rather than a
    /// table: the script reads about a dozen positions per completion, and
    /// an upvalue costs less than a table lookup on that path.
    pub(super) fn lua(&self) -> String {
        let names: Vec<String> = self
            .fields
            .iter()
            .map(|name| format!("{}_{name}", self.table))
            .collect();
        let positions: Vec<String> = (1..=self.fields.len()).map(|k| k.to_string()).collect();
        format!(
            "local {} = {}\nlocal {t}_N = {}\n",
            names.join(", "),
            positions.join(", "),
            self.fields.len(),
            t = self.table
        )
    }
}

/// Declares one part of the layout: an enum whose variants are the fields
/// in order, and the Lua locals the script reads them through.
macro_rules! layout {
    ($(#[$doc:meta])* $name:ident as $table:literal { $($field:ident = $lua:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum $name { $($field,)+ }

        impl $name {
            /// The layout as the script sees it.
            pub(super) const LAYOUT: Layout = Layout { table: $table, fields: &[$($lua,)+] };
            /// How many fields.
            pub(super) const N: usize = Self::LAYOUT.fields.len();
            /// The field's index in its part, from 0.
            pub(super) const fn at(self) -> usize {
                self as usize
            }
        }
    };
}

layout!(
    /// The queue's keys, first in KEYS.
    QueueKey as "QKEY" {
        Jobs = "jobs",
        Dead = "dead",
        Delayed = "delayed",
        Acked = "acked",
        Cancels = "cancels",
        Held = "held",
        Paused = "paused",
        JobsHigh = "jobs_high",
        JobsLow = "jobs_low",
        BatchesUnfinished = "batches_unfinished",
        Progress = "progress",
    }
);

layout!(
    /// The keys of one batch the completions belong to, after the queue's
    /// (and the batches' before it); `Head::Batches` says how many.
    BatchKey as "BKEY" {
        Ledger = "ledger",
        Failed = "failed",
    }
);

layout!(
    /// The keys of one completion of a full kind, after the queue's, the
    /// batches' and those of the completions before it: a prefix of these
    /// (see [`Encoder::keys`]).
    CompletionKey as "CKEY" {
        Record = "record",
        History = "history",
        Idem = "idem",
    }
);

layout!(
    /// The keys of a fresh success (kind `f`), which writes no history: its
    /// record, and its idempotency key when it has one.
    FreshKey as "FKEY" {
        Record = "record",
        Idem = "idem",
    }
);

layout!(
    /// The batch's arguments, first in ARGV; the plugin digests follow.
    /// (`batches`: how many distinct job batches its completions belong
    /// to; their ledger keys follow the queue's in KEYS.)
    Head as "HEAD" {
        Group = "group",
        Ttl = "ttl",
        Queue = "queue",
        HistoryMax = "history_max",
        Wake = "wake",
        AckedMax = "acked_max",
        RetiredTtl = "retired_ttl",
        Batches = "batches",
        Digests = "digests",
    }
);

layout!(
    /// A fresh success (kind `f`), after its kind: up to `Idem`, and the
    /// rest only when it has an idempotency key.
    Fresh as "FRESH" {
        Entry = "entry",
        Job = "job",
        FirstAt = "first_at",
        Finished = "finished",
        Plugin = "plugin",
        Result = "result",
        Batch = "batch",
        Idem = "idem",
        IdemTtl = "idem_ttl",
        ResultDigest = "result_digest",
    }
);

layout!(
    /// Every other completion (kinds `ok`, `retry`, `dead`, `dup`, `cancel`), after
    /// its kind; `Extras` name/value pairs follow, then `FollowOns` times
    /// the [`FollowOnArg`] fields.
    Full as "FULL" {
        Entry = "entry",
        Id = "id",
        Job = "job",
        Attempt = "attempt",
        Finished = "finished",
        Payload = "payload",
        Result = "result",
        Class = "class",
        Code = "code",
        Message = "message",
        Upstream = "upstream",
        Reason = "reason",
        Plugin = "plugin",
        HasCheckpoint = "has_checkpoint",
        Checkpoint = "checkpoint",
        FirstAt = "first_at",
        Delay = "delay",
        History = "history",
        Idem = "idem",
        IdemTtl = "idem_ttl",
        ResultDigest = "result_digest",
        LeaseExpiries = "lease_expiries",
        DeadPayload = "dead_payload",
        Batch = "batch",
        ResultTtl = "result_ttl",
        ResultNote = "result_note",
        FollowOns = "follow_ons",
        Extras = "extras",
    }
);

layout!(
    /// One follow-on job of a success (kind `ok`), after its extras; the
    /// completion's `FollowOns` says how many (see `lua/follow_on.lua`).
    FollowOnArg as "FOLLOW" {
        Job = "job",
        Payload = "payload",
        Key = "key",
        Batch = "batch",
    }
);

// The script finds what follows a part from these fields' positions.
const _: () = assert!(Head::Digests.at() + 1 == Head::N);
const _: () = assert!(Full::Extras.at() + 1 == Full::N);

/// Every part of the layout, as the script receives it.
pub(super) const LAYOUTS: [Layout; 8] = [
    QueueKey::LAYOUT,
    BatchKey::LAYOUT,
    CompletionKey::LAYOUT,
    FreshKey::LAYOUT,
    Head::LAYOUT,
    Fresh::LAYOUT,
    Full::LAYOUT,
    FollowOnArg::LAYOUT,
];
