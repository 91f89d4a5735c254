//! Running Ward as a service: what journald sees, the compile cache.

use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use ward_testkit::*;

#[test]
fn under_journald_every_line_starts_with_its_syslog_priority() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ward.toml");
    std::fs::write(&cfg, config(&redis, 2, &job("flaky", "flaky", ""))).unwrap();
    let log = dir.path().join("journal");
    let out = std::fs::File::create(&log).unwrap();
    // What systemd sets for StandardOutput=journal: the stream's device and
    // inode, which the daemon checks against its stdout.
    let meta = out.metadata().unwrap();
    let mut child = ward_command()
        .args(["--log-format", "json", "run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(Duration::from_secs(60), "ward to start", || {
        read().contains("ward is running")
    });
    let id = xadd(&redis, "flaky", r#"{"fail":"permanent"}"#, &[]);
    assert_eq!(
        wait_final(&redis, &id, Duration::from_secs(20))["state"],
        "dead"
    );
    wait_for(Duration::from_secs(10), "the dead-letter line", || {
        read().contains("dead-lettering")
    });
    child.kill().unwrap();
    child.wait().unwrap();

    let text = read();
    let mut seen = Vec::new();
    for line in text.lines() {
        let (prefix, json) = line.split_at(3);
        let v: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("not <N> then JSON ({e}): {line}"));
        let want = match v["level"].as_str().unwrap() {
            "ERROR" => "<3>",
            "WARN" => "<4>",
            "INFO" => "<6>",
            _ => "<7>",
        };
        assert_eq!(prefix, want, "{line}");
        seen.push((
            prefix.to_string(),
            v["message"].as_str().unwrap_or("").to_string(),
        ));
    }
    assert!(
        seen.iter()
            .any(|(p, m)| p == "<4>" && m.contains("dead-lettering")),
        "{text}"
    );
    assert!(
        seen.iter()
            .any(|(p, m)| p == "<6>" && m.contains("ward is running")),
        "{text}"
    );
}

#[test]
fn outside_journald_lines_are_plain_json() {
    let redis = Redis::start();
    let w = Ward::start_with_env(
        &config(&redis, 2, &job("noop", "noop", "")),
        // Inherited from a unit, but stdout is not that stream.
        &[("JOURNAL_STREAM", "1:1")],
    )
    .ready();
    let logs = w.logs();
    assert!(logs.lines().all(|l| l.starts_with('{')), "{logs}");
}

/// A daemon's `plugins loaded` line: how many plugins, how many the
/// compile cache answered, and how long loading them all took (ms).
fn loaded(w: &Ward) -> (u64, u64, u64) {
    let lines = w.log_lines();
    let l = lines
        .iter()
        .find(|l| l["message"] == "plugins loaded")
        .unwrap_or_else(|| panic!("no `plugins loaded` line: {}", w.logs()));
    let n = |k: &str| l[k].as_u64().unwrap();
    (n("plugins"), n("from_cache"), n("took_ms"))
}

#[test]
fn a_second_start_takes_the_python_and_js_plugins_from_the_compile_cache() {
    build_lang_plugins();
    let redis = Redis::start();
    let cache = tempfile::tempdir().unwrap();
    let top = format!(
        "{METRICS_ANY_PORT}[daemon]\ncompile_cache = \"{}\"\n",
        cache.path().display()
    );
    let cfg = config_top(
        &redis,
        &top,
        "",
        "",
        &(job("py", "python-example", "") + &job("js", "js-example", "")),
    );
    let start = || {
        let mut w = Ward::start(&cfg);
        wait_for(
            Duration::from_secs(600),
            "ward to compile and start",
            || {
                assert!(w.is_running(), "ward exited:\n{}", w.logs());
                w.logs().contains("ward is running")
            },
        );
        w
    };
    let first = start();
    let cold = loaded(&first);
    assert_eq!((cold.0, cold.1), (2, 0), "both compiled: {cold:?}");
    let files = walk(cache.path());
    assert!(
        files > 0,
        "the compiles were kept in {}",
        cache.path().display()
    );
    first.stop();

    let second = start();
    let warm = loaded(&second);
    assert_eq!((warm.0, warm.1), (2, 2), "both from the cache: {warm:?}");
    eprintln!("compile (debug build): first start {cold:?}, second start {warm:?}");
    // The cached compile runs jobs like a fresh one.
    let id = enqueue(
        &redis,
        "py",
        r#"{"email":"Ada@Example.com","name":" Ada Lovelace ","simulate":"none"}"#,
    );
    assert_eq!(
        wait_final(&redis, &id, Duration::from_secs(60))["state"],
        "succeeded"
    );
}

/// How many files are under `dir`.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// The paths of a .deb, as `dpkg-deb -c` lists them (without the leading `.`).
fn deb_paths(deb: &std::path::Path) -> Vec<String> {
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

#[test]
fn the_deb_holds_the_binary_unit_config_completions_and_man_page() {
    // The binary this test suite runs, packaged as it is: building it again
    // here (`cargo build -p ward`) would unify features differently and,
    // on a cold machine, compile every dependency a second time.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ward"));
    let target = bin.parent().and_then(|d| d.parent()).unwrap();
    let out = Command::new("bash")
        .arg(workspace().join("scripts/package-deb"))
        .args(["--dev", "--no-build"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(out.status.success(), "package-deb: {}", stderr(&out));
    let deb = std::path::PathBuf::from(stdout(&out).lines().last().unwrap().trim());
    let paths = deb_paths(&deb);
    for want in [
        "/usr/bin/ward",
        "/lib/systemd/system/ward.service",
        "/etc/ward/ward.toml",
        "/usr/share/bash-completion/completions/ward",
        "/usr/share/zsh/vendor-completions/_ward",
        "/usr/share/fish/vendor_completions.d/ward.fish",
        "/usr/share/man/man1/ward.1.gz",
        "/usr/share/ward/prometheus/ward-alerts.yml",
        "/usr/share/doc/ward/docs/control.md",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} missing: {paths:?}");
    }
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles")
        .output()
        .unwrap();
    assert!(
        stdout(&info).contains("/etc/ward/ward.toml"),
        "a conffile: {}",
        stdout(&info)
    );

    // What it installs runs, and its unit starts what it installs.
    let root = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", stderr(&x));
    let bin = root.path().join("usr/bin/ward");
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(
        stdout(&version).starts_with("ward "),
        "{}",
        stdout(&version)
    );
    let unit =
        std::fs::read_to_string(root.path().join("lib/systemd/system/ward.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/ward "), "{unit}");
    unit_is_valid_and_hardened(root.path(), &unit);
    let bash = std::fs::read_to_string(
        root.path()
            .join("usr/share/bash-completion/completions/ward"),
    )
    .unwrap();
    assert!(
        bash.contains("pause") && bash.contains("dlq"),
        "completions know the commands"
    );
    // The example config the package installs is a valid config as written,
    // but for its plugins, which the operator supplies.
    let check = Command::new(&bin)
        .args(["config", "check", "--config"])
        .arg(root.path().join("etc/ward/ward.toml"))
        .output()
        .unwrap();
    let said = stderr(&check);
    assert!(
        check.status.success() || said.contains(".wasm"),
        "only missing plugins may fail the example config: {said}"
    );
}

/// A daemon under a fake systemd: its notifications arrive on a datagram
/// socket the test owns, and `WATCHDOG_PID` is its own pid (set by the
/// shell it replaces), as systemd sets it.
struct Notified {
    child: std::process::Child,
    sock: std::os::unix::net::UnixDatagram,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _redis: Redis,
}

impl Notified {
    fn start(env: &[(&str, &str)]) -> Notified {
        let redis = Redis::start();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ward.toml");
        std::fs::write(&cfg, config(&redis, 2, &job("noop", "noop", ""))).unwrap();
        let sock_path = dir.path().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let log = dir.path().join("ward.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"WATCHDOG_PID=$$ exec "$0" --log-format json run --config "$1""#)
            .arg(ward_bin())
            .arg(&cfg)
            .env_remove("CACHE_DIRECTORY")
            .env("XDG_CACHE_HOME", compile_cache())
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Notified {
            child,
            sock,
            log,
            _dir: dir,
            _redis: redis,
        }
    }

    /// Every notification that arrives within `d`, with when it arrived.
    fn collect(&self, d: Duration) -> Vec<(std::time::Instant, String)> {
        let end = std::time::Instant::now() + d;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                got.push((std::time::Instant::now(), text));
            }
        }
        got
    }

    /// Waits for a notification containing `what`; the log as it was then.
    fn wait_for(&self, what: &str, timeout: Duration) -> String {
        let end = std::time::Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).contains(what)
            {
                return std::fs::read_to_string(&self.log).unwrap_or_default();
            }
        }
        panic!(
            "no {what} within {timeout:?}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pings(got: &[(std::time::Instant, String)]) -> Vec<std::time::Instant> {
    got.iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn under_systemd_ready_follows_the_plugins_the_readers_feed_the_watchdog_and_stop_says_so() {
    let mut d = Notified::start(&[]);
    let log_at_ready = d.wait_for("READY=1", Duration::from_secs(60));
    assert!(
        log_at_ready.contains("plugin compiled") && log_at_ready.contains("ward is running"),
        "READY only once the plugins are compiled and the queues consume: {log_at_ready}"
    );
    let got = d.collect(Duration::from_secs(3));
    let p = pings(&got);
    // Twice per (1 s) watchdog interval while healthy.
    assert!(p.len() >= 4, "{got:?}");
    assert!(
        got.iter()
            .any(|(_, m)| m.contains("STATUS=running; 0 attempts in flight")),
        "{got:?}"
    );
    d.sigterm();
    d.wait_for("STOPPING=1", Duration::from_secs(10));
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_reader_that_hangs_stops_the_watchdog_pings() {
    let d = Notified::start(&[("WARD_TEST_STALL_READER", "q")]);
    d.wait_for("READY=1", Duration::from_secs(60));
    // The reader hangs 2 s after it starts; a hang is a silence of 4 s or
    // more (an idle reader blocks 2 s in a read between beats).
    let got = d.collect(Duration::from_secs(12));
    let p = pings(&got);
    assert!(!p.is_empty(), "pings while the reader was alive: {got:?}");
    let quiet = std::time::Instant::now().duration_since(*p.last().unwrap());
    assert!(
        quiet >= Duration::from_secs(4),
        "no ping in the last {quiet:?} of the run: {got:?}"
    );
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(log.contains("no more watchdog pings"), "{log}");
}

/// `systemd-analyze verify` finds nothing wrong with the unit (run against a
/// copy that points at the extracted binary: verify checks it exists), and
/// `security --offline=true` rates its exposure 2.0 or lower.
fn unit_is_valid_and_hardened(root: &std::path::Path, unit: &str) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ward.service");
    let bin = root.join("usr/bin/ward");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/ward", &bin.display().to_string()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&verify), stderr(&verify));
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&copy)
        .output()
        .unwrap();
    let report = stdout(&security);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for ward.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}{}", stderr(&security)));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{report}");
}

#[test]
fn the_redis_password_comes_from_a_credential_never_from_the_config_file() {
    let redis = Redis::start();
    let password = "s3cr3t p@ss";
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query::<()>(&mut redis.con())
        .unwrap();
    let creds = tempfile::tempdir().unwrap();
    // As systemd's LoadCredential= leaves it: a file, maybe with a newline.
    std::fs::write(creds.path().join("REDIS_PASSWORD"), format!("{password}\n")).unwrap();
    let cfg = config(&redis, 2, &job("noop", "noop", "")).replacen(
        "[redis]",
        "[redis]\npassword = \"secret:REDIS_PASSWORD\"",
        1,
    );
    let creds_dir = creds.path().display().to_string();
    let w = Ward::start_with_env(&cfg, &[("CREDENTIALS_DIRECTORY", creds_dir.as_str())]).ready();
    let url = redis
        .url()
        .replacen("redis://", "redis://:s3cr3t%20p%40ss@", 1);
    let out = ward(&["enqueue", "--redis", &url, "q", "noop", "{}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    wait_for(Duration::from_secs(20), "the job to succeed", || {
        let out = ward(&["job", "show", "--redis", &url, "q", &id, "--json"]);
        out.status.success() && stdout(&out).contains("\"succeeded\"")
    });
    assert!(!w.logs().contains("s3cr3t"), "the password is never logged");

    // Without the credential the config is refused, naming what is missing.
    let file = w.dir.path().join("ward.toml");
    let out = ward(&["config", "check", "--config", &file.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("secret `REDIS_PASSWORD` is not set"),
        "{}",
        stderr(&out)
    );
}
