//! `ward reload`: makes the running daemon reload its config and plugins.
//! Through the admin API when the config has `[admin] listen` and a token
//! is at hand (the answer says what was applied, or why it was refused);
//! else with SIGHUP to the process in the config's `[daemon] pid_file`
//! (the daemon's log then says what it did).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Full};

use crate::config::Config;

/// `ward reload`
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    /// The config file (TOML) of the daemon to reload: its `[admin] listen`
    /// or its `[daemon] pid_file` says where the daemon is.
    #[arg(long, short, env = "WARD_CONFIG", default_value = super::DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
    /// The environment variable holding an operator token of the admin API.
    #[arg(long, default_value = "WARD_ADMIN_TOKEN")]
    token_env: String,
    /// Why, for the audit trail (through the admin API).
    #[arg(long, default_value = "")]
    note: String,
}

impl ReloadArgs {
    /// Checks the config loads (a broken one would be refused by the daemon
    /// anyway, with less said here), then asks the daemon to reload.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let config = Config::load(&self.config)?;
        let token = std::env::var(&self.token_env)
            .ok()
            .filter(|t| !t.is_empty());
        if let (Some(listen), Some(token)) = (config.admin.listen, token) {
            return self.through_api(listen, &token).await;
        }
        let Some(pid_file) = &config.pid_file else {
            anyhow::bail!(
                "{}: cannot find the daemon: give it [admin] listen (and set ${} to an operator token) or a [daemon] pid_file, and restart it once; under systemd use `systemctl reload ward`",
                self.config.display(),
                self.token_env
            );
        };
        let pid = read_pid(pid_file)?;
        let target = rustix::process::Pid::from_raw(pid)
            .with_context(|| format!("{}: {pid} is not a process id", pid_file.display()))?;
        rustix::process::kill_process(target, rustix::process::Signal::HUP).with_context(|| {
            format!("cannot send SIGHUP to process {pid}: is the daemon still running, and yours?")
        })?;
        println!(
            "sent SIGHUP to ward (pid {pid}); its log says what was applied or why it was refused"
        );
        Ok(())
    }

    /// `POST /v1/reload` on the daemon's admin API; prints what it did.
    async fn through_api(&self, mut listen: SocketAddr, token: &str) -> anyhow::Result<()> {
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let url = format!("http://{listen}/v1/reload");
        let body = serde_json::json!({ "note": self.note }).to_string();
        let request = http::Request::post(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let answer = client.request(request).await.with_context(|| {
            format!("cannot reach the admin API at {url}: is the daemon running?")
        })?;
        let status = answer.status();
        let bytes = answer.into_body().collect().await?.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if let Some(error) = json["error"].as_str() {
            let verdict = if json["applied"] == false {
                "refused; the running config keeps serving"
            } else {
                "failed"
            };
            anyhow::bail!("reload {verdict} ({status}): {error}");
        }
        let list = |key: &str| -> Vec<String> {
            json[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let changed = list("changed");
        if changed.is_empty() {
            println!("reloaded: nothing changed");
        } else {
            println!("reloaded:");
            for c in changed {
                println!("  {c}");
            }
        }
        let restart = list("needs_restart");
        if !restart.is_empty() {
            println!("needs a restart (not applied):");
            for r in restart {
                println!("  {r}");
            }
        }
        Ok(())
    }
}

/// The process id in `path`, checked to be a running process.
fn read_pid(path: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the pid file {}: is the daemon running?",
            path.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: `{}` is not a process id", path.display(), text.trim()))?;
    if pid <= 1 || !Path::new(&format!("/proc/{pid}")).exists() {
        anyhow::bail!(
            "{}: no process {pid} is running (a stale pid file?)",
            path.display()
        );
    }
    Ok(pid)
}
