//! `ward schedules`: each `[[schedule]]` of the config with its next and
//! last fire; `ward schedules pause|resume|fire NAME` steers one.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::format::ts;
use super::target::RedisTarget;
use crate::config::{Config, ScheduleConfig};
use crate::control::Actor;
use crate::control::schedules::{self, ScheduleView};

/// `ward schedules`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SchedulesArgs {
    #[command(subcommand)]
    action: Option<ScheduleAction>,
    #[command(flatten)]
    target: RedisTarget,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ward schedules pause|resume|fire`
#[derive(Debug, Subcommand)]
enum ScheduleAction {
    /// Stop firing a schedule on every daemon until it is resumed.
    Pause(Act),
    /// Fire a paused schedule again, from its next fire time.
    Resume(Act),
    /// Enqueue a schedule's job now, outside its times.
    Fire(Act),
}

/// One schedule and why.
#[derive(Debug, Args)]
struct Act {
    #[command(flatten)]
    target: RedisTarget,
    /// The schedule's name.
    name: String,
    /// Why, for the audit trail.
    #[arg(long)]
    note: String,
    /// Who (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

impl SchedulesArgs {
    /// Lists the schedules, or acts on one.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        match self.action {
            Some(ScheduleAction::Pause(a)) => a.exec(Verb::Pause).await,
            Some(ScheduleAction::Resume(a)) => a.exec(Verb::Resume).await,
            Some(ScheduleAction::Fire(a)) => a.exec(Verb::Fire).await,
            None => list(&self.target, self.json).await,
        }
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Pause,
    Resume,
    Fire,
}

/// The config's schedules: they are only in the config.
fn config(target: &RedisTarget) -> anyhow::Result<Config> {
    let Some(path) = target.config() else {
        anyhow::bail!("give --config (or WARD_CONFIG): schedules are defined in the config file");
    };
    Ok(Config::load(&path)?)
}

fn find<'a>(cfg: &'a Config, name: &str) -> anyhow::Result<&'a ScheduleConfig> {
    cfg.schedules
        .iter()
        .find(|s| s.name == name)
        .with_context(|| {
            let names: Vec<&str> = cfg.schedules.iter().map(|s| s.name.as_str()).collect();
            format!(
                "no [[schedule]] named `{name}` in {} (it has: {})",
                cfg.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
}

impl Act {
    async fn exec(self, verb: Verb) -> anyhow::Result<()> {
        let cfg = config(&self.target)?;
        let schedule = find(&cfg, &self.name)?;
        let q = self.target.queue(&schedule.queue).await?;
        let actor = Actor::cli(self.by.as_deref());
        let name = &self.name;
        match verb {
            Verb::Pause | Verb::Resume => {
                let pause = matches!(verb, Verb::Pause);
                let changed = schedules::set_paused(&q, &actor, name, pause, &self.note).await?;
                let now = if pause { "paused" } else { "resumed" };
                if changed {
                    println!("schedule `{name}` {now}");
                } else {
                    println!("schedule `{name}` was already {now}; nothing changed");
                }
            }
            Verb::Fire => {
                let done = schedules::fire_now(&q, &actor, schedule, &self.note).await?;
                println!("schedule `{name}` fired now: job {}", done.id);
            }
        }
        Ok(())
    }
}

async fn list(target: &RedisTarget, json: bool) -> anyhow::Result<()> {
    let cfg = config(target)?;
    let mut views: Vec<ScheduleView> = Vec::new();
    for s in &cfg.schedules {
        let q = target.queue(&s.queue).await?;
        views.push(schedules::view(&q, s).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no [[schedule]] in {}", cfg.path.display());
        return Ok(());
    }
    for v in &views {
        let state = match &v.paused {
            Some(p) => format!(
                "paused by {} ({})",
                p["by"].as_str().unwrap_or("?"),
                p["note"].as_str().unwrap_or("")
            ),
            None => format!("next {}", ts(v.next_fire_ms)),
        };
        let last = match (&v.last_job, &v.last_job_state) {
            (Some(j), Some(st)) => format!("last {} -> job {j} ({st})", ts(v.last_fire_ms)),
            (Some(j), None) => format!("last {} -> job {j}", ts(v.last_fire_ms)),
            _ => "never fired".to_string(),
        };
        println!(
            "{:<20} {}/{} `{}` {}  {state}  {last}  missed={} overlap={}",
            v.name, v.queue, v.job, v.cron, v.timezone, v.missed, v.overlap
        );
    }
    Ok(())
}
