//! `[daemon] profiler = "perfmap"`: the daemon names the machine code it
//! compiles from plugins for Linux `perf`, in `/tmp/perf-<pid>.map`.

use std::path::PathBuf;
use std::time::Duration;

use ward_testkit::*;

/// Removes the map a test's daemon wrote, however the test ends.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn perf_map(ward: &Ward) -> Removed {
    Removed(PathBuf::from(format!("/tmp/perf-{}.map", ward.pid())))
}

#[test]
fn with_perfmap_the_plugins_functions_are_named_for_perf_and_without_it_nothing_is_written() {
    let redis = Redis::start();
    let jobs = job("echo", "echo", "");
    let top = format!("{METRICS_ANY_PORT}[daemon]\nprofiler = \"perfmap\"\n");
    let profiled = Ward::start(&config_top(&redis, &top, "", "", &jobs)).ready();
    let map = perf_map(&profiled);
    let id = enqueue(&redis, "echo", "hello");
    let s = wait_final(&redis, &id, Duration::from_secs(60));
    assert_eq!(s["state"], "succeeded", "{s}");

    // perf's format: start and size in hex (the start may say `0x`), then
    // the name.
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).is_ok();
    let text = std::fs::read_to_string(&map.0)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", map.0.display(), profiled.logs()));
    let names: Vec<&str> = text
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (start, size) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(hex(start) && hex(size), "not a perf map line: {line:?}");
            parts.next().unwrap_or("")
        })
        .collect();
    assert!(
        names.iter().any(|n| n.contains("ward_plugin_sdk")),
        "the plugin's own functions are named: {names:?}"
    );
    profiled.stop();

    // Off by default: a daemon without it leaves no map behind.
    let plain = Ward::start(&config(&redis, 4, &jobs)).ready();
    let unwanted = perf_map(&plain);
    let id = enqueue(&redis, "echo", "again");
    let s = wait_final(&redis, &id, Duration::from_secs(60));
    assert_eq!(s["state"], "succeeded", "{s}");
    assert!(!unwanted.0.exists(), "{} was written", unwanted.0.display());
}
