//! `[[schedule]]` tables: a cron expression and a job type of a defined queue.

use std::ops::Range;
use std::str::FromStr as _;

use crate::config::raw::RawSchedule;
use crate::config::{QueueConfig, ScheduleConfig};

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
        let schedule = match cron::Schedule::from_str(sc.cron.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                problem(
                    sc.cron.span(),
                    format!(
                        "schedule `{name}`: cron `{}` does not parse ({e}); write six fields, seconds first, in UTC: \"0 0 3 * * *\" is 03:00:00 every day",
                        sc.cron.get_ref()
                    ),
                );
                None
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
                queue,
                job,
                payload: sc.payload.into_bytes(),
            });
        }
    }
    schedules
}
