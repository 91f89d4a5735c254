//! `[[schedule]]` tables: a cron expression (in a time zone), a job type of
//! a defined queue, and what happens to missed and overlapping fires.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::raw::RawSchedule;
use crate::config::units::parse_duration;
use crate::config::{QueueConfig, ScheduleConfig};
use crate::schedule::{Missed, Overlap, parse_cron, parse_timezone};

/// `catch_up_max` when not set.
const CATCH_UP_MAX: u32 = 10;
/// `catch_up_window` when not set.
const CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The schedules in file order; those whose cron does not parse are left out
/// (after their problems are reported).
pub(super) fn schedules(
    raw: Vec<RawSchedule>,
    queues: &[QueueConfig],
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Vec<ScheduleConfig> {
    let mut schedules: Vec<ScheduleConfig> = Vec::new();
    for sc in raw {
        let name = sc.name.get_ref().clone();
        if name.is_empty() || name.contains(char::is_whitespace) {
            problem(
                sc.name.span(),
                format!("schedule name `{name}` must be non-empty, without whitespace"),
            );
        }
        if schedules.iter().any(|other| other.name == name) {
            problem(
                sc.name.span(),
                format!("schedule `{name}` is defined twice"),
            );
            continue;
        }
        let schedule = match parse_cron(sc.cron.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                problem(sc.cron.span(), format!("schedule `{name}`: {e}"));
                None
            }
        };
        let tz = match &sc.timezone {
            None => chrono_tz::Tz::UTC,
            Some(t) => parse_timezone(t.get_ref()).unwrap_or_else(|e| {
                problem(t.span(), format!("schedule `{name}`: {e}"));
                chrono_tz::Tz::UTC
            }),
        };
        let missed = missed(&name, &sc, problem);
        let overlap = match sc
            .overlap
            .as_ref()
            .map(|o| (o.get_ref().as_str(), o.span()))
        {
            None | Some(("allow", _)) => Overlap::Allow,
            Some(("skip", _)) => Overlap::Skip,
            Some((other, span)) => {
                problem(
                    span,
                    format!(
                        "schedule `{name}`: overlap `{other}` is neither \"allow\" nor \"skip\""
                    ),
                );
                Overlap::Allow
            }
        };
        let queue = sc.queue.get_ref().clone();
        let job = sc.job.get_ref().clone();
        match queues.iter().find(|q| q.name == queue) {
            None => problem(
                sc.queue.span(),
                format!("schedule `{name}` names queue `{queue}`, which no [[queue]] defines"),
            ),
            Some(q) if !q.jobs.contains_key(&job) => problem(
                sc.job.span(),
                format!(
                    "schedule `{name}` names job `{job}`, which no [[job]] of queue `{queue}` defines"
                ),
            ),
            Some(_) => {}
        }
        if let Some(schedule) = schedule {
            schedules.push(ScheduleConfig {
                name,
                cron: sc.cron.into_inner(),
                schedule,
                tz,
                missed,
                overlap,
                queue,
                job,
                payload: sc.payload.into_bytes(),
            });
        }
    }
    schedules
}

/// `missed`, `catch_up_max` and `catch_up_window`.
fn missed(name: &str, sc: &RawSchedule, problem: &mut dyn FnMut(Range<usize>, String)) -> Missed {
    let catch_up = match sc.missed.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("skip", _)) => false,
        Some(("catch_up", _)) => true,
        Some((other, span)) => {
            problem(
                span,
                format!("schedule `{name}`: missed `{other}` is neither \"skip\" nor \"catch_up\""),
            );
            false
        }
    };
    let stray =
        |k: &str, v: Option<Range<usize>>, problem: &mut dyn FnMut(Range<usize>, String)| {
            if let (false, Some(span)) = (catch_up, v) {
                problem(
                    span,
                    format!("schedule `{name}`: {k} only applies with missed = \"catch_up\""),
                );
            }
        };
    stray(
        "catch_up_max",
        sc.catch_up_max.as_ref().map(Spanned::span),
        problem,
    );
    stray(
        "catch_up_window",
        sc.catch_up_window.as_ref().map(Spanned::span),
        problem,
    );
    if !catch_up {
        return Missed::Skip;
    }
    let max = match &sc.catch_up_max {
        None => CATCH_UP_MAX,
        Some(m) => u32::try_from(*m.get_ref())
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .unwrap_or_else(|| {
                problem(
                    m.span(),
                    format!(
                        "schedule `{name}`: catch_up_max {} is out of range; use 1 to 10000",
                        m.get_ref()
                    ),
                );
                CATCH_UP_MAX
            }),
    };
    let window = match &sc.catch_up_window {
        None => CATCH_UP_WINDOW,
        Some(w) => parse_duration(w.get_ref()).unwrap_or_else(|e| {
            problem(w.span(), format!("schedule `{name}`: catch_up_window: {e}"));
            CATCH_UP_WINDOW
        }),
    };
    Missed::CatchUp { max, window }
}
