//! `[[schedule]]`: one job per fire time across daemons, missed fires caught
//! up, overlapping fires skipped, and an operator's pause and fire-now.

use std::time::Duration;

use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn schedule(extra: &str, payload: &str) -> String {
    format!(
        "\n[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\nqueue = \"q\"\njob = \"flaky\"\npayload = '{payload}'\n{extra}"
    )
}

/// The fire times (Unix ms) of `tick` that created a job, sorted, with the
/// job each created.
fn fires(redis: &Redis) -> Vec<(u64, String)> {
    let mut con = redis.con();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("ward:{q}:idem:schedule:tick:*")
        .query(&mut con)
        .unwrap();
    let mut out: Vec<(u64, String)> = keys
        .iter()
        .filter_map(|k| {
            let ms = k.rsplit(':').next()?.parse().ok()?;
            let owner: String = redis::cmd("GET").arg(k).query(&mut redis.con()).ok()?;
            Some((ms, owner.split(' ').next()?.to_string()))
        })
        .collect();
    out.sort();
    out
}

fn job_records(redis: &Redis) -> usize {
    let records: Vec<String> = redis::cmd("KEYS")
        .arg("ward:{q}:job:*")
        .query(&mut redis.con())
        .unwrap();
    records.iter().filter(|k| !k.ends_with(":history")).count()
}

#[test]
fn three_daemons_enqueue_each_fire_of_an_every_second_schedule_once() {
    let redis = Redis::start();
    let cfg =
        config(&redis, 4, &job("flaky", "flaky", "")) + &schedule("", r#"{"times":0,"key":true}"#);
    let started = std::time::Instant::now();
    let daemons: Vec<Ward> = (0..3).map(|_| Ward::start(&cfg).ready()).collect();
    std::thread::sleep(Duration::from_secs(10));
    // Stopped, not killed: what they leased is run and recorded first.
    for d in daemons {
        assert!(d.stop().success());
    }
    let seconds = started.elapsed().as_secs();
    let fired = fires(&redis);
    assert!(
        fired.len() >= 8 && fired.len() as u64 <= seconds + 1,
        "one fire per second while {seconds} s passed, got {}: {fired:?}",
        fired.len()
    );
    assert_eq!(
        job_records(&redis),
        fired.len(),
        "three daemons, one job per fire time: {fired:?}"
    );
    for (ms, id) in &fired {
        let s = wait_final(&redis, id, WAIT);
        assert_eq!(s["state"], "succeeded", "{s}");
        // The plugin got the fire's key as its idempotency key.
        assert_eq!(s["result"], format!("schedule:tick:{ms}"), "{s}");
    }
}

#[test]
fn a_catch_up_schedule_fires_its_newest_missed_times_once_after_every_daemon_was_down() {
    let redis = Redis::start();
    let cfg = config(&redis, 4, &job("flaky", "flaky", ""))
        + &schedule(
            "missed = \"catch_up\"\ncatch_up_max = 3\ncatch_up_window = \"1h\"\n",
            r#"{"times":0}"#,
        );
    let a = Ward::start(&cfg).ready();
    wait_for(WAIT, "a first fire", || !fires(&redis).is_empty());
    assert!(a.stop().success());
    let before = fires(&redis);
    let last = before.last().unwrap().0;
    // Every daemon is down for 5 s: about five fire times pass.
    std::thread::sleep(Duration::from_secs(5));
    let a = Ward::start(&cfg).ready();
    let b = Ward::start(&cfg).ready();
    std::thread::sleep(Duration::from_secs(2));
    let logs = a.logs() + &b.logs();
    assert!(a.stop().success() && b.stop().success());

    let after: Vec<u64> = fires(&redis)
        .iter()
        .map(|(ms, _)| *ms)
        .filter(|ms| *ms > last)
        .collect();
    // The caught-up fires run straight into the regular ones: one unbroken
    // run of seconds, starting three before the first start...
    assert!(
        after.windows(2).all(|w| w[1] - w[0] == 1000),
        "consecutive seconds: {after:?}"
    );
    // ...and not at the first missed second: only the newest three were.
    assert!(
        after[0] >= last + 2000,
        "older missed fires were skipped (last before the outage {last}): {after:?}"
    );
    assert_eq!(job_records(&redis), before.len() + after.len());
    assert!(logs.contains("catching up missed fires"), "{logs}");
}

#[test]
fn overlap_skip_fires_nothing_while_the_last_fires_job_runs() {
    let redis = Redis::start();
    let cfg = config(&redis, 4, &job("flaky", "flaky", "timeout = \"30s\""))
        + &schedule("overlap = \"skip\"\n", r#"{"times":0,"sleep_ms":2500}"#);
    let w = Ward::start(&cfg).ready();
    std::thread::sleep(Duration::from_secs(6));
    let logs = w.logs();
    assert!(w.stop().success());
    let fired = fires(&redis);
    // A job runs 2.5 s: at most one fire in each three seconds goes through.
    assert!(
        !fired.is_empty() && fired.len() <= 3,
        "fires skipped while the last job ran: {fired:?}"
    );
    for pair in fired.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 2000, "{fired:?}");
    }
    assert!(logs.contains("schedule fire skipped"), "{logs}");
}

#[test]
fn an_operator_pauses_resumes_and_fires_a_schedule_now() {
    let redis = Redis::start();
    let cfg = config(&redis, 4, &job("flaky", "flaky", ""))
        + &schedule("timezone = \"Europe/Paris\"\n", r#"{"times":0}"#);
    let w = Ward::start(&cfg).ready();
    let cfg_file = w.dir.path().join("ward.toml");
    let cfg_arg = cfg_file.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["schedules"];
        all.extend_from_slice(args);
        let out = ward(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    wait_for(WAIT, "a first fire", || !fires(&redis).is_empty());
    let out = run(&[
        "pause",
        "--config",
        &cfg_arg,
        "tick",
        "--note",
        "maintenance",
        "--by",
        "ana",
    ]);
    assert!(out.contains("paused"), "{out}");
    // Every daemon reads the pause before each fire.
    std::thread::sleep(Duration::from_millis(1500));
    let during = fires(&redis).len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fires(&redis).len(), during, "no fire while paused");
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["--config", &cfg_arg, "--json"])).unwrap();
    assert_eq!(listed[0]["paused"]["by"], "ana", "{listed}");
    assert_eq!(listed[0]["timezone"], "Europe/Paris", "{listed}");
    assert!(listed[0]["next_fire_ms"].is_null(), "{listed}");

    let out = run(&[
        "fire",
        "--config",
        &cfg_arg,
        "tick",
        "--note",
        "rerun the report",
    ]);
    let id = out.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(wait_final(&redis, &id, WAIT)["state"], "succeeded", "{out}");

    run(&["resume", "--config", &cfg_arg, "tick", "--note", "done"]);
    wait_for(WAIT, "fires again", || fires(&redis).len() > during);
    let listed: serde_json::Value =
        serde_json::from_str(&run(&["--config", &cfg_arg, "--json"])).unwrap();
    assert!(listed[0]["last_job"].is_string(), "{listed}");
    assert!(listed[0]["next_fire_ms"].is_u64(), "{listed}");

    let actions: Vec<String> = audit(&redis)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["schedule-pause", "schedule-fire", "schedule-resume"]
    );
    drop(w);
}
