//! An alert's body, in the shape its receiver takes (`[[alerts.webhook]]
//! format`): Ward's own JSON object, a Slack-compatible `{"text": ...}`, or
//! Alertmanager's v2 alert list, so a team's existing routing, grouping
//! and silences apply to Ward's alerts too. Every shape says the same:
//! what, where, how many, since when, the newest job's attempts, elapsed
//! time, class, code, upstream and message (secrets already redacted).

use serde_json::{Value, json};

use super::AlertKind;
use super::group::Alert;
use crate::config::observability::WebhookFormat;

/// The body for `format`.
///
/// # Errors
/// The alert cannot be serialized (it always can; kept for the caller's log).
pub fn body(
    alert: &Alert,
    format: WebhookFormat,
    cooldown_secs: u64,
) -> serde_json::Result<Vec<u8>> {
    match format {
        WebhookFormat::Ward => serde_json::to_vec(alert),
        WebhookFormat::Slack => serde_json::to_vec(&json!({ "text": text(alert) })),
        WebhookFormat::Alertmanager => serde_json::to_vec(&alertmanager(alert, cooldown_secs)),
    }
}

/// The alert's name as Prometheus rules name theirs (and `docs/runbooks.md`).
fn alertname(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::DeadLetter => "WardDeadLettersRising",
        AlertKind::BreakerOpen => "WardBreakerOpen",
        AlertKind::RetrySpike => "WardRetryRateSpike",
        AlertKind::BatchFailures => "WardBatchFailures",
        AlertKind::QueueWait => "WardQueueLagHigh",
        AlertKind::Stalled => "WardQueueStalled",
    }
}

/// The newest job's story in one line: "job 17-0: 8 attempts over 4m 2s,
/// last transient [http-500] from inventory: HTTP 500".
fn latest_line(alert: &Alert) -> String {
    let l = &alert.latest;
    let elapsed = humantime::format_duration(std::time::Duration::from_secs(l.elapsed_ms / 1000));
    let class = l.class.as_deref().unwrap_or("unknown");
    let code = l
        .code
        .as_deref()
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    let upstream = l
        .upstream
        .as_deref()
        .map(|u| format!(" from {u}"))
        .unwrap_or_default();
    let attempts = if l.attempts == 1 {
        "attempt"
    } else {
        "attempts"
    };
    format!(
        "job {}: {} {attempts} over {elapsed}, last {class}{code}{upstream}: {}",
        l.job_id, l.attempts, l.error
    )
}

/// The classes in the window, largest first: "19 permanent, 1 transient".
fn classes_line(alert: &Alert) -> String {
    let mut classes: Vec<(&String, &usize)> = alert.classes.iter().collect();
    classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    classes
        .iter()
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A chat message: the summary, then since when and by class, then the
/// newest job.
fn text(alert: &Alert) -> String {
    let escalated = if alert.escalated {
        "ESCALATED, still unresolved: "
    } else {
        ""
    };
    format!(
        "{escalated}{}\nsince {} ({})\n{}\nreason: {}",
        alert.summary,
        alert.first_at,
        classes_line(alert),
        latest_line(alert),
        alert.latest.reason
    )
}

/// One Alertmanager v2 alert. It ends `cooldown` after the last event
/// unless Ward sends it again (a repeat renews it), so Alertmanager
/// resolves it by itself once the failures stop.
fn alertmanager(alert: &Alert, cooldown_secs: u64) -> Value {
    let ends = chrono::DateTime::parse_from_rfc3339(&alert.last_at)
        .map(|t| {
            (t + chrono::Duration::seconds(i64::try_from(cooldown_secs).unwrap_or(i64::MAX / 2)))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|_| alert.last_at.clone());
    let mut labels = json!({
        "alertname": alertname(alert.kind),
        "severity": if alert.escalated { "critical" } else { "warning" },
        "queue": alert.queue,
        "job_type": alert.job,
        "source": "ward",
    });
    if let Some(env) = &alert.environment {
        labels["environment"] = json!(env);
    }
    if let Some(u) = &alert.latest.upstream {
        labels["upstream"] = json!(u);
    }
    json!([{
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "description": format!("since {} ({}); {}; reason: {}", alert.first_at, classes_line(alert), latest_line(alert), alert.latest.reason),
            "count": alert.count.to_string(),
            "example_job_id": alert.latest.job_id,
            "runbook_url": format!("docs/runbooks.md#{}", alertname(alert.kind).to_lowercase()),
        },
        "startsAt": alert.first_at,
        "endsAt": ends,
    }])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::obs::alerts::group::Latest;

    fn alert() -> Alert {
        Alert {
            kind: AlertKind::DeadLetter,
            summary: "20 dead letters of job type `send` in queue `q` within 1m (prod)".into(),
            environment: Some("prod".into()),
            queue: "q".into(),
            job: "send".into(),
            count: 20,
            threshold: 5,
            window_seconds: 60,
            first_at: "2026-12-01T03:00:00.000Z".into(),
            last_at: "2026-12-01T03:04:00.000Z".into(),
            classes: BTreeMap::from([("transient".into(), 19), ("permanent".into(), 1)]),
            latest: Latest {
                job_id: "17-0".into(),
                attempts: 8,
                elapsed_ms: 242_000,
                class: Some("transient".into()),
                code: Some("http-500".into()),
                upstream: Some("inventory".into()),
                reason: "budget exhausted".into(),
                error: "HTTP 500".into(),
            },
            escalated: false,
        }
    }

    #[test]
    fn slack_text_tells_the_newest_jobs_story() {
        let body: Value =
            serde_json::from_slice(&body(&alert(), WebhookFormat::Slack, 900).unwrap()).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("20 dead letters of job type `send`"),
            "{text}"
        );
        assert!(text.contains("19 transient, 1 permanent"), "{text}");
        assert!(
            text.contains("job 17-0: 8 attempts over 4m 2s, last transient [http-500] from inventory: HTTP 500"),
            "{text}"
        );
        assert_eq!(body.as_object().unwrap().len(), 1, "only `text`: {body}");
    }

    #[test]
    fn alertmanager_gets_one_v2_alert_that_ends_a_cooldown_after_the_last_event() {
        let body: Value =
            serde_json::from_slice(&body(&alert(), WebhookFormat::Alertmanager, 900).unwrap())
                .unwrap();
        let a = &body[0];
        assert_eq!(body.as_array().unwrap().len(), 1);
        assert_eq!(a["labels"]["alertname"], "WardDeadLettersRising");
        assert_eq!(a["labels"]["job_type"], "send");
        assert_eq!(a["labels"]["upstream"], "inventory");
        assert_eq!(a["labels"]["environment"], "prod");
        assert_eq!(a["startsAt"], "2026-12-01T03:00:00.000Z");
        assert_eq!(a["endsAt"], "2026-12-01T03:19:00.000Z");
        assert_eq!(
            a["annotations"]["runbook_url"],
            "docs/runbooks.md#warddeadlettersrising"
        );
        // Every label and annotation value is a string, as the API requires.
        for part in ["labels", "annotations"] {
            assert!(
                a[part].as_object().unwrap().values().all(Value::is_string),
                "{a}"
            );
        }
    }
}
