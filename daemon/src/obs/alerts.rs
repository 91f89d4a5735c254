//! Alerts: events (a job was dead-lettered, a circuit breaker opened) go
//! through a bounded channel to one task that groups them per kind, queue
//! and job type, and POSTs one JSON body per group to every webhook.
//!
//! ```text
//! callers ──raise(event)──► [bounded channel] ──► Grouper ──Alert──► webhook (retries, backoff)
//!            (never waits: full = dropped and counted)
//! ```
//!
//! Grouping, per `(kind, queue, job)`:
//! - events are counted in a sliding `window`;
//! - once `threshold` events fall in it, the group waits `group_wait` for
//!   more (a burst of 20 dead letters makes one alert, not 20), then sends
//!   one alert with the count at that moment;
//! - after that, the group stays quiet for `cooldown`, unless its count
//!   reached `growth_factor` times the count last sent.
//!
//! The [`Grouper`] is pure (time is passed in), so its rules are unit-tested
//! without clocks or sockets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::config::observability::{AlertsConfig, GroupRules, Setting, WebhookConfig};
use crate::job::{DeadReason, Outcome};
use crate::obs::events::{AlertDelivered, AlertDropped, AlertUnsent};
use crate::obs::secrets;
use crate::transition::Completion;

/// Alert events waiting for the alert task; past this, events are dropped
/// (and counted) rather than slowing down job processing.
pub const CHANNEL_SIZE: usize = 4096;
/// Events remembered per group; past this the oldest are forgotten (the
/// count then says "at least").
const MAX_EVENTS_PER_GROUP: usize = 100_000;
/// Longest error message sample in an alert.
const MAX_MESSAGE: usize = 512;
/// First delay before a failed webhook request is retried; doubles each time.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest delay between two requests of one alert.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a stopping daemon waits for alerts still being delivered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKind {
    /// Jobs were moved to the dead-letter stream.
    DeadLetter,
    /// A circuit breaker opened.
    BreakerOpen,
}

impl AlertKind {
    /// Every kind (their names are [`crate::obs::metrics::ALERT_KINDS`]).
    pub const ALL: [AlertKind; 2] = [AlertKind::DeadLetter, AlertKind::BreakerOpen];

    /// The snake_case name used in alert bodies, logs and labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DeadLetter => "dead_letter",
            AlertKind::BreakerOpen => "breaker_open",
        }
    }
}

/// One thing worth alerting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// What happened.
    pub kind: AlertKind,
    /// The queue.
    pub queue: String,
    /// The job type, as a metrics label (configured or `unknown`).
    pub job: String,
    /// The job concerned.
    pub job_id: String,
    /// When it happened, Unix ms.
    pub at_ms: u64,
    /// Failure class of the last attempt, if one ran.
    pub class: Option<String>,
    /// Failure code of the last attempt.
    pub code: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// From the first attempt's start to now, ms.
    pub elapsed_ms: u64,
    /// The upstream the last failure named.
    pub upstream: Option<String>,
    /// Why (for a dead letter, its reason).
    pub reason: String,
    /// The last error message (not redacted yet).
    pub message: String,
}

impl AlertEvent {
    /// The event for a completion that dead-lettered its job.
    #[must_use]
    pub fn dead_letter(queue: &str, job_label: &str, c: &Completion, reason: DeadReason) -> Self {
        let (class, code, upstream, message) = match c.outcome() {
            Outcome::Failure(f) => (
                Some(f.class.as_str().to_string()),
                f.code.clone(),
                f.upstream.clone(),
                f.message.clone(),
            ),
            Outcome::Success(_) => (None, None, None, String::new()),
        };
        AlertEvent {
            kind: AlertKind::DeadLetter,
            queue: queue.to_string(),
            job: job_label.to_string(),
            job_id: c.job_id().to_string(),
            at_ms: c.finished_ms(),
            class,
            code,
            attempts: c.attempt(),
            elapsed_ms: if c.first_at_ms() > 0 {
                c.finished_ms().saturating_sub(c.first_at_ms())
            } else {
                0
            },
            upstream,
            reason: reason.as_str().to_string(),
            message,
        }
    }
}

impl AlertEvent {
    /// Upstream `upstream`'s circuit breaker opened; `c` is the completion
    /// whose failure tipped it.
    #[must_use]
    pub fn breaker_open(queue: &str, job_label: &str, upstream: &str, c: &Completion) -> Self {
        let mut e = AlertEvent::dead_letter(queue, job_label, c, DeadReason::AttemptsExhausted);
        e.kind = AlertKind::BreakerOpen;
        e.upstream = Some(upstream.to_string());
        e.reason = format!("circuit breaker of upstream `{upstream}` opened");
        e
    }
}

static SENDER: OnceLock<mpsc::Sender<AlertEvent>> = OnceLock::new();

/// Hands an event to the alert task without waiting. When the task is
/// behind and its queue is full, the event is dropped, counted in
/// `ward_alerts_dropped_total` and logged. Before [`start`], does nothing.
pub fn raise(event: AlertEvent) {
    let Some(tx) = SENDER.get() else { return };
    if let Err(mpsc::error::TrySendError::Full(e)) = tx.try_send(event) {
        AlertDropped {
            kind: e.kind.as_str(),
            queue: &e.queue,
            job: &e.job,
        }
        .emit();
    }
}

/// An alert as POSTed to webhooks (the JSON body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `dead_letter` or `breaker_open`.
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

    /// When the next alert is due, if one is gathering.
    #[must_use]
    pub fn next_due(&self) -> Option<u64> {
        self.groups.values().filter_map(|g| g.due_ms).min()
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
            match g.due_ms {
                Some(due) if all || due <= now_ms => {}
                _ => continue,
            }
            g.due_ms = None;
            prune(g, now_ms, rules.window);
            let count = g.events.len();
            // Events may have left the window while the group waited.
            if count < rules.threshold as usize {
                continue;
            }
            g.last_sent = Some((now_ms, count));
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
    let what = match e.kind {
        AlertKind::DeadLetter => "dead letters",
        AlertKind::BreakerOpen => "breaker openings",
    };
    let summary = format!(
        "{count} {what} of job type `{}` in queue `{}` within {window}{}",
        e.job,
        e.queue,
        environment
            .map(|env| format!(" ({env})"))
            .unwrap_or_default()
    );
    Alert {
        kind: e.kind,
        summary: secrets::redact(&summary),
        environment: environment.map(str::to_string),
        queue: e.queue.clone(),
        job: e.job.clone(),
        count,
        threshold: rules.threshold,
        window_seconds: rules.window.as_secs(),
        first_at: rfc3339(first),
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
    }
}

fn prune(g: &mut Group, now_ms: u64, window: Duration) {
    let since = now_ms.saturating_sub(ms(window));
    while matches!(g.events.front(), Some((at, _)) if *at < since) {
        g.events.pop_front();
    }
}

/// Whether a group that is not gathering should start an alert now.
fn wants_alert(rules: &GroupRules, g: &Group, now_ms: u64) -> bool {
    let count = g.events.len();
    if count < rules.threshold as usize {
        return false;
    }
    match g.last_sent {
        None => true,
        Some((at, sent)) => {
            now_ms >= at.saturating_add(ms(rules.cooldown))
                || count as f64 >= sent as f64 * rules.growth_factor
        }
    }
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One webhook, its secrets read.
#[derive(Clone)]
pub struct Webhook {
    uri: hyper::Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    max_attempts: u32,
    /// `scheme://host:port`, for logs (paths and user info can carry tokens).
    shown: String,
    client: HttpClient,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("sink", &self.shown)
            .finish_non_exhaustive()
    }
}

/// The HTTP client alerts are sent with: plain HTTP, and HTTPS with rustls
/// (ring) trusting the system's CA certificates.
fn http_client() -> HttpClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no system CA certificates found (install ca-certificates); https:// webhooks will fail");
            let empty = rustls::RootCertStore::empty();
            let tls = match rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
            {
                Ok(b) => b.with_root_certificates(empty).with_no_client_auth(),
                Err(_) => rustls::ClientConfig::builder()
                    .with_root_certificates(empty)
                    .with_no_client_auth(),
            };
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        });
    let connector = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(connector)
}

impl Webhook {
    /// Reads the secrets a webhook names and parses its URL and headers.
    ///
    /// # Errors
    /// A message naming the missing secret or the bad value.
    pub fn resolve(cfg: &WebhookConfig, client: &HttpClient) -> Result<Webhook, String> {
        let read = |s: &Setting| match s {
            Setting::Literal(v) => Ok(v.clone()),
            Setting::Secret(name) => secrets::resolve(name),
        };
        let url = read(&cfg.url)?;
        if let Some(why) = crate::config::observability::check_url(&url) {
            return Err(format!("the webhook URL {why}"));
        }
        let uri: hyper::Uri = url.parse().map_err(|e| format!("the webhook URL: {e}"))?;
        let mut headers = Vec::new();
        for (name, value) in &cfg.headers {
            let v = read(value)?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header name `{name}`: {e}"))?;
            let mut v = HeaderValue::from_str(&v)
                .map_err(|_| format!("header `{name}`: the value is not valid in HTTP"))?;
            if matches!(value, Setting::Secret(_)) {
                v.set_sensitive(true);
            }
            headers.push((name, v));
        }
        // Host and port only: the path and any user:password@ can be secret.
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.host().unwrap_or(""),
            uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        );
        Ok(Webhook {
            uri,
            headers,
            timeout: cfg.timeout,
            max_attempts: cfg.max_attempts,
            shown,
            client: client.clone(),
        })
    }

    /// One POST; `Ok` on a 2xx answer.
    async fn post(&self, body: Bytes) -> Result<(), String> {
        let mut req = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("ward/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| secrets::redact(&error_chain(&e)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }

    /// POSTs `body` until a 2xx answer or `max_attempts` requests, waiting
    /// 1 s, 2 s, 4 s… (at most 60 s) between them; logs and counts the result.
    async fn deliver(self, body: Bytes, kind: AlertKind, queue: String, job: String) {
        let mut backoff = crate::backoff::Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            match self.post(body.clone()).await {
                Ok(()) => {
                    AlertDelivered {
                        kind: kind.as_str(),
                        queue: &queue,
                        job: &job,
                        sink: &self.shown,
                        attempts: attempt,
                        error: None,
                    }
                    .emit();
                    return;
                }
                Err(e) => {
                    if attempt < self.max_attempts {
                        let delay = backoff.next();
                        tracing::warn!(kind = kind.as_str(), sink = %self.shown, attempt, error = %e, retry_in = ?delay, "alert webhook failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    last_error = e;
                }
            }
        }
        AlertDelivered {
            kind: kind.as_str(),
            queue: &queue,
            job: &job,
            sink: &self.shown,
            attempts: self.max_attempts,
            error: Some(&last_error),
        }
        .emit();
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The running alert task.
#[derive(Debug)]
pub struct AlertTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Reads the webhooks' secrets and starts the alert task (once per process).
///
/// # Errors
/// A webhook whose secret is missing or whose values are not valid.
pub fn start(cfg: &AlertsConfig) -> Result<AlertTask, String> {
    let client = http_client();
    let mut sinks = Vec::new();
    for (i, hook) in cfg.webhooks.iter().enumerate() {
        sinks.push(
            Webhook::resolve(hook, &client)
                .map_err(|e| format!("[[alerts.webhook]] #{}: {e}", i + 1))?,
        );
    }
    let (tx, rx) = mpsc::channel(CHANNEL_SIZE);
    if SENDER.set(tx).is_err() {
        tracing::warn!("alerts were started twice in one process; the first start is used");
    }
    let (stop, stop_rx) = watch::channel(false);
    let grouper = Grouper::new(cfg.rules, cfg.environment.clone());
    let task = tokio::spawn(run(rx, grouper, sinks.into(), stop_rx));
    Ok(AlertTask { stop, task })
}

impl AlertTask {
    /// Sends what is still gathering and waits (at most 10 s) for deliveries
    /// under way.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    mut rx: mpsc::Receiver<AlertEvent>,
    mut grouper: Grouper,
    sinks: Arc<[Webhook]>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sending = JoinSet::new();
    loop {
        while sending.try_join_next().is_some() {}
        let wait = grouper.next_due().map_or(Duration::from_secs(3600), |due| {
            Duration::from_millis(due.saturating_sub(now_ms()))
        });
        tokio::select! {
            event = rx.recv() => match event {
                Some(e) => grouper.observe(e, now_ms()),
                None => break,
            },
            () = tokio::time::sleep(wait) => {
                for alert in grouper.take_due(now_ms()) {
                    dispatch(&mut sending, &sinks, &alert);
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Stopping: what arrived and every group still gathering goes out now.
    while let Ok(e) = rx.try_recv() {
        grouper.observe(e, now_ms());
    }
    for alert in grouper.take_all(now_ms()) {
        dispatch(&mut sending, &sinks, &alert);
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sending.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            alerts = sending.len(),
            "stopping with alert deliveries still retrying; they are abandoned"
        );
    }
}

fn dispatch(sending: &mut JoinSet<()>, sinks: &Arc<[Webhook]>, alert: &Alert) {
    let body = match serde_json::to_vec(alert) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an alert");
            return;
        }
    };
    if sinks.is_empty() {
        AlertUnsent {
            body: &String::from_utf8_lossy(&body),
            kind: alert.kind.as_str(),
        }
        .emit();
        return;
    }
    for sink in sinks.iter() {
        sending.spawn(sink.clone().deliver(
            body.clone(),
            alert.kind,
            alert.queue.clone(),
            alert.job.clone(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn rules(threshold: u32) -> GroupRules {
        GroupRules {
            window: Duration::from_secs(300),
            threshold,
            cooldown: Duration::from_secs(900),
            growth_factor: 2.0,
            group_wait: Duration::from_secs(10),
        }
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
        }
    }

    #[test]
    fn every_kind_is_preregistered_under_its_name() {
        assert_eq!(
            AlertKind::ALL.map(AlertKind::as_str),
            crate::obs::metrics::ALERT_KINDS
        );
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
    fn take_all_sends_what_is_still_gathering() {
        let mut g = Grouper::new(rules(1), None);
        g.observe(dead("a", 0, "x"), 0);
        assert_eq!(g.take_all(1).len(), 1);
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn webhooks_are_named_in_logs_without_path_or_credentials() {
        let cfg = WebhookConfig {
            url: Setting::Literal("https://user:pw@hooks.example.com:8443/T0/B1/secret".into()),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            max_attempts: 1,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hook = rt.block_on(async { Webhook::resolve(&cfg, &http_client()).unwrap() });
        assert_eq!(hook.shown, "https://hooks.example.com:8443");
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
