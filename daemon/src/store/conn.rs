//! The connection every store operation runs on: one server, a Redis
//! Cluster, or the master Sentinels name. All three speak
//! [`redis::aio::ConnectionLike`], so an operation is written once; on one
//! server the only cost is a `match` per command (no allocation, no round
//! trip).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::sentinel::Followed;

/// A connection to Ward's Redis that reconnects by itself, whatever the
/// deployment (see [`super::connect`]).
#[derive(Clone)]
pub enum Connection {
    /// One server, over a self-reconnecting multiplexed connection.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the node that owns their keys' slot,
    /// following `MOVED`/`ASK` redirects.
    Cluster(ClusterConnection),
    /// The master Sentinels name, found again after a failover.
    Sentinel(Followed),
}

impl Connection {
    /// Runs `cmd` on every master (a cluster's; the one server otherwise):
    /// each master's address (empty for the one server) and its reply or
    /// error. A cluster's client learns of masters that a failover or a
    /// resharding added when it refreshes its slot map (on a `MOVED`, or
    /// when a node stops answering).
    ///
    /// # Errors
    /// A cluster whose masters cannot be reached at all.
    pub(super) async fn on_every_master(
        &mut self,
        cmd: Cmd,
    ) -> redis::RedisResult<Vec<(String, redis::RedisResult<Value>)>> {
        let Connection::Cluster(c) = self else {
            let reply = self.req_packed_command(&cmd).await;
            return Ok(vec![(String::new(), reply)]);
        };
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let pairs = match c.route_command(cmd, routing).await? {
            Value::Map(pairs) => pairs,
            other => vec![(Value::Nil, other)],
        };
        Ok(pairs
            .into_iter()
            .map(|(addr, v)| {
                let addr = redis::from_redis_value::<String>(addr).unwrap_or_default();
                match v {
                    Value::ServerError(e) => (addr, Err(e.into())),
                    v => (addr, Ok(v)),
                }
            })
            .collect())
    }

    /// Runs the keyless `cmd` (`INFO`, …) on the master that holds `key`
    /// (on a cluster; elsewhere on the one master there is).
    ///
    /// # Errors
    /// Redis errors.
    pub(super) async fn on_master_of(&mut self, key: &str, cmd: Cmd) -> redis::RedisResult<Value> {
        match self {
            Connection::Cluster(c) => {
                let route = Route::new(super::slots::slot_number(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(cmd, routing).await
            }
            other => other.req_packed_command(&cmd).await,
        }
    }

    /// Whether this is a Redis Cluster.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}
