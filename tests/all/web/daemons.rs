//! The daemons page: every daemon with its host, version, jobs in flight,
//! last beat and the queues it serves, reached from the overview.

use ward_testkit::*;

use super::browser::Browser;
use super::{base, config, run};
use crate::admin::client::{VIEWER, get_ok, token_env, wait_serving};

#[test]
fn the_daemons_page_shows_each_daemon_with_its_host_version_and_queues() {
    let redis = Redis::start();
    let port = free_port();
    let daemon = Ward::start_with_env(&config(&redis, port, false), &token_env()).ready();
    wait_serving(port);
    let listed = get_ok(port, "/v1/daemons", VIEWER.2);
    let name = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["alive"] == true)
        .and_then(|d| d["name"].as_str())
        .unwrap_or_else(|| panic!("no live daemon: {listed}"))
        .to_string();
    // A consumer with no heartbeat: a daemon that died (the live one
    // would race a test's read for an entry, so it is made directly).
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("ward:{mail}:jobs")
        .arg("ward")
        .arg("gone-host-99-abcd")
        .exec(&mut redis.con())
        .unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();

    run(async {
        let b = Browser::start().await;
        b.login(&base(port), VIEWER.2).await;
        b.click("#queues thead a[href=\"/ui/daemons\"]").await;
        let row = format!("#daemons tr[data-daemon=\"{name}\"]");
        assert_eq!(b.text(&format!("{row} td.host")).await, host);
        assert_eq!(
            b.text(&format!("{row} td.pid")).await,
            daemon.pid().to_string()
        );
        assert_eq!(
            b.text(&format!("{row} td.version")).await,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(b.text(&format!("{row} td.in-flight")).await, "0");
        assert!(b.text(&format!("{row} td.seen")).await.ends_with(" ago"));
        assert_eq!(b.text(&format!("{row} td.queues")).await, "q mail");
        let gone = "#daemons tr[data-daemon=\"gone-host-99-abcd\"]";
        assert_eq!(b.text(&format!("{gone} td.host")).await, "gone-host");
        assert_eq!(b.text(&format!("{gone} td.pid")).await, "99");
        assert_eq!(
            b.text(&format!("{gone} td.seen")).await,
            "no heartbeat: stopped"
        );
        assert_eq!(b.text(&format!("{gone} td.queues")).await, "mail");
        // A queue's link leads to its page.
        b.click(&format!("{gone} td.queues a")).await;
        assert_eq!(b.text("#queue-name").await, "mail");
        b.quit().await;
    });
    assert!(daemon.stop().success());
}
