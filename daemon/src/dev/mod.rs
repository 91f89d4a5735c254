//! `ward dev`'s parts: the example plugins it finds, the config it writes
//! for them, its private `redis-server` and its temp dir. The command
//! itself (arguments, signals, what it prints) is `cli/dev.rs`; the daemon
//! it runs is the real one ([`crate::worker::run`] with a config loaded by
//! [`crate::config::Config::load`], so validation is the real one too).
//!
//! # Layout
//!
//! - this file: where plugins are looked for, which of them become job
//!   types, and the config text.
//! - `redis`: the private `redis-server`, stopped by PID.
//! - `workdir`: the temp dir, removed on exit.

mod redis;
mod workdir;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use self::redis::PrivateRedis;
pub use self::workdir::WorkDir;

/// The queue `ward dev` consumes.
pub const QUEUE: &str = "dev";

/// Where installed example plugins live (the Debian package's place).
pub const SYSTEM_PLUGINS: &str = "/usr/share/ward/plugins";

/// What can stop `ward dev` before its daemon starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// No folder looked in holds a `*.wasm` plugin Ward can run.
    #[error(
        "no example plugins found: looked for *.wasm in {}; build them with `scripts/build-plugins` (from the source tree) or name a folder with --plugins DIR",
        .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoPlugins {
        /// Every folder looked in, in order.
        looked: Vec<PathBuf>,
    },
    /// `redis-server` could not be started.
    #[error(
        "cannot start {program}: {source}; install Redis 7 or newer (apt install redis-server), pass --redis-server PATH, or use a running Redis with --redis URL"
    )]
    RedisSpawn {
        /// The program as named.
        program: PathBuf,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// `redis-server` started but exited or never accepted connections.
    #[error("{program} did not come up on 127.0.0.1:{port} ({why}); its log ends:\n{log_tail}")]
    RedisDown {
        /// The program as named.
        program: PathBuf,
        /// The port it was given.
        port: u16,
        /// Exited (with its status) or timed out.
        why: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The temp dir or a file in it could not be written.
    #[error("ward dev: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// One job type `ward dev` runs: a plugin file and what to say about it.
#[derive(Debug, Clone)]
pub struct DevJob {
    /// The job type's name: the file's stem (`echo` for `echo.wasm`).
    pub name: String,
    /// The plugin file.
    pub plugin: PathBuf,
    /// A payload worth trying, and what it does (known examples only).
    pub example: Option<(&'static str, &'static str)>,
    /// Extra `[[job]]` lines for this plugin (a known example's timeout).
    extra: &'static str,
}

/// The example plugins Ward ships, with a payload to try and the config
/// lines they want. Plugins not listed here run with the defaults.
const KNOWN: &[(&str, &str, &str, &str)] = &[
    (
        "echo",
        r#"{"hello":"ward"}"#,
        "succeeds with its payload as the result",
        "",
    ),
    ("noop", "{}", "does nothing, succeeds", ""),
    (
        "flaky",
        r#"{"fail":"transient","times":2}"#,
        "fails twice, is retried with backoff, then succeeds",
        "timeout = \"5s\"\nretry = { initial_delay = \"500ms\" }\n",
    ),
    (
        "python-example",
        r#"{"email":"Ada@Example.com","name":" Ada Lovelace "}"#,
        "normalises a contact record (Python); a bad field fails permanently",
        "timeout = \"10s\"\n",
    ),
    (
        "js-example",
        r#"{"email":"Ada@Example.com","name":" Ada Lovelace "}"#,
        "the same contact record, in JavaScript",
        "timeout = \"10s\"\n",
    ),
    (
        "c-example",
        r#"{"email":"Ada@Example.com","name":" Ada Lovelace ","simulate":"upstream-503"}"#,
        "the same in C; this payload fails twice with a 503 from `crm`, then succeeds",
        "timeout = \"5s\"\nretry = { initial_delay = \"500ms\" }\n",
    ),
    (
        "hostile",
        r#"{"do":"read_file","path":"/etc/passwd"}"#,
        "tries to get out of its sandbox; this one reads /etc/passwd and finds no files at all",
        "timeout = \"2s\"\n",
    ),
    (
        "webhook",
        r#"{"url":"http://127.0.0.1:8080/orders","body":{"order":17}}"#,
        "is refused by the sandbox: no host is in its http.allow (see the README's tour)",
        "timeout = \"10s\"\n",
    ),
];

/// The folders `ward dev` looks in for plugins, in order: `--plugins DIR`
/// alone when given; else `$CARGO_TARGET_DIR/plugins`, the `plugins`
/// folder of the target dir holding this binary (`target/debug/ward` →
/// `target/plugins`, where `scripts/build-plugins` puts them), and
/// [`SYSTEM_PLUGINS`].
#[must_use]
pub fn plugin_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(target).join("plugins"));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(Path::parent)
    {
        dirs.push(target.join("plugins"));
    }
    dirs.push(PathBuf::from(SYSTEM_PLUGINS));
    dirs.dedup();
    dirs
}

/// The plugins found, and those passed over with the reason.
#[derive(Debug)]
pub struct Found {
    /// The folder they came from.
    pub dir: PathBuf,
    /// The job types to run, by name.
    pub jobs: Vec<DevJob>,
    /// `(file name, why)` of each `*.wasm` not run.
    pub skipped: Vec<(String, String)>,
}

/// The first of `dirs` holding at least one `*.wasm` that `fits` (a job
/// plugin Ward can run: `fits` returns why not otherwise).
///
/// # Errors
/// [`DevError::NoPlugins`] naming every folder looked in.
pub fn find_plugins(
    dirs: &[PathBuf],
    mut fits: impl FnMut(&Path) -> Result<(), String>,
) -> Result<Found, DevError> {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        files.sort();
        let mut found = Found {
            dir: dir.clone(),
            jobs: Vec::new(),
            skipped: Vec::new(),
        };
        for plugin in files {
            let file = plugin
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = plugin
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(why) = crate::config::check_name(&name) {
                found
                    .skipped
                    .push((file, format!("its name as a job type {why}")));
                continue;
            }
            if let Err(why) = fits(&plugin) {
                found.skipped.push((file, why));
                continue;
            }
            let known = KNOWN.iter().find(|k| k.0 == name);
            found.jobs.push(DevJob {
                example: known.map(|k| (k.1, k.2)),
                extra: known.map_or("", |k| k.3),
                name,
                plugin,
            });
        }
        if !found.jobs.is_empty() {
            return Ok(found);
        }
    }
    Err(DevError::NoPlugins {
        looked: dirs.to_vec(),
    })
}

/// The config `ward dev` runs: Redis at `redis_url`, metrics on
/// `127.0.0.1:metrics_port`, one queue [`QUEUE`] with a job type per plugin.
#[must_use]
pub fn config_toml(redis_url: &str, metrics_port: u16, jobs: &[DevJob]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = String::from(
        "# Written by `ward dev`; removed with its temp dir on exit.\n\
         # A starting point for a config of your own (docs/configuration.md).\n\n",
    );
    // Writing to a String cannot fail.
    let _ = write!(
        t,
        "[redis]\nurl = {}\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\nsample_interval = \"1s\"\n\n\
         [[queue]]\nname = \"{QUEUE}\"\nconcurrency = 8\n",
        quote(redis_url)
    );
    for j in jobs {
        let _ = write!(
            t,
            "\n[[job]]\nname = {}\nqueue = \"{QUEUE}\"\nplugin = {}\n{}",
            quote(&j.name),
            quote(&j.plugin.to_string_lossy()),
            j.extra
        );
    }
    t
}

/// A free TCP port on 127.0.0.1 (bound, then released), never Redis'
/// usual 6379, so a Redis of the user's is never touched.
///
/// # Errors
/// The OS refuses to bind a loopback socket.
pub fn free_port() -> std::io::Result<u16> {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if port != 6379 {
            return Ok(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> WorkDir {
        let dir = WorkDir::create().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        dir
    }

    #[test]
    fn every_wasm_that_fits_becomes_a_job_type_named_after_its_file() {
        let dir = dir_with(&["echo.wasm", "alien.wasm", "bad name.wasm", "notes.txt"]);
        let found = find_plugins(&[dir.path().to_path_buf()], |p| {
            if p.ends_with("alien.wasm") {
                Err("not a job plugin".into())
            } else {
                Ok(())
            }
        })
        .unwrap();
        let names: Vec<_> = found.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["echo"]);
        assert!(found.jobs[0].example.is_some());
        let skipped: Vec<_> = found.skipped.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(skipped, ["alien.wasm", "bad name.wasm"]);
    }

    #[test]
    fn no_plugins_names_every_folder_looked_in() {
        let empty = dir_with(&["readme.txt"]);
        let dirs = [
            empty.path().to_path_buf(),
            PathBuf::from("/nonexistent/ward-plugins"),
        ];
        let err = find_plugins(&dirs, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
        assert!(err.contains("/nonexistent/ward-plugins"), "{err}");
        assert!(err.contains("scripts/build-plugins"), "{err}");
    }

    #[test]
    fn the_written_config_passes_the_real_validation() {
        let dir = dir_with(&["flaky.wasm", "my-plugin.wasm"]);
        let found = find_plugins(&[dir.path().to_path_buf()], |_| Ok(())).unwrap();
        let text = config_toml("redis://127.0.0.1:7777", 9999, &found.jobs);
        let path = dir.path().join("ward.toml");
        let cfg = crate::config::Config::from_toml(&path, &text).unwrap();
        assert_eq!(cfg.redis_url, "redis://127.0.0.1:7777");
        assert_eq!(cfg.queues.len(), 1);
        assert_eq!(cfg.queues[0].name, QUEUE);
        assert_eq!(cfg.queues[0].jobs.len(), 2);
    }

    #[test]
    fn plugins_given_with_the_flag_are_the_only_folder_looked_in() {
        let dirs = plugin_dirs(Some(Path::new("/x/plugins")));
        assert_eq!(dirs, [PathBuf::from("/x/plugins")]);
        assert_eq!(
            plugin_dirs(None).last(),
            Some(&PathBuf::from(SYSTEM_PLUGINS))
        );
    }
}
