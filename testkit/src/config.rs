//! Config files for the daemon, as TOML text: one queue, retry defaults, and
//! `[[job]]` tables pointing at built plugins.

use std::path::Path;

use crate::{Redis, plugin};

/// Retry defaults for tests: three attempts, short delays, no jitter.
pub const FAST_RETRY: &str =
    "max_attempts = 3\ninitial_delay = \"20ms\"\nmax_delay = \"200ms\"\njitter = \"none\"";

/// The metrics endpoint on a free port the daemon picks, so daemons of
/// parallel tests never compete for the default 127.0.0.1:9464.
pub const METRICS_ANY_PORT: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A config with one queue: built up with the setters, written out with
/// [`Config::render`]. The free functions below are the shapes tests use.
#[derive(Debug, Clone)]
pub struct Config {
    top: String,
    redis_url: String,
    retry: String,
    queue: String,
    queue_body: String,
    jobs: String,
}

impl Config {
    /// Queue `q` on the Redis at `redis_url`, [`METRICS_ANY_PORT`] on top,
    /// [`FAST_RETRY`] as `[defaults.retry]`, no jobs yet.
    pub fn new(redis_url: &str) -> Config {
        Config {
            top: METRICS_ANY_PORT.to_string(),
            redis_url: redis_url.to_string(),
            retry: FAST_RETRY.to_string(),
            queue: "q".to_string(),
            queue_body: String::new(),
            jobs: String::new(),
        }
    }

    /// Tables written before `[redis]` (`[daemon]`, `[metrics]`, `[alerts]`),
    /// in place of [`METRICS_ANY_PORT`].
    pub fn top(mut self, top: &str) -> Config {
        self.top = top.to_string();
        self
    }

    /// The body of `[defaults.retry]`.
    pub fn retry(mut self, retry: &str) -> Config {
        self.retry = retry.to_string();
        self
    }

    /// The queue's name and the body of its table besides the name, e.g.
    /// `"concurrency = 8\nlease = \"1s\""`.
    pub fn queue(mut self, name: &str, body: &str) -> Config {
        self.queue = name.to_string();
        self.queue_body = body.to_string();
        self
    }

    /// The `[[job]]` tables (see [`job`] and [`job_table`]).
    pub fn jobs(mut self, jobs: &str) -> Config {
        self.jobs = jobs.to_string();
        self
    }

    /// The config file's text.
    pub fn render(&self) -> String {
        let Config {
            top,
            redis_url,
            retry,
            queue,
            queue_body,
            jobs,
        } = self;
        format!(
            "{top}\n[redis]\nurl = \"{redis_url}\"\n\n[defaults.retry]\n{retry}\n\n[[queue]]\nname = \"{queue}\"\n{queue_body}\n\n{jobs}"
        )
    }
}

/// A config for one queue `q` on `redis`, with `jobs` as `[[job]]` tables
/// and [`FAST_RETRY`] as `[defaults.retry]`.
pub fn config(redis: &Redis, concurrency: u32, jobs: &str) -> String {
    config_with(redis, concurrency, FAST_RETRY, jobs)
}

/// Like [`config`], with `retry` as the body of `[defaults.retry]`.
pub fn config_with(redis: &Redis, concurrency: u32, retry: &str, jobs: &str) -> String {
    config_full(redis, &format!("concurrency = {concurrency}"), retry, jobs)
}

/// Like [`config_with`], with `queue` as the body of queue `q`'s table
/// (besides its name), e.g. `"concurrency = 8\nlease = \"1s\""`.
pub fn config_full(redis: &Redis, queue: &str, retry: &str, jobs: &str) -> String {
    config_top(redis, METRICS_ANY_PORT, queue, retry, jobs)
}

/// Like [`config_full`], with `top` (e.g. `[metrics]` and `[alerts]`
/// tables) in place of [`METRICS_ANY_PORT`].
pub fn config_top(redis: &Redis, top: &str, queue: &str, retry: &str, jobs: &str) -> String {
    Config::new(&redis.url())
        .top(top)
        .queue("q", queue)
        .retry(retry)
        .jobs(jobs)
        .render()
}

/// Like [`config_with`], with `queue_keys` (such as `dead_max_len = 2`)
/// added to the `[[queue]]` table of `q`.
pub fn config_queue(
    redis: &Redis,
    concurrency: u32,
    retry: &str,
    queue_keys: &str,
    jobs: &str,
) -> String {
    // The top without its last newline keeps the text as it always was
    // (line numbers in config errors depend on it).
    config_top(
        redis,
        METRICS_ANY_PORT.trim_end(),
        &format!("concurrency = {concurrency}\n{queue_keys}"),
        retry,
        jobs,
    )
}

/// A `[[job]]` table for queue `q` running the example plugin `plugin_name`.
pub fn job(name: &str, plugin_name: &str, extra: &str) -> String {
    job_table(name, "q", &plugin(plugin_name), extra)
}

/// A `[[job]]` table for `queue` running the component at `plugin`, with
/// `extra` keys.
pub fn job_table(name: &str, queue: &str, plugin: &Path, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nqueue = \"{queue}\"\nplugin = \"{}\"\n{extra}\n",
        plugin.display()
    )
}
