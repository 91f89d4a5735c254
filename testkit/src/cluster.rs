//! Redis deployments beyond one server, for the tests of Ward on them: a
//! local Redis Cluster (three masters with one replica each) and a
//! Sentinel set-up (one master, one replica, three Sentinels). Every
//! process runs on free loopback ports in a temp dir and is stopped by PID
//! when its guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{connect, free_port, wait_for};

/// One `redis-server` (or Sentinel) process of a deployment.
pub struct Node {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its TLS port, in a cluster started with [`Cluster::start_with_tls`].
    pub tls_port: Option<u16>,
    child: Option<Child>,
}

impl Node {
    /// Starts `program` (`redis-server` or `redis-sentinel`) with `args`,
    /// its output in `dir/<port>.log`, and waits until it answers PING.
    fn spawn(program: &str, port: u16, dir: &Path, args: &[String]) -> Node {
        let log = std::fs::File::create(dir.join(format!("{port}.log"))).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (see the README's set-up): {e}"));
        let node = Node {
            port,
            tls_port: None,
            child: Some(child),
        };
        wait_for(
            Duration::from_secs(10),
            &format!("{program} on port {port} to answer PING"),
            || {
                connect(&node.url())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
            },
        );
        node
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A new connection to this node alone (no redirects followed).
    pub fn con(&self) -> redis::Connection {
        connect(&self.url()).unwrap()
    }

    /// Kills the process with SIGKILL (by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The arguments of a plain data node on `port` keeping its files in `dir`.
fn data_node_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]
    .map(str::to_string)
    .to_vec()
}

/// A local Redis Cluster: three masters with one replica each.
pub struct Cluster {
    /// Every node, masters and replicas, in the order they were started.
    pub nodes: Vec<Node>,
    /// The folder of every node's files and logs.
    pub dir: TempDir,
    /// For [`Cluster::start_with_tls`]: the CA file the nodes'
    /// certificate chains to.
    pub ca: Option<PathBuf>,
}

impl Cluster {
    /// Starts six cluster-enabled servers and joins them with
    /// `redis-cli --cluster create … --cluster-replicas 1`, then waits until
    /// every node reports `cluster_state:ok` and every replica is in sync.
    pub fn start() -> Cluster {
        Self::start_with(false)
    }

    /// [`Cluster::start`] with every node also listening with TLS on a
    /// second port (a certificate for 127.0.0.1 from a throw-away CA), the
    /// cluster bus and replication over TLS too. A client on a TLS
    /// connection is told the nodes' TLS ports (`CLUSTER SLOTS`), one on a
    /// plain connection their plain ports.
    pub fn start_with_tls() -> Cluster {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let tls_args = if tls {
            let mut args = crate::server::tls_args(dir.path());
            args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(str::to_string));
            args
        } else {
            Vec::new()
        };
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir).unwrap();
            let mut args = data_node_args(port, &node_dir);
            // The bus port is named, not port + 10000, which may be out of range.
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &free_port().to_string(),
                    // A replica may always stand for election, however
                    // long ago it last heard from its master: the default
                    // (10) makes one whose link was slow to come up on a
                    // loaded machine refuse for good ("Disconnected from
                    // master for longer than allowed").
                    "--cluster-replica-validity-factor",
                    "0",
                    // The master streams the first sync at once instead of
                    // waiting 5 s for more replicas to join it.
                    "--repl-diskless-sync-delay",
                    "0",
                ]
                .map(str::to_string),
            );
            let tls_port = tls.then(free_port);
            if let Some(p) = tls_port {
                args.extend(["--tls-port".to_string(), p.to_string()]);
                args.extend(tls_args.iter().cloned());
            }
            let mut node = Node::spawn("redis-server", port, dir.path(), &args);
            node.tls_port = tls_port;
            nodes.push(node);
        }
        let ca = tls.then(|| dir.path().join("ca.pem"));
        // Over TLS the nodes meet on their TLS ports, the ones the bus uses.
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.tls_port.unwrap_or(n.port)))
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &ca {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = create
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (see the README's set-up)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes, dir, ca };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every running node says `cluster_state:ok`, every
    /// replica has finished its first sync with its master (a replica that
    /// has not cannot take over), and all agree on three masters that
    /// serve slots.
    pub fn wait_ok(&self) {
        wait_for(Duration::from_secs(30), "the cluster to be ok", || {
            self.nodes.iter().all(|n| {
                let Ok(mut c) = connect(&n.url()) else {
                    // A killed node does not count.
                    return true;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut c)
                    .unwrap_or_default();
                info.contains("cluster_state:ok") && in_sync(&mut c)
            }) && self.masters().len() == 3
        });
    }

    /// The seed nodes' URLs, for `[redis] cluster = [...]`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The seed nodes' TLS URLs (`rediss://127.0.0.1:<tls port>`), for a
    /// cluster started with [`Cluster::start_with_tls`].
    pub fn tls_seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| n.tls_port)
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect()
    }

    /// The cluster's address for `--redis` and `[redis] url`:
    /// `redis+cluster://127.0.0.1:<port>,…`.
    pub fn address(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// A client connection that follows redirects.
    pub fn con(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.seeds())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The ports of the masters that serve slots, once every running node
    /// sees the same ones; empty while their views differ (as for a moment
    /// after a failover, when gossip has reached some nodes only).
    pub fn masters(&self) -> Vec<u16> {
        let mut views = self.nodes.iter().filter_map(|n| {
            let mut c = connect(&n.url()).ok()?;
            let slots = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut c)
                .ok()?;
            let mut ports: Vec<u16> = slot_ranges(&slots).into_iter().map(|(_, _, p)| p).collect();
            ports.sort_unstable();
            ports.dedup();
            Some(ports)
        });
        let Some(first) = views.next() else {
            return Vec::new();
        };
        if views.all(|v| v == first) {
            first
        } else {
            Vec::new()
        }
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let mut c = self
            .nodes
            .iter()
            .find_map(|n| connect(&n.url()).ok())
            .unwrap();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut c)
            .unwrap();
        let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        slot_ranges(&slots)
            .into_iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .map(|(_, _, p)| p)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// A master that does not serve `key`'s slot (a client there gets `MOVED`).
    pub fn other_master(&self, key: &str) -> u16 {
        let owner = self.master_of(key);
        self.masters().into_iter().find(|p| *p != owner).unwrap()
    }

    /// The node on `port`.
    pub fn node_on(&self, port: u16) -> &Node {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    /// The node on `port`, to kill it.
    pub fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }
}

/// Whether the node behind `c` is a master, or a replica whose link to its
/// master is up (`ROLE` says `connected`, not `connect`/`sync`).
fn in_sync(c: &mut redis::Connection) -> bool {
    let Ok(role) = redis::cmd("ROLE").query::<redis::Value>(c) else {
        return false;
    };
    let redis::Value::Array(role) = role else {
        return false;
    };
    let text = |i: usize| {
        role.get(i)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    match text(0).as_deref() {
        Some("master") => true,
        Some("slave") => text(3).as_deref() == Some("connected"),
        _ => false,
    }
}

/// `(first slot, last slot, master port)` of each range in a `CLUSTER SLOTS` reply.
fn slot_ranges(v: &redis::Value) -> Vec<(u16, u16, u16)> {
    let redis::Value::Array(ranges) = v else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|r| {
            let redis::Value::Array(r) = r else {
                return None;
            };
            let from: u16 = redis::from_redis_value_ref(r.first()?).ok()?;
            let to: u16 = redis::from_redis_value_ref(r.get(1)?).ok()?;
            let redis::Value::Array(master) = r.get(2)? else {
                return None;
            };
            let port: u16 = redis::from_redis_value_ref(master.get(1)?).ok()?;
            Some((from, to, port))
        })
        .collect()
}

/// One master, one replica and three Sentinels watching the master under
/// the name [`Sentinels::MASTER`].
pub struct Sentinels {
    /// The data nodes: the first starts as master, the second as its replica.
    pub data: Vec<Node>,
    /// The three Sentinels.
    pub sentinels: Vec<Node>,
    /// The folder of every node's files and logs.
    pub dir: TempDir,
    /// For [`Sentinels::start_with_tls`]: the CA file the certificate of
    /// every process chains to.
    pub ca: Option<PathBuf>,
}

impl Sentinels {
    /// The master's name in the Sentinels' configuration.
    pub const MASTER: &'static str = "ward";

    /// Starts the master, the replica (and waits until it is in sync), then
    /// three Sentinels with a quorum of two, a one-second down-after and
    /// a short failover timeout.
    pub fn start() -> Sentinels {
        Self::start_with(false)
    }

    /// [`Sentinels::start`] with every process also listening with TLS on a
    /// second port (a certificate for 127.0.0.1 from a throw-away CA), the
    /// replication and the Sentinels' links to the data nodes over TLS: the
    /// Sentinels name the master by its TLS port.
    pub fn start_with_tls() -> Sentinels {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Sentinels {
        let dir = tempfile::tempdir().unwrap();
        let mut tls_args = Vec::new();
        if tls {
            tls_args = crate::server::tls_args(dir.path());
            tls_args.extend(["--tls-replication".to_string(), "yes".to_string()]);
        }
        let start_data = |replica_of: Option<u16>| {
            let port = free_port();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir).unwrap();
            let mut args = data_node_args(port, &node_dir);
            // The first sync starts at once, not after 5 s.
            args.extend(["--repl-diskless-sync-delay".to_string(), "0".to_string()]);
            let tls_port = tls.then(free_port);
            if let Some(p) = tls_port {
                args.extend(["--tls-port".to_string(), p.to_string()]);
                args.extend(tls_args.iter().cloned());
            }
            if let Some(m) = replica_of {
                args.extend([
                    "--replicaof".to_string(),
                    "127.0.0.1".to_string(),
                    m.to_string(),
                ]);
            }
            let mut node = Node::spawn("redis-server", port, dir.path(), &args);
            node.tls_port = tls_port;
            node
        };
        let master = start_data(None);
        let replica = start_data(Some(master.tls_port.unwrap_or(master.port)));
        wait_for(Duration::from_secs(15), "the replica to sync", || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut replica.con())
                .unwrap_or_default();
            info.contains("master_link_status:up")
        });
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            let tls_port = tls.then(free_port);
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {m} 127.0.0.1 {mp} 2\nsentinel down-after-milliseconds {m} 1000\nsentinel failover-timeout {m} 5000\nsentinel parallel-syncs {m} 1\n",
                dir.path().display(),
                m = Self::MASTER,
                mp = master.tls_port.unwrap_or(master.port),
            );
            if let Some(p) = tls_port {
                text += &format!("tls-port {p}\n");
                // `--name value` pairs become `name value` lines.
                for pair in tls_args.chunks(2) {
                    text += &format!("{} {}\n", pair[0].trim_start_matches("--"), pair[1]);
                }
            }
            std::fs::write(&conf, text).unwrap();
            let mut node = Node::spawn(
                "redis-sentinel",
                port,
                dir.path(),
                &[conf.display().to_string()],
            );
            node.tls_port = tls_port;
            sentinels.push(node);
        }
        let s = Sentinels {
            data: vec![master, replica],
            sentinels,
            dir,
            ca: tls.then(|| ca_file_of(&tls_args)),
        };
        wait_for(
            Duration::from_secs(15),
            "the Sentinels to know each other and the replica",
            || {
                s.sentinels.iter().all(|n| {
                    let Ok(mut c) = connect(&n.url()) else {
                        return false;
                    };
                    let master: Result<Vec<String>, _> = redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg(Self::MASTER)
                        .query(&mut c);
                    master.is_ok_and(|m| {
                        let field = |k: &str| {
                            m.iter()
                                .position(|x| x == k)
                                .and_then(|i| m.get(i + 1))
                                .cloned()
                        };
                        field("num-slaves").as_deref() == Some("1")
                            && field("num-other-sentinels").as_deref() == Some("2")
                    })
                })
            },
        );
        s
    }

    /// The Sentinels' TLS URLs (`rediss://127.0.0.1:<tls port>`), for
    /// Sentinels started with [`Sentinels::start_with_tls`].
    pub fn tls_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .filter_map(|n| n.tls_port)
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect()
    }

    /// The Sentinels' URLs, for `[redis] sentinels = [...]`.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    /// The address for `--redis` and `[redis] url`:
    /// `redis+sentinel://127.0.0.1:<port>,…/ward`.
    pub fn address(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), Self::MASTER)
    }

    /// The (plain) port of the master as the first answering Sentinel
    /// names it.
    pub fn master_port(&self) -> u16 {
        for n in &self.sentinels {
            let Ok(mut c) = connect(&n.url()) else {
                continue;
            };
            let addr: Result<(String, u16), _> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(Self::MASTER)
                .query(&mut c);
            if let Ok((_, port)) = addr {
                // Over TLS the Sentinels name the TLS port; this is the
                // plain one.
                return self
                    .data
                    .iter()
                    .find(|n| n.tls_port == Some(port))
                    .map_or(port, |n| n.port);
            }
        }
        panic!("no Sentinel names the master");
    }

    /// A connection to the current master.
    pub fn master_con(&self) -> redis::Connection {
        connect(&format!("redis://127.0.0.1:{}", self.master_port())).unwrap()
    }

    /// The data node on `port`.
    pub fn data_node(&mut self, port: u16) -> &mut Node {
        self.data.iter_mut().find(|n| n.port == port).unwrap()
    }
}

/// The CA file among the `--tls-ca-cert-file` arguments of [`tls_args`](crate::server::tls_args).
fn ca_file_of(tls_args: &[String]) -> PathBuf {
    tls_args
        .iter()
        .position(|a| a == "--tls-ca-cert-file")
        .and_then(|i| tls_args.get(i + 1))
        .map(PathBuf::from)
        .unwrap()
}
