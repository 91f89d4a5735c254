//! Grouping alert events into alerts, per kind, queue and job type (the
//! rules are in the module docs of [`super`]). Pure: time is passed in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::{AlertEvent, AlertKind};
use crate::config::observability::GroupRules;
use crate::obs::secrets;

/// Events remembered per group; past this the oldest are forgotten (the
/// count then says "at least").
const MAX_EVENTS_PER_GROUP: usize = 100_000;
/// Longest error message sample in an alert.
const MAX_MESSAGE: usize = 512;

/// An alert as POSTed to webhooks (the JSON body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `dead_letter`, `breaker_open` or `batch_failures`.
    pub kind: AlertKind,
    /// One line for chat tools.
    pub summary: String,
    /// `[alerts] environment`.
    pub environment: Option<String>,
    /// The queue.
    pub queue: String,
    /// The job type.
    pub job: String,
    /// Events of this group in the window when the alert was sent.
    pub count: usize,
    /// `[alerts] threshold`.
    pub threshold: u32,
    /// `[alerts] window`, in seconds.
    pub window_seconds: u64,
    /// The oldest event in the window (RFC 3339, UTC).
    pub first_at: String,
    /// The newest event in the window (RFC 3339, UTC).
    pub last_at: String,
    /// Failure class → events in the window.
    pub classes: BTreeMap<String, usize>,
    /// The newest event.
    pub latest: Latest,
    /// Whether this is the escalation of an alert unresolved for
    /// `[alerts] escalate_after` (sent to `[[alerts.escalation]]` only).
    pub escalated: bool,
}

/// The newest event of an alert's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latest {
    /// The job.
    pub job_id: String,
    /// Attempts it made.
    pub attempts: u32,
    /// From its first attempt's start to the event, ms.
    pub elapsed_ms: u64,
    /// Failure class of its last attempt.
    pub class: Option<String>,
    /// Failure code.
    pub code: Option<String>,
    /// Upstream named by the failure.
    pub upstream: Option<String>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The last error message, secrets redacted, cut to 512 bytes.
    pub error: String,
}

#[derive(Debug)]
struct Group {
    /// `(at_ms, class)` of the events in the window, oldest first.
    events: VecDeque<(u64, String)>,
    /// The newest event.
    latest: AlertEvent,
    /// When the alert gathering events is to be sent.
    due_ms: Option<u64>,
    /// When the last alert was sent, and its count.
    last_sent: Option<(u64, usize)>,
    /// When the first alert of the episode under way was sent: the episode
    /// ends (resolves) once the window holds fewer events than the
    /// threshold.
    firing_since: Option<u64>,
    /// Whether this episode has been escalated.
    escalated: bool,
}

impl Group {
    /// Ends the episode when the window no longer holds enough events.
    fn resolve_if_quiet(&mut self, rules: &GroupRules) {
        if self.events.len() < threshold(rules, self.latest.kind) as usize {
            self.firing_since = None;
            self.escalated = false;
        }
    }

    /// When this group's episode is due to be escalated, if it is.
    fn escalation_due(&self, rules: &GroupRules) -> Option<u64> {
        let after = rules.escalate_after?;
        let since = self.firing_since?;
        (!self.escalated).then(|| since.saturating_add(ms(after)))
    }
}

/// Groups events into alerts; see the module docs for the rules.
#[derive(Debug)]
pub struct Grouper {
    rules: GroupRules,
    environment: Option<String>,
    groups: HashMap<(AlertKind, String, String), Group>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Grouper {
    /// A grouper with these rules.
    #[must_use]
    pub fn new(rules: GroupRules, environment: Option<String>) -> Grouper {
        Grouper {
            rules,
            environment,
            groups: HashMap::new(),
        }
    }

    /// Takes in one event at time `now_ms`.
    pub fn observe(&mut self, event: AlertEvent, now_ms: u64) {
        let key = (event.kind, event.queue.clone(), event.job.clone());
        let class = event.class.clone().unwrap_or_else(|| "none".into());
        let at = event.at_ms;
        let g = self.groups.entry(key).or_insert_with(|| Group {
            events: VecDeque::new(),
            latest: event.clone(),
            due_ms: None,
            last_sent: None,
            firing_since: None,
            escalated: false,
        });
        g.events.push_back((at, class));
        if g.events.len() > MAX_EVENTS_PER_GROUP {
            g.events.pop_front();
        }
        g.latest = event;
        prune(g, now_ms, self.rules.window);
        if g.due_ms.is_none() && wants_alert(&self.rules, g, now_ms) {
            g.due_ms = Some(now_ms.saturating_add(ms(self.rules.group_wait)));
        }
    }

    /// When the next alert (or escalation) is due, if one is.
    #[must_use]
    pub fn next_due(&self) -> Option<u64> {
        self.groups
            .values()
            .flat_map(|g| [g.due_ms, g.escalation_due(&self.rules)])
            .flatten()
            .min()
    }

    /// The alerts due at `now_ms`.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<Alert> {
        self.take(now_ms, false)
    }

    /// Every alert gathering events, due or not (when the daemon stops).
    pub fn take_all(&mut self, now_ms: u64) -> Vec<Alert> {
        self.take(now_ms, true)
    }

    fn take(&mut self, now_ms: u64, all: bool) -> Vec<Alert> {
        let mut out = Vec::new();
        let (rules, environment) = (&self.rules, &self.environment);
        for g in self.groups.values_mut() {
            prune(g, now_ms, rules.window);
            g.resolve_if_quiet(rules);
            let count = g.events.len();
            // Unresolved for `escalate_after` since its first alert: once,
            // to the escalation route (not on a stop: it was not due).
            if !all && g.escalation_due(rules).is_some_and(|due| due <= now_ms) {
                g.escalated = true;
                let mut a = alert(rules, environment.as_deref(), g, count);
                a.escalated = true;
                out.push(a);
            }
            match g.due_ms {
                Some(due) if all || due <= now_ms => {}
                _ => continue,
            }
            g.due_ms = None;
            // Events may have left the window while the group waited.
            if count < threshold(rules, g.latest.kind) as usize {
                continue;
            }
            g.last_sent = Some((now_ms, count));
            g.firing_since.get_or_insert(now_ms);
            out.push(alert(rules, environment.as_deref(), g, count));
        }
        out.sort_by(|a, b| (a.kind, &a.queue, &a.job).cmp(&(b.kind, &b.queue, &b.job)));
        out
    }
}

/// The alert for group `g` with `count` events in the window.
fn alert(rules: &GroupRules, environment: Option<&str>, g: &Group, count: usize) -> Alert {
    let e = &g.latest;
    let mut classes = BTreeMap::new();
    for (_, class) in &g.events {
        *classes.entry(class.clone()).or_insert(0) += 1;
    }
    let first = g.events.front().map_or(e.at_ms, |(at, _)| *at);
    let last = g.events.back().map_or(e.at_ms, |(at, _)| *at);
    let mut error = secrets::redact(&e.message);
    crate::cut::truncate(&mut error, MAX_MESSAGE);
    let window = humantime::format_duration(rules.window);
    let env = environment
        .map(|env| format!(" ({env})"))
        .unwrap_or_default();
    let summary = match e.kind {
        // The batch's own numbers say more than a count of reports.
        AlertKind::BatchFailures => format!(
            "{} (job type `{}`, queue `{}`){env}",
            e.reason, e.job, e.queue
        ),
        AlertKind::QueueWait | AlertKind::Stalled => {
            let what = if e.kind == AlertKind::Stalled {
                "stalled"
            } else {
                "waits past its promise"
            };
            format!("queue `{}` {what}: {}{env}", e.queue, e.reason)
        }
        kind => {
            let what = match kind {
                AlertKind::BreakerOpen => "breaker openings",
                AlertKind::RetrySpike => "retries",
                _ => "dead letters",
            };
            format!(
                "{count} {what} of job type `{}` in queue `{}` within {window}{env}",
                e.job, e.queue
            )
        }
    };
    Alert {
        kind: e.kind,
        summary: secrets::redact(&summary),
        environment: environment.map(str::to_string),
        queue: e.queue.clone(),
        job: e.job.clone(),
        // A condition's "how many" is the jobs waiting, and its "since" when
        // it began (its events are samples, counted for nothing).
        count: e
            .condition
            .map_or(count, |c| usize::try_from(c.ready).unwrap_or(usize::MAX)),
        threshold: threshold(rules, e.kind),
        window_seconds: rules.window.as_secs(),
        first_at: rfc3339(e.condition.map_or(first, |c| c.since_ms)),
        last_at: rfc3339(last),
        classes,
        latest: Latest {
            job_id: e.job_id.clone(),
            attempts: e.attempts,
            elapsed_ms: e.elapsed_ms,
            class: e.class.clone(),
            code: e.code.as_deref().map(secrets::redact),
            upstream: e.upstream.as_deref().map(secrets::redact),
            reason: e.reason.clone(),
            error,
        },
        escalated: false,
    }
}

fn prune(g: &mut Group, now_ms: u64, window: Duration) {
    let since = now_ms.saturating_sub(ms(window));
    while matches!(g.events.front(), Some((at, _)) if *at < since) {
        g.events.pop_front();
    }
}

/// The events within the window that make an alert of `kind`.
fn threshold(rules: &GroupRules, kind: AlertKind) -> u32 {
    match kind {
        AlertKind::RetrySpike => rules.retry_threshold,
        AlertKind::QueueWait | AlertKind::Stalled => 1,
        AlertKind::DeadLetter | AlertKind::BreakerOpen | AlertKind::BatchFailures => {
            rules.threshold
        }
    }
}

/// Whether a group that is not gathering should start an alert now.
fn wants_alert(rules: &GroupRules, g: &Group, now_ms: u64) -> bool {
    let count = g.events.len();
    if count < threshold(rules, g.latest.kind) as usize {
        return false;
    }
    match g.last_sent {
        None => true,
        Some((at, sent)) => {
            now_ms >= at.saturating_add(ms(rules.cooldown))
                // A condition's events are samples: their count grows with
                // time, not with trouble.
                || (!g.latest.kind.is_condition()
                    && count as f64 >= sent as f64 * rules.growth_factor)
        }
    }
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn rules(threshold: u32) -> GroupRules {
        GroupRules {
            window: Duration::from_secs(300),
            threshold,
            retry_threshold: 3,
            cooldown: Duration::from_secs(900),
            growth_factor: 2.0,
            group_wait: Duration::from_secs(10),
            escalate_after: None,
        }
    }

    fn escalating(threshold: u32) -> GroupRules {
        GroupRules {
            escalate_after: Some(Duration::from_secs(1800)),
            ..rules(threshold)
        }
    }

    #[test]
    fn an_alert_unresolved_for_escalate_after_is_escalated_once() {
        let mut g = Grouper::new(escalating(1), None);
        // A dead letter every minute for 40 minutes: never quiet for a window.
        let mut sent = Vec::new();
        for minute in 0..40 {
            let now = minute * MIN;
            g.observe(dead("send", now, "boom"), now);
            for t in [now, now + 20_000] {
                sent.extend(g.take_due(t).into_iter().map(|a| (t, a.escalated)));
            }
        }
        let escalations: Vec<u64> = sent.iter().filter(|(_, e)| *e).map(|(t, _)| *t).collect();
        assert_eq!(escalations.len(), 1, "{sent:?}");
        // First alert at 10 s (group_wait), escalated 30 min later.
        assert!(escalations[0] >= 10_000 + 30 * MIN, "{sent:?}");
        assert!(escalations[0] <= 10_000 + 31 * MIN, "{sent:?}");
        assert!(
            sent.iter().any(|(_, e)| !*e),
            "the first alert went out too"
        );
    }

    #[test]
    fn an_alert_that_goes_quiet_is_resolved_and_never_escalated() {
        let mut g = Grouper::new(escalating(1), None);
        g.observe(dead("send", 0, "boom"), 0);
        assert_eq!(g.take_due(10_000).len(), 1);
        // Quiet: the window (5 min) empties long before 30 min.
        let mut later = Vec::new();
        for minute in 1..=40 {
            later.extend(g.take_due(minute * MIN));
        }
        assert!(later.is_empty(), "{later:?}");
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn retries_alert_at_their_own_threshold() {
        let mut g = Grouper::new(rules(1), None);
        let retry = |at_ms| AlertEvent {
            kind: AlertKind::RetrySpike,
            reason: "retrying".into(),
            ..dead("send", at_ms, "HTTP 500")
        };
        g.observe(retry(0), 0);
        g.observe(retry(1_000), 1_000);
        assert_eq!(
            g.next_due(),
            None,
            "2 retries are below the retry threshold of 3"
        );
        g.observe(retry(2_000), 2_000);
        let alerts = g.take_all(2_000);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].count, alerts[0].threshold), (3, 3));
        assert!(
            alerts[0]
                .summary
                .starts_with("3 retries of job type `send`"),
            "{}",
            alerts[0].summary
        );
    }

    fn dead(job: &str, at_ms: u64, message: &str) -> AlertEvent {
        AlertEvent {
            kind: AlertKind::DeadLetter,
            queue: "q".into(),
            job: job.into(),
            job_id: format!("{at_ms}-0"),
            at_ms,
            class: Some("permanent".into()),
            code: None,
            attempts: 1,
            elapsed_ms: 5,
            upstream: Some("mailer".into()),
            reason: "permanent".into(),
            message: message.into(),
            condition: None,
        }
    }

    #[test]
    fn a_burst_makes_one_alert_with_the_count_after_group_wait() {
        let mut g = Grouper::new(rules(5), Some("prod".into()));
        let t0 = 1_000_000;
        for i in 0..20 {
            g.observe(dead("send", t0 + i * 100, "boom"), t0 + i * 100);
        }
        assert_eq!(
            g.next_due(),
            Some(t0 + 400 + 10_000),
            "due group_wait after the 5th"
        );
        assert!(g.take_due(t0 + 5_000).is_empty(), "still gathering");
        let alerts = g.take_due(t0 + 10_400);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!((a.count, a.job.as_str()), (20, "send"));
        assert_eq!(a.classes.get("permanent"), Some(&20));
        assert_eq!(a.latest.job_id, format!("{}-0", t0 + 1900));
        assert_eq!(a.environment.as_deref(), Some("prod"));
        assert!(g.take_due(t0 + 20 * MIN).is_empty(), "sent once");
    }

    #[test]
    fn below_threshold_nothing_is_sent_and_old_events_leave_the_window() {
        let mut g = Grouper::new(rules(3), None);
        g.observe(dead("a", 0, "x"), 0);
        g.observe(dead("a", MIN, "x"), MIN);
        // The first left the 5-minute window: still 2 in it.
        g.observe(dead("a", 6 * MIN, "x"), 6 * MIN);
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn groups_are_per_job_type() {
        let mut g = Grouper::new(rules(1), None);
        g.observe(dead("a", 0, "x"), 0);
        g.observe(dead("b", 0, "x"), 0);
        let alerts = g.take_due(10_000);
        assert_eq!(
            alerts.iter().map(|a| a.job.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn the_cooldown_holds_repeats_unless_the_count_doubles() {
        let mut g = Grouper::new(rules(1), None);
        g.observe(dead("a", 0, "x"), 0);
        g.observe(dead("a", 1, "x"), 1);
        assert_eq!(g.take_due(10_001).len(), 1, "first alert: count 2");
        g.observe(dead("a", 20_000, "x"), 20_000);
        g.observe(dead("a", 20_001, "x"), 20_001);
        assert_eq!(g.next_due(), Some(30_001), "4 = 2 x 2: the count doubled");
        assert_eq!(g.take_due(30_001)[0].count, 4);
        g.observe(dead("a", 40_000, "x"), 40_000);
        assert_eq!(g.next_due(), None, "5 < 8 within the cooldown");
        // After the cooldown (15 min), any new event alerts again.
        g.observe(dead("a", 16 * MIN, "x"), 16 * MIN);
        assert!(g.next_due().is_some());
    }

    #[test]
    fn a_condition_alerts_at_once_with_its_queue_numbers_and_repeats_only_after_the_cooldown() {
        let mut g = Grouper::new(rules(5), None);
        let sample = |at_ms: u64| {
            let s = crate::store::QueueSample {
                group_exists: true,
                ready: 40,
                pending: 0,
                delayed: 0,
                dead: 0,
                now_ms: at_ms,
                oldest_ready_ms: Some(at_ms.saturating_sub(7 * MIN)),
                batches_unfinished: 0,
                paused: false,
                last_progress_ms: Some(at_ms),
            };
            let rule = super::super::WatchRule {
                max_wait: Some(Duration::from_secs(300)),
                stall_after: None,
            };
            super::super::conditions("q", &s, &rule).remove(0)
        };
        let t0 = 100 * MIN;
        g.observe(sample(t0), t0);
        let a = g.take_due(t0 + 10_000);
        assert_eq!(a.len(), 1, "one sample is enough, below threshold 5");
        assert_eq!(
            (a[0].kind, a[0].job.as_str(), a[0].count),
            (AlertKind::QueueWait, "*", 40)
        );
        assert_eq!(
            a[0].first_at,
            rfc3339(t0 - 2 * MIN),
            "since it crossed max_wait"
        );
        assert!(
            a[0].summary.starts_with(
                "queue `q` waits past its promise: the oldest of 40 ready jobs has waited 7m"
            ),
            "{}",
            a[0].summary
        );
        // Samples every 5 s for the cooldown: their count doubles, no repeat.
        let mut repeats = 0;
        for i in 1..=(16 * 12) {
            let at = t0 + i * 5_000;
            g.observe(sample(at), at);
            repeats += g.take_due(at + 10_000).len();
        }
        assert_eq!(repeats, 1, "once, after the 15-minute cooldown");
    }

    #[test]
    fn take_all_sends_what_is_still_gathering() {
        let mut g = Grouper::new(rules(1), None);
        g.observe(dead("a", 0, "x"), 0);
        assert_eq!(g.take_all(1).len(), 1);
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn known_secrets_never_reach_an_alert_and_long_errors_are_cut() {
        secrets::register("tok-3f9a77e1c2");
        let mut g = Grouper::new(rules(1), None);
        let long = "y".repeat(2000);
        g.observe(
            dead("a", 0, &format!("auth tok-3f9a77e1c2 refused {long}")),
            0,
        );
        let a = &g.take_due(10_000)[0];
        let body = serde_json::to_string(a).unwrap();
        assert!(!body.contains("tok-3f9a77e1c2"), "{body}");
        assert!(
            a.latest.error.starts_with("auth [redacted] refused"),
            "{}",
            a.latest.error
        );
        assert!(a.latest.error.len() < 600);
    }
}
