//! A throw-away Redis Cluster for benchmarks: three masters, no replicas, from the system's
//! `redis-server` on free ports under the target directory, joined with
//! `redis-cli --cluster create`, stopped and removed when dropped. Never the Redis a
//! configured `REDIS_URL` names: that one may be shared.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::stack::{INSTALL_HINT, free_port};

const MASTERS: usize = 3;

/// A running cluster.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports it healthy.
    pub fn start() -> anyhow::Result<Self> {
        let dir = crate::target_dir::scratch("stack")?
            .join(format!("redis-cluster-{}", std::process::id()));
        let mut cluster = Self {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        while cluster.ports.len() < MASTERS {
            let port = free_port()?;
            // The cluster bus listens on port + 10000.
            if port < 55_000
                && !cluster.ports.contains(&port)
                && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
            {
                cluster.ports.push(port);
            }
        }
        for port in cluster.ports.clone() {
            let dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&dir)?;
            let child = Command::new("redis-server")
                .current_dir(&dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::fs::File::create(dir.join("redis.log"))?)
                .spawn()
                .map_err(|e| anyhow::anyhow!("starting redis-server: {e}; {INSTALL_HINT}"))?;
            cluster.children.push(child);
        }
        cluster.wait_for(|port| cli(port, &["PING"]).is_ok_and(|r| r.contains("PONG")))?;
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        cluster.wait_for(|port| {
            cli(port, &["CLUSTER", "INFO"]).is_ok_and(|info| {
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{MASTERS}"))
            })
        })?;
        Ok(cluster)
    }

    /// The `redis+cluster://` URL the services take.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("{}{}", common::redis::CLUSTER_SCHEME, nodes.join(","))
    }

    fn wait_for(&self, healthy: impl Fn(u16) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ports.iter().all(|port| healthy(*port)) {
            if Instant::now() > deadline {
                bail!(
                    "the Redis Cluster on ports {:?} never became healthy",
                    self.ports
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p port args...`; answers its output.
fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
