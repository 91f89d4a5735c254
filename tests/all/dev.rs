//! `ward dev`: a private Redis and the example plugins in one command, what
//! it prints, a job run by pasting its enqueue command, and nothing left
//! behind after Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ward_testkit::{Redis, plugins, wait_for, ward, ward_command};

use crate::observability::get;

const WAIT: Duration = Duration::from_secs(60);
/// `ward dev` prints its banner once it has compiled every example plugin.
/// On a fresh machine the compile cache is empty, and compiling the Python
/// and JavaScript examples in a debug build, beside the rest of the suite
/// on two cores, took over a minute.
const BANNER_WAIT: Duration = Duration::from_secs(300);

/// A running `ward dev`, its stdout and stderr collected as they come;
/// killed (by PID) on drop if a test failed before stopping it.
struct Dev {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

impl Dev {
    fn start(extra: &[&str]) -> Dev {
        let mut child = ward_command()
            .args(["--log-format", "json", "dev", "--plugins"])
            .arg(plugins())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Dev { child, out, err }
    }

    /// The banner, once printed in full (its last line is the curl one).
    fn banner(&mut self) -> String {
        let deadline = Instant::now() + BANNER_WAIT;
        loop {
            let out = self.out.lock().unwrap().clone();
            if out.contains("curl -s") {
                return out;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ward dev exited ({status}) before its banner:\n{out}\n{}",
                    self.err()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no banner in {BANNER_WAIT:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn err(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. `-INT`) to the process.
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    fn exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ward dev still running {timeout:?} after the signal:\n{}",
                self.err()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dev {
    /// A test that failed early leaves `ward dev` running: SIGTERM first, so
    /// it stops its own redis-server and removes its temp dir (SIGKILL would
    /// orphan them), and SIGKILL only if it does not stop in time.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The banner line that starts with `label` (after its indent), split in words.
fn line<'a>(banner: &'a str, label: &str) -> Vec<&'a str> {
    banner
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{banner}"))
        .split_whitespace()
        .collect()
}

/// The printed `... enqueue --redis URL dev echo '<payload>'` command, as
/// the arguments to give `ward` (the program itself dropped, the payload
/// unquoted).
fn enqueue_command(banner: &str) -> Vec<String> {
    let cmd = banner
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" enqueue --redis ") && l.contains(" dev echo "))
        .unwrap_or_else(|| panic!("no echo enqueue command in:\n{banner}"));
    let (words, quoted) = cmd.split_once(" '").expect("a quoted payload");
    let payload = quoted
        .strip_suffix('\'')
        .expect("the payload closes its quote");
    let mut args: Vec<String> = words.split_whitespace().skip(1).map(String::from).collect();
    args.push(payload.to_string());
    args
}

fn metrics_port(banner: &str) -> u16 {
    let url = line(banner, "metrics")[1];
    let port = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("metrics URL {url}"));
    port.parse().unwrap()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; it is gone once its parent reaped it.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The PIDs of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state, ppid, ...
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1));
        if ppid == Some(&pid.to_string()) {
            out.push(child);
        }
    }
    out
}

/// Runs the printed enqueue command and waits until its job succeeded.
fn enqueue_and_succeed(banner: &str, url: &str) -> serde_json::Value {
    let args = enqueue_command(banner);
    assert!(args.iter().any(|a| a == url), "{args:?} names {url}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ward(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        ward_testkit::stderr(&out)
    );
    let id = ward_testkit::stdout(&out).trim().to_string();
    let mut last = serde_json::Value::Null;
    wait_for(WAIT, "the echo job to succeed", || {
        let out = ward(&["job", "show", "--redis", url, "dev", &id, "--json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap();
        }
        last["state"] == "succeeded"
    });
    last
}

#[test]
fn dev_runs_a_job_and_leaves_nothing_behind_after_ctrl_c() {
    let mut dev = Dev::start(&[]);
    let banner = dev.banner();
    let url = line(&banner, "redis")[1].to_string();
    assert!(url.starts_with("redis://127.0.0.1:"), "{banner}");
    assert!(!url.ends_with(":6379"), "never the usual port: {url}");
    let pid_word = banner
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no redis-server pid in:\n{banner}"));
    let redis_pid: u32 = pid_word.parse().unwrap();
    let tmp = PathBuf::from(line(&banner, "temp dir")[2]);
    assert!(tmp.join("ward.toml").is_file(), "{}", tmp.display());
    assert!(alive(redis_pid));
    for what in ["job show --redis", "stats --redis"] {
        assert!(banner.contains(what), "`{what}` suggested:\n{banner}");
    }

    let job = enqueue_and_succeed(&banner, &url);
    assert_eq!(job["job"], "echo", "{job}");

    let port = metrics_port(&banner);
    let (status, body) = get(port, "/metrics").expect("the metrics URL answers");
    assert_eq!(status, 200);
    assert!(body.contains("ward_"), "{body}");

    // The admin API, with the operator token made for this run.
    let admin = line(&banner, "admin");
    let api_port: u16 = admin[1]
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/v1/queues"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("admin URL in:\n{banner}"));
    let token = admin[4].trim_end_matches(',');
    let queue = crate::admin::client::request(api_port, "GET", "/v1/queues/dev", Some(token), "");
    assert_eq!(queue.status, 200, "{}", queue.text);
    assert_eq!(queue.body["queue"], "dev", "{}", queue.text);
    assert_eq!(queue.body["consumed"], true, "{}", queue.text);
    assert!(
        queue.body["job_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "echo"),
        "{}",
        queue.text
    );
    let screen = line(&banner, "screen")[1];
    assert_eq!(
        screen,
        format!("http://127.0.0.1:{api_port}/ui/"),
        "{banner}"
    );
    let login = crate::admin::client::request(api_port, "GET", "/ui/", None, "");
    assert_eq!(
        login.status, 303,
        "the screen sends a newcomer to its login: {}",
        login.text
    );
    let refused =
        crate::admin::client::request(api_port, "GET", "/v1/queues/dev", Some("nope"), "");
    assert_eq!(refused.status, 401, "{}", refused.text);

    dev.signal("-INT");
    let status = dev.exit_within(Duration::from_secs(10));
    assert!(status.success(), "exit {status}:\n{}", dev.err());
    wait_for(Duration::from_secs(5), "redis-server to be gone", || {
        !alive(redis_pid)
    });
    assert!(!tmp.exists(), "{} removed", tmp.display());
}

#[test]
fn dev_with_a_redis_url_uses_it_and_starts_none() {
    let redis = Redis::start();
    let mut dev = Dev::start(&["--redis", &redis.url()]);
    let banner = dev.banner();
    assert_eq!(line(&banner, "redis")[1], redis.url(), "{banner}");
    assert!(
        children(dev.child.id()).is_empty(),
        "no child process: {:?}",
        children(dev.child.id())
    );
    let tmp = PathBuf::from(line(&banner, "temp dir")[2]);

    enqueue_and_succeed(&banner, &redis.url());

    dev.signal("-TERM");
    let status = dev.exit_within(Duration::from_secs(10));
    assert!(status.success(), "exit {status}:\n{}", dev.err());
    assert!(!tmp.exists(), "{} removed", tmp.display());
    // The given Redis is the user's: still there.
    let pong: String = redis::cmd("PING").query(&mut redis.con()).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn dev_without_plugins_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let out = ward_command()
        .args(["dev", "--redis", "redis://127.0.0.1:1", "--plugins"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let dir: &Path = empty.path();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("scripts/build-plugins"), "{err}");
}
