//! `ward dev`: a first run in one command. A private `redis-server` (or
//! `--redis URL`), the example plugins as job types of a queue `dev`, the
//! real daemon with metrics, and what to try next; everything it started
//! is stopped and removed on Ctrl-C. The parts are in [`crate::dev`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::dev::{self, DevJob, Found, PrivateRedis, WorkDir};

/// `ward dev`
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Use this Redis (7 or newer) instead of starting a private one.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The redis-server program to start (default: `redis-server` on PATH).
    #[arg(long, value_name = "PATH", default_value = "redis-server")]
    redis_server: PathBuf,
    /// The folder of plugins (`*.wasm`) to run (default: the first of
    /// $CARGO_TARGET_DIR/plugins, the target dir holding this binary's
    /// `plugins`, /usr/share/ward/plugins that holds any).
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
}

impl DevArgs {
    /// Runs the daemon on the example plugins until SIGINT or SIGTERM, then
    /// stops what it started. A second signal exits at once (still
    /// stopping the private Redis and removing the temp dir).
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        // Installed first, so a signal at any point from here on is ours.
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

        let found = dev::find_plugins(&dev::plugin_dirs(self.plugins.as_deref()), fits)?;
        let work = Arc::new(WorkDir::create()?);
        let (url, redis) = match self.redis {
            Some(url) => (url, None),
            None => {
                let r = PrivateRedis::start(&self.redis_server, work.path())?;
                (r.url(), Some(Arc::new(r)))
            }
        };
        let metrics_port = dev::free_port().context("cannot find a free port for metrics")?;
        let path = work.path().join("ward.toml");
        std::fs::write(&path, dev::config_toml(&url, metrics_port, &found.jobs))
            .with_context(|| format!("cannot write {}", path.display()))?;
        let config = Config::load(&path)?;
        // The admin API (and whatever the admin server serves) on a free
        // port, with an operator token made for this run only.
        let token = format!("dev-{:032x}", rand::random::<u128>());
        let mut tokens = crate::admin::Tokens::default();
        tokens.add("dev", crate::config::admin::Role::Operator, &token)?;
        let admin = crate::admin::Server::bind_with_tokens(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            &config,
            tokens,
        )
        .await?;
        let admin_port = admin.local_addr()?.port();
        let (reload, reloads) = crate::worker::reload_channel();
        let admin = admin.with_reload(reload);

        print_banner(&Banner {
            url: &url,
            redis: redis.as_deref(),
            metrics_port,
            admin: (admin_port, &token),
            work: work.path(),
            config: &path,
            found: &found,
        });

        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let (redis2, work2) = (redis.clone(), work.clone());
        tokio::spawn(async move {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("ward dev: stopping (Ctrl-C again to stop at once)");
            let _ = first_tx.send(());
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            if let Some(r) = &redis2 {
                r.stop();
            }
            work2.remove();
            eprintln!("ward dev: stopped at once");
            std::process::exit(130);
        });

        let (api_stop, mut api_stopped) = tokio::sync::watch::channel(false);
        let api = tokio::spawn(admin.serve(async move {
            let _ = api_stopped.wait_for(|stop| *stop).await;
        }));
        let ran = crate::worker::run_with(
            config,
            async {
                let _ = first_rx.await;
            },
            reloads,
        )
        .await;
        let _ = api_stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api).await;
        if let Some(r) = &redis {
            r.stop();
        }
        work.remove();
        match &redis {
            Some(r) => eprintln!(
                "ward dev: stopped; redis-server (pid {}) stopped, {} removed",
                r.pid,
                work.path().display()
            ),
            None => eprintln!("ward dev: stopped; {} removed", work.path().display()),
        }
        ran
    }
}

/// Whether Ward can run the plugin at `path` as a job type; compiles it
/// (into the default compile cache, so the daemon's own load is quick).
fn fits(path: &Path) -> Result<(), String> {
    let cache = crate::config::defaults::compile_cache_dir();
    let runtime =
        crate::runtime::Runtime::new(&crate::runtime::RuntimeSpec::single(cache.as_deref()))
            .map_err(|e| e.to_string())?;
    let info = runtime.inspect(path).map_err(|e| e.to_string())?;
    info.fits.map_err(|why| {
        let first = why.lines().next().unwrap_or_default();
        format!("not a job plugin ({first})")
    })
}

/// What the banner shows.
struct Banner<'a> {
    url: &'a str,
    redis: Option<&'a PrivateRedis>,
    metrics_port: u16,
    /// The admin API's port and its operator token.
    admin: (u16, &'a str),
    work: &'a Path,
    config: &'a Path,
    found: &'a Found,
}

/// Prints where everything is and what to try, as commands to paste.
fn print_banner(b: &Banner<'_>) {
    let ward = ward_command();
    let url = b.url;
    let q = dev::QUEUE;
    println!("ward dev: the example plugins on a queue `{q}`, until Ctrl-C");
    println!();
    match b.redis {
        Some(r) => println!(
            "  redis     {url}   (a private redis-server, pid {}; stopped on exit)",
            r.pid
        ),
        None => println!("  redis     {url}   (yours, given with --redis; left running)"),
    }
    println!(
        "  metrics   http://127.0.0.1:{}/metrics   (and /healthz, /readyz)",
        b.metrics_port
    );
    println!(
        "  admin     http://127.0.0.1:{}/v1/queues   (operator token {}, for this run only)",
        b.admin.0, b.admin.1
    );
    println!(
        "  screen    http://127.0.0.1:{}/ui/   (log in with the token above)",
        b.admin.0
    );
    println!("  temp dir  {}   (removed on exit)", b.work.display());
    println!("  config    {}", b.config.display());
    println!("  plugins   {}", b.found.dir.display());
    for j in &b.found.jobs {
        let what = j.example.map_or("", |e| e.1);
        println!("    {:<16} {what}", j.name);
    }
    for (file, why) in &b.found.skipped {
        println!("    skipped {file}: {why}");
    }
    println!();
    println!("Try, in another terminal:");
    println!();
    let first = first_example(&b.found.jobs);
    println!(
        "  {ward} enqueue --redis {url} {q} {} {}",
        first.0,
        shell_quote(first.1)
    );
    println!("  {ward} job show --redis {url} {q} <the id it printed>");
    for j in &b.found.jobs {
        if let Some((payload, _)) = j.example
            && j.name != first.0
        {
            println!(
                "  {ward} enqueue --redis {url} {q} {} {}",
                j.name,
                shell_quote(payload)
            );
        }
    }
    println!("  {ward} stats --redis {url} {q}");
    println!("  {ward} dlq list --redis {url} {q}");
    println!("  curl -s http://127.0.0.1:{}/metrics", b.metrics_port);
    println!(
        "  curl -s -H 'Authorization: Bearer {}' http://127.0.0.1:{}/v1/queues/{q}",
        b.admin.1, b.admin.0
    );
    println!();
}

/// The job type to show first: `echo` when found, else the first one.
fn first_example(jobs: &[DevJob]) -> (&str, &str) {
    jobs.iter()
        .find(|j| j.name == "echo")
        .or_else(|| jobs.first())
        .map_or(("echo", "{}"), |j| {
            (j.name.as_str(), j.example.map_or("{}", |e| e.0))
        })
}

/// How to call this binary in a pasted command: `ward` when that is what
/// PATH finds, else its full path (e.g. under `cargo run`).
fn ward_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "ward".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .filter_map(|d| std::fs::canonicalize(d.join("ward")).ok())
            .next()
            .is_some_and(|found| found == me)
    });
    if on_path {
        "ward".into()
    } else {
        shell_quote(&me.to_string_lossy())
    }
}

/// `s` as one shell word (single quotes, `'` written as `'\''`).
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/usr/bin/ward"), "/usr/bin/ward");
        assert_eq!(shell_quote(r#"{"a":1}"#), r#"'{"a":1}'"#);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
