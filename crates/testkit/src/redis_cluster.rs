//! A Redis Cluster of three masters (no replicas) from the system's `redis-server`, on free
//! ports in a directory of its own, for the tests that run the services against a cluster.
//! [`RedisCluster::shared`] starts one per test binary, on first use; a test that kills a
//! master starts a private one with [`RedisCluster::start`] so the others are not disturbed.
//!
//! Slots of a lost master stay unserved (no failover) while the other masters keep serving
//! theirs (`cluster-require-full-coverage no`): the partial outage the services must answer
//! with 503 for the lost keys only. Every `redis-server` is started from one thread that
//! lives as long as the test process and asks the kernel to kill its children when it ends,
//! so no node outlives a test run, however it ends.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

use crate::DEADLINE;

const MASTERS: usize = 3;

/// A running three-master cluster.
pub struct RedisCluster {
    nodes: Arc<Nodes>,
}

/// The cluster's processes, shared with the blocking tasks that start and stop them.
struct Nodes {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Mutex<Vec<Option<Child>>>,
}

impl RedisCluster {
    /// The cluster every test of this binary shares, started on first use.
    pub async fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        if let Some(cluster) = SHARED.get() {
            return cluster;
        }
        tokio::task::spawn_blocking(|| SHARED.get_or_init(Self::start_blocking))
            .await
            .expect("the shared cluster starts")
    }

    /// A private cluster, stopped (and its directory removed) when dropped.
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("the cluster starts")
    }

    fn start_blocking() -> Self {
        remove_abandoned_dirs();
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            &common::id::new_id("c")[2..12]
        ));
        let ports = free_ports(MASTERS);
        for port in &ports {
            std::fs::create_dir_all(dir.join(port.to_string())).expect("a node directory");
        }
        let nodes = Nodes {
            dir,
            children: Mutex::new(ports.iter().map(|_| None).collect()),
            ports,
        };
        for index in 0..MASTERS {
            nodes.launch(index);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &nodes.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        nodes.wait_until_ok();
        Self {
            nodes: Arc::new(nodes),
        }
    }

    /// `redis+cluster://` with every node, the URL the services take.
    pub fn url(&self) -> String {
        self.url_from(0)
    }

    /// Like [`Self::url`], listing master `first` first (a gateway subscribes to the first
    /// seed node that answers).
    pub fn url_from(&self, first: usize) -> String {
        let ports = &self.nodes.ports;
        let nodes: Vec<String> = (0..ports.len())
            .map(|i| format!("127.0.0.1:{}", ports[(first + i) % ports.len()]))
            .collect();
        format!("{}{}", common::redis::CLUSTER_SCHEME, nodes.join(","))
    }

    /// The number of masters.
    pub fn masters(&self) -> usize {
        self.nodes.ports.len()
    }

    /// The index of the master that owns `key`'s slot.
    pub async fn node_of(&self, key: &str) -> usize {
        let (ports, key) = (self.nodes.ports.clone(), key.to_owned());
        tokio::task::spawn_blocking(move || owner(&ports, &key))
            .await
            .unwrap()
    }

    /// Kills master `index` (SIGKILL: no goodbye to the others).
    pub async fn kill(&self, index: usize) {
        let child = self.nodes.children.lock().unwrap()[index].take();
        if let Some(mut child) = child {
            tokio::task::spawn_blocking(move || {
                child.kill().unwrap();
                child.wait().unwrap();
            })
            .await
            .unwrap();
        }
    }

    /// Starts master `index` again on its port with its `nodes.conf` (it rejoins with the
    /// slots it had, empty), and waits until every node reports the cluster healthy.
    pub async fn restart(&self, index: usize) {
        let nodes = self.nodes.clone();
        tokio::task::spawn_blocking(move || {
            nodes.launch(index);
            nodes.wait_until_ok();
        })
        .await
        .unwrap();
    }
}

impl Nodes {
    fn launch(&self, index: usize) {
        let port = self.ports[index];
        let mut command = Command::new("redis-server");
        command
            .current_dir(self.dir.join(port.to_string()))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stdin(Stdio::null());
        let child = spawn_orphan_proof(command);
        self.children.lock().unwrap()[index] = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while node_connection(port)
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server on {port} answers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls every node until each says `cluster_state:ok` and knows every master.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let healthy = self.ports.iter().all(|port| {
                let Ok(mut conn) = node_connection(*port) else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{MASTERS}"))
            });
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.nodes.children.lock().unwrap().iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.nodes.dir);
    }
}

/// What every cluster's directory is called, before `<pid>-<random>`.
const DIR_PREFIX: &str = "checkout-redis-cluster-";

/// Removes the directories of clusters whose test process has ended. The shared cluster lives
/// in a static, which is never dropped, so its directory outlives the run; the next run that
/// starts a cluster removes it.
fn remove_abandoned_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn node_connection(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

/// The index of the port that serves `key`'s slot, from `CLUSTER SLOTS` of any live node.
fn owner(ports: &[u16], key: &str) -> usize {
    for port in ports {
        let Ok(mut conn) = node_connection(*port) else {
            continue;
        };
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut conn)
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<(i64, i64, i64)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut conn)
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|range| {
                let redis::Value::Array(parts) = range else {
                    panic!("CLUSTER SLOTS answers arrays");
                };
                let int = |v: &redis::Value| match v {
                    redis::Value::Int(i) => *i,
                    other => panic!("not a number: {other:?}"),
                };
                let redis::Value::Array(master) = &parts[2] else {
                    panic!("a master is an array");
                };
                (int(&parts[0]), int(&parts[1]), int(&master[1]))
            })
            .collect();
        let (_, _, port) = ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .expect("every slot is assigned");
        return ports
            .iter()
            .position(|p| i64::from(*p) == *port)
            .expect("the owner is one of the cluster's nodes");
    }
    panic!("no node of the cluster answers");
}

/// `count` ports that are free, each with its cluster bus port (port + 10000) free too.
fn free_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < count {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55_000
            && !ports.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            ports.push(port);
        }
    }
    ports
}

/// Spawns `command` from a thread that lives as long as the process, with the kernel told
/// to kill the child when that thread (and so the process) ends.
fn spawn_orphan_proof(command: Command) -> Child {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut command, reply) in incoming {
                use std::os::unix::process::CommandExt as _;
                // SAFETY: prctl is async-signal-safe and touches only the child's own state.
                unsafe {
                    command.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(jobs)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap()
        .send((command, reply))
        .expect("the spawner thread lives");
    answer
        .recv()
        .expect("the spawner answers")
        .expect("redis-server is installed")
}
