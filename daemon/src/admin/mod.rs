//! The admin HTTP API: JSON over HTTP/1.1 (axum), for people's own tools
//! and the web admin screen, which the same server serves under `/ui/`
//! ([`web`]). Off unless `[admin] listen` is set; served by `ward run`
//! beside the worker, or alone by `ward admin --config FILE`.
//!
//! Every request carries `Authorization: Bearer <token>`; each token has a
//! name and a role ([`auth`]). Reads are open to `viewer` and `operator`
//! tokens (a viewer sees payloads redacted as dead letters redact them);
//! actions need `operator`, are done by the same [`crate::control`] and
//! [`crate::dlq`] functions as the `ward` command, and leave an audit
//! entry whose actor is the token's name. Errors are `{"error": "..."}`
//! with the status that fits. The endpoints are listed in
//! `docs/admin-api.md`.
//!
//! # Layout
//!
//! - this file: the shared state ([`Api`]), the router, starting the server.
//! - `serve.rs`: the HTTP/1.1 connections (header timeout, graceful stop).
//! - `auth.rs`: tokens, roles, the [`auth::Caller`] and [`auth::Operator`]
//!   extractors, the constant-time comparison.
//! - `error.rs`: [`ApiError`], the JSON error body.
//! - `shown.rs`: what a viewer may see of payloads and results.
//! - one file per resource group: `queues.rs` (stats), `jobs.rs`,
//!   `pause.rs` (pauses, pause, resume), `cancel.rs`,
//!   `dead.rs` (dead letters: list, show, requeue, discard), `breakers.rs`
//!   (list, open, close), `upstreams.rs` (flow control per upstream),
//!   `schedules.rs`, `daemons.rs`, `series.rs` (per-minute counts),
//!   `audit.rs`, `reload.rs` (a live reload of
//!   the daemon beside the API), `batches.rs` (list, show, create, seal).
//! - `web/`: the web admin screen (HTML pages and forms over the same
//!   functions as the endpoints).
//!
//! An action is a handler taking [`auth::Operator`] that calls one
//! function of `control` with `Actor::api(&caller.name)`, and one `.route`
//! line in [`router`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::backoff::Backoff;
use crate::config::{Config, QueueConfig};
use crate::store::{self, Queue, Store};

mod audit;
pub mod auth;
mod batches;
mod breakers;
mod cancel;
mod daemons;
mod dead;
mod error;
pub mod forwarded;
mod jobs;
mod pause;
mod queues;
mod reload;
mod schedules;
mod series;
mod serve;
mod shown;
pub mod throttle;
mod upstreams;
pub mod web;

pub use auth::{Caller, Operator, Tokens};
pub use error::ApiError;

/// What every handler shares: the Redis connection, the config (its
/// queues and job types, for redaction), the tokens.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    /// Ward's Redis.
    store: Store,
    /// The config the API was started with.
    config: Config,
    /// Who may call it.
    tokens: Tokens,
    /// The daemon beside the API (`ward run`), to reload; `None` for
    /// `ward admin` alone.
    reload: Option<crate::worker::ReloadHandle>,
    /// The web screen's logged-in browsers.
    sessions: web::session::Sessions,
    /// Failed authentications per client address.
    failures: throttle::Failures,
}

impl Api {
    /// The state of an API over `store`, configured by `config`, with
    /// `tokens` already read from their secrets.
    #[must_use]
    pub fn new(store: Store, config: Config, tokens: Tokens) -> Api {
        Api::with_reload(store, config, tokens, None)
    }

    /// [`Api::new`], beside a daemon that `POST /v1/reload` reloads.
    #[must_use]
    pub fn with_reload(
        store: Store,
        config: Config,
        tokens: Tokens,
        reload: Option<crate::worker::ReloadHandle>,
    ) -> Api {
        Api {
            inner: Arc::new(Inner {
                store,
                config,
                tokens,
                reload,
                sessions: web::session::Sessions::default(),
                failures: throttle::Failures::default(),
            }),
        }
    }

    /// The daemon beside the API, when there is one.
    #[must_use]
    pub fn reload_handle(&self) -> Option<&crate::worker::ReloadHandle> {
        self.inner.reload.as_ref()
    }

    /// The tokens.
    #[must_use]
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// The web screen's sessions.
    #[must_use]
    pub fn sessions(&self) -> &web::session::Sessions {
        &self.inner.sessions
    }

    /// Whether a request from `peer` reached Ward through one of `[admin]
    /// trusted_proxies` that the client used HTTPS to reach (its cookies
    /// are then marked `Secure`).
    #[must_use]
    pub fn behind_tls(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
    ) -> bool {
        peer.is_some_and(|p| {
            forwarded::behind_tls(p, headers, &self.inner.config.admin.trusted_proxies)
        })
    }

    /// Looks `token` up for a caller from `peer` (when known; behind one
    /// of `[admin] trusted_proxies`, the client its `headers` name),
    /// counting a failure against the address and refusing an address over
    /// `[admin] failed_auth_limit` (see [`throttle`]).
    ///
    /// # Errors
    /// [`Refused::Throttled`] with how long the address is still refused,
    /// or [`Refused::Unknown`] for a token none of `[[admin.token]]` has.
    pub fn authenticate(
        &self,
        token: &str,
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
    ) -> Result<Caller, throttle::Refused> {
        let admin = &self.inner.config.admin;
        let limit = admin.failed_auth_limit;
        let peer = peer.map(|p| forwarded::client_addr(p, headers, &admin.trusted_proxies));
        let now = std::time::Instant::now();
        if let Some(ip) = peer {
            self.inner
                .failures
                .check(ip, limit, now)
                .map_err(throttle::Refused::Throttled)?;
        }
        match self.inner.tokens.find(token) {
            Some(caller) => {
                if let Some(ip) = peer {
                    self.inner.failures.succeeded(ip);
                }
                Ok(caller)
            }
            None => {
                if let Some(ip) = peer
                    && self.inner.failures.failed(ip, limit, now)
                {
                    tracing::warn!(
                        client = %ip, limit, window_s = throttle::WINDOW.as_secs(),
                        "admin: {limit} failed authentications from {ip} within a minute; refusing it for the rest of that minute"
                    );
                }
                Err(throttle::Refused::Unknown)
            }
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The config.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Queue `name` of the config and its handle, or 404: the API serves
    /// the queues of its config only (their job types say what to redact).
    ///
    /// # Errors
    /// [`ApiError`] 404 naming the queues it knows.
    pub fn queue(&self, name: &str) -> Result<(&QueueConfig, Queue), ApiError> {
        let Some(q) = self.config().queues.iter().find(|q| q.name == name) else {
            let known: Vec<&str> = self
                .config()
                .queues
                .iter()
                .map(|q| q.name.as_str())
                .collect();
            return Err(ApiError::not_found(format!(
                "no queue `{name}` in this API's config (queues: {})",
                known.join(", ")
            )));
        };
        Ok((q, self.store().queue(name)))
    }
}

/// `of` applied to every queue of the config in turn, the answers
/// concatenated (the listings across queues).
async fn every_queue<T, F, Fut>(api: &Api, of: F) -> Result<Vec<T>, ApiError>
where
    F: Fn(Queue) -> Fut,
    Fut: Future<Output = Result<Vec<T>, ApiError>>,
{
    let mut out = Vec::new();
    for cfg in &api.config().queues {
        out.extend(of(api.store().queue(&cfg.name)).await?);
    }
    Ok(out)
}

/// An action's JSON body as `T`; an empty body reads as `{}` (so a body
/// whose fields all have defaults may be left out). `example` is shown in
/// the 400 for anything else.
///
/// # Errors
/// [`ApiError`] 400 saying what was expected.
pub(crate) fn body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    example: &str,
) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("the body must be JSON like {example}: {e}")))
}

/// Every route of the API.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/whoami", get(auth::whoami))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{queue}", get(queues::one))
        .route("/v1/queues/{queue}/pauses", get(pause::status))
        .route("/v1/queues/{queue}/pause", post(pause::pause))
        .route("/v1/queues/{queue}/resume", post(pause::resume))
        .route("/v1/queues/{queue}/jobs", get(jobs::list))
        .route("/v1/queues/{queue}/jobs/{id}", get(jobs::show))
        .route("/v1/queues/{queue}/jobs/{id}/cancel", post(cancel::one))
        .route("/v1/queues/{queue}/cancel", post(cancel::many))
        .route("/v1/queues/{queue}/jobs/cancel", post(cancel::matching))
        .route("/v1/queues/{queue}/dead", get(dead::list))
        .route("/v1/queues/{queue}/dead/requeue", post(dead::bulk_requeue))
        .route("/v1/queues/{queue}/dead/discard", post(dead::bulk_discard))
        .route("/v1/queues/{queue}/dead/groups", get(dead::groups))
        .route("/v1/queues/{queue}/dead/{id}", get(dead::show))
        .route("/v1/queues/{queue}/dead/{id}/requeue", post(dead::requeue))
        .route("/v1/queues/{queue}/dead/{id}/edit", post(dead::edit))
        .route("/v1/queues/{queue}/dead/{id}/discard", post(dead::discard))
        .route("/v1/queues/{queue}/breakers", get(breakers::of_queue))
        .route(
            "/v1/queues/{queue}/breakers/{upstream}/open",
            post(breakers::open),
        )
        .route(
            "/v1/queues/{queue}/breakers/{upstream}/close",
            post(breakers::close),
        )
        .route(
            "/v1/queues/{queue}/batches",
            get(batches::list).post(batches::create),
        )
        .route("/v1/queues/{queue}/batches/{id}", get(batches::show))
        .route("/v1/queues/{queue}/batches/{id}/seal", post(batches::seal))
        .route(
            "/v1/queues/{queue}/batches/{id}/retry-failed",
            post(batches::retry_failed),
        )
        .route(
            "/v1/queues/{queue}/batches/{id}/cancel",
            post(batches::cancel),
        )
        .route(
            "/v1/queues/{queue}/batches/{id}/pause",
            post(batches::pause),
        )
        .route(
            "/v1/queues/{queue}/batches/{id}/resume",
            post(batches::resume),
        )
        .route("/v1/breakers", get(breakers::list))
        .route("/v1/upstreams", get(upstreams::list))
        .route("/v1/queues/{queue}/upstreams", get(upstreams::of_queue))
        .route("/v1/queues/{queue}/daemons", get(daemons::of_queue))
        .route("/v1/queues/{queue}/series", get(series::of_queue))
        .route("/v1/daemons", get(daemons::list))
        .route("/v1/schedules", get(schedules::list))
        .route("/v1/schedules/{name}", get(schedules::one))
        .route("/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/v1/schedules/{name}/resume", post(schedules::resume))
        .route("/v1/schedules/{name}/fire", post(schedules::fire))
        .route("/v1/audit", get(audit::list))
        .route("/v1/reload", post(reload::reload))
        .merge(web::routes())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(api)
}

/// Errors starting the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config has no `[admin] listen`.
    #[error(
        "{0}: [admin] listen is not set; add it (e.g. listen = \"127.0.0.1:9470\") to serve the admin API"
    )]
    NotConfigured(String),
    /// The address is taken or not ours.
    #[error("[admin] listen {addr}: cannot listen there: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A token's secret is not set, or its value is unusable (too short, or another token's).
    #[error("[[admin.token]] `{token}`: {why}")]
    Secret {
        /// The token's name.
        token: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The API bound to its address, its tokens read, not serving yet.
pub struct Server {
    listener: TcpListener,
    config: Config,
    tokens: Tokens,
    reload: Option<crate::worker::ReloadHandle>,
}

/// After Redis was unreachable: how long to wait before trying again.
const CONNECT_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

impl Server {
    /// Reads the tokens and binds `[admin] listen`; `Ok(None)` when the
    /// config has no `[admin] listen`. Failing here (a secret not set, the
    /// port taken) fails the start of `ward run` or `ward admin`, before
    /// anything else runs.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn bind(config: &Config) -> Result<Option<Server>, StartError> {
        let Some(addr) = config.admin.listen else {
            return Ok(None);
        };
        let tokens = Tokens::read(&config.admin.tokens)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Some(Server {
            listener,
            config: config.clone(),
            tokens,
            reload: None,
        }))
    }

    /// Binds `addr` for `config`'s queues with `tokens` made by the caller
    /// (`ward dev`'s generated one), not read from `[[admin.token]]`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind_with_tokens(
        addr: SocketAddr,
        config: &Config,
        tokens: Tokens,
    ) -> Result<Server, StartError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Server {
            listener,
            config: config.clone(),
            tokens,
            reload: None,
        })
    }

    /// Serves beside the daemon that `handle` reloads (`POST /v1/reload`).
    #[must_use]
    pub fn with_reload(mut self, handle: crate::worker::ReloadHandle) -> Server {
        self.reload = Some(handle);
        self
    }

    /// The address it listens on (the port picked, for `:0`).
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Connects to Redis (retrying while it is unreachable) and serves
    /// until `shutdown` resolves; requests in progress then finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let url = self.config.redis_url.clone();
        let shown = store::redacted_url(&url);
        let mut shutdown = Box::pin(shutdown);
        let mut backoff = CONNECT_RETRY;
        let store = loop {
            let attempt = Store::connect(&url, Duration::from_secs(1));
            let res = tokio::select! {
                res = attempt => res,
                () = &mut shutdown => return,
            };
            match res {
                Ok(s) => break s,
                Err(e) => {
                    let delay = backoff.next();
                    tracing::error!(redis = %shown, error = %e, retry_in = ?delay, "admin API cannot reach Redis; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = &mut shutdown => return,
                    }
                }
            }
        };
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(listen = %addr, tokens = self.tokens.len(), "admin API listening");
        let app = router(Api::with_reload(
            store,
            self.config,
            self.tokens,
            self.reload,
        ));
        serve::serve(self.listener, app, shutdown).await;
    }
}
