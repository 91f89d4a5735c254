//! The `ward` command line: the daemon (`ward run`) and the tools around it,
//! one file per subcommand, each a clap struct with an `exec` method.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

mod admin;
mod audit;
mod batch;
mod batch_pause;
mod breakers;
mod cancel;
mod completions;
mod config;
mod dev;
mod dlq;
mod enqueue;
mod format;
mod job;
mod pause;
mod plugin;
mod reload;
mod run;
mod schedules;
mod stats;
mod target;
mod upstreams;

/// Where `ward run` and `ward config check` look for their config when
/// neither `--config` nor `WARD_CONFIG` names one (the .deb installs an
/// example there).
pub const DEFAULT_CONFIG: &str = "/etc/ward/ward.toml";

/// Ward runs background jobs from Redis streams in sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "ward", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `auto` is JSON when stdout is not a terminal (systemd, pipes).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run(run::RunArgs),
    /// A first run: a private redis-server, the example plugins, metrics,
    /// and what to try next; all cleaned up on Ctrl-C.
    Dev(dev::DevArgs),
    /// Make the running daemon reload its config and plugins (SIGHUP).
    Reload(reload::ReloadArgs),
    /// Add a job to a queue and print its id.
    Enqueue(enqueue::EnqueueArgs),
    /// Look at jobs.
    Job {
        #[command(subcommand)]
        command: job::JobCommand,
    },
    /// How many jobs each queue holds, by state: ready, leased (running or
    /// about to), delayed (retries and scheduled), dead.
    Stats(stats::StatsArgs),
    /// Each queue's circuit breakers: which upstreams hold jobs back, until when.
    Breakers(breakers::BreakersArgs),
    /// Each queue's upstreams: limits, tokens, attempts in flight,
    /// Retry-After holds, breakers.
    Upstreams(upstreams::UpstreamsArgs),
    /// Batches of jobs: create, seal, show (counts and failures grouped
    /// by class and code), list.
    Batch {
        #[command(subcommand)]
        command: batch::BatchCommand,
    },
    /// Inspect, requeue and discard dead letters (`ward:{Q}:dead`).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Check a config file and compile its plugins, without touching Redis.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Inspect plugins.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// The audit trail: every operator action, who did it, when and why.
    Audit(audit::AuditArgs),
    /// Serve the admin HTTP API ([admin] of the config) alone, with no worker.
    Admin(admin::AdminArgs),
    /// Each [[schedule]] with its next and last fire; pause, resume or fire one now.
    Schedules(schedules::SchedulesArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the ward(1) man page.
    #[command(hide = true)]
    Manpage,
    /// Pause a queue, or one job type of it, on every daemon: running
    /// attempts finish, new ones wait (held, no attempt spent).
    Pause(pause::PauseArgs),
    /// Resume a paused queue or job type: its held jobs go back to the stream.
    Resume(pause::ResumeArgs),
}

/// Parses the command line, runs it, and turns errors into a message and
/// a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's log level comes from its config ([log] level) unless
    // RUST_LOG is set; a config that does not load is reported by `run` itself.
    let loaded = match &cli.command {
        Command::Run(run) => Config::load(&run.config).ok(),
        Command::Admin(admin) => Config::load(&admin.config).ok(),
        _ => None,
    };
    let level = loaded.as_ref().and_then(|c| c.obs.log_level.clone());
    init_logging(
        cli.log_format,
        matches!(cli.command, Command::Run(_) | Command::Admin(_)),
        level.as_deref(),
    );
    // Tools need no more than one thread; the daemon as many as its config says.
    let threads = match &cli.command {
        Command::Run(_) => loaded.as_ref().map_or(1, Config::worker_threads),
        // `ward dev` runs the daemon with a config of its own making.
        Command::Dev(_) => 2,
        _ => 1,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ward: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, daemon: bool, level: Option<&str>) {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    crate::obs::logging::init(json, daemon, level);
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(run) => run.exec().await,
        Command::Dev(dev) => dev.exec().await,
        Command::Reload(reload) => reload.exec().await,
        Command::Enqueue(enqueue) => enqueue.exec().await,
        Command::Job { command } => command.exec().await,
        Command::Stats(stats) => stats.exec().await,
        Command::Breakers(breakers) => breakers.exec().await,
        Command::Upstreams(upstreams) => upstreams.exec().await,
        Command::Dlq { command } => command.exec().await,
        Command::Batch { command } => command.exec().await,
        Command::Config { command } => command.exec(),
        Command::Plugin { command } => command.exec(),
        Command::Audit(audit) => audit.exec().await,
        Command::Admin(admin) => admin.exec().await,
        Command::Schedules(s) => s.exec().await,
        Command::Completions(c) => {
            c.exec();
            Ok(())
        }
        Command::Manpage => completions::manpage(),
        Command::Pause(pause) => pause.exec().await,
        Command::Resume(resume) => resume.exec().await,
    }
}
