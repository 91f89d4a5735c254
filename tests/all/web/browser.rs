//! A real headless Chromium driven over WebDriver: Debian's `chromedriver`
//! started on a free loopback port, one browser session through
//! [`fantoccini`], and both stopped by PID when the test ends.
//!
//! `chromedriver` runs in a process group of its own, which Chromium and
//! its helpers join; dropping a [`Browser`] ends the WebDriver session if
//! it can and then kills that group by its id (the `chromedriver` PID), so
//! a failed test leaves no browser behind and nothing is stopped by name.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use ward_testkit::{free_port, wait_for};

/// Debian's Chromium and its WebDriver server (`scripts/setup` installs
/// them).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// How long to wait for a page to show something.
pub const PAGE_WAIT: Duration = Duration::from_secs(15);

/// A browser session in a headless Chromium.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium with a fresh profile.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Only local clients (the default, said out loud).
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which Chromium joins: killed whole on
            // drop by the group's id, the PID we started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {CHROMEDRIVER} ({e}): run scripts/setup (it installs chromium-driver)")
            });
        wait_for(Duration::from_secs(20), "chromedriver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".to_string(),
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--window-size=1280,900".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        // Chromium refuses to run as root with its sandbox on; as another
        // user the sandbox stays.
        if rustix::process::geteuid().is_root() {
            args.push("--no-sandbox".to_string());
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session with Chromium: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the session (Chromium quits), then the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The text of the first element matching `css`, waiting for it.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Waits until the first element matching `css` holds `want`.
    pub async fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = std::time::Instant::now() + PAGE_WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
                && t.contains(want)
            {
                return t;
            }
            if std::time::Instant::now() > deadline {
                let body = self.body_text().await;
                panic!("`{css}` never held `{want}`; the page says: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The whole page's visible text.
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types `text` into the field matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no field `{css}`: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing to click at `{css}`: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Logs in at `base` (`http://127.0.0.1:PORT`) with `token`, and waits
    /// for the overview.
    pub async fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/ui/login")).await;
        self.fill("#token", token).await;
        self.click("#login").await;
        self.text("#queues").await;
    }

    /// The value of the session cookie the browser holds.
    pub async fn session_cookie(&self) -> String {
        let c = self.client.get_named_cookie("ward_session").await.unwrap();
        c.value().to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pid = self.driver.id();
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
