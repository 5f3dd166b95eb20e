//! The compose network without Docker: one network namespace per service, each joined to a
//! bridge in the root namespace by a veth pair, addresses on a private /24, and a hosts file
//! per namespace (`/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over `/etc/hosts`)
//! naming every service by its compose hostname. Names carry the run's pid, so two runs do
//! not collide, and everything is removed when the `Network` is dropped — or, after a run
//! that was killed outright, by the next run.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The prefix of every name a run creates: `crun<pid>`.
const PREFIX: &str = "crun";
/// Where `ip netns exec` finds a namespace's own `/etc` files.
const NETNS_ETC: &str = "/etc/netns";
/// The first host address given to a service; `.1` is the bridge's.
const FIRST_HOST: u8 = 10;

/// Why this machine cannot run the topology, if it cannot.
pub fn unsupported() -> Option<String> {
    if !crate::stack::is_root() {
        return Some("network namespaces need root".to_owned());
    }
    let version = Command::new("ip").arg("-V").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Some("`ip` (iproute2) is not installed".to_owned());
    }
    // Root in a container may still lack the capability: try one.
    let probe = format!("{PREFIX}{}-probe", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("no network namespace can be created ({e:#})"));
    }
    remove_namespace(&probe);
    None
}

/// The namespaces, bridge and hosts files of one run.
pub struct Network {
    prefix: String,
    bridge: Option<String>,
    namespaces: Vec<String>,
    /// Each service's address.
    pub addresses: BTreeMap<String, Ipv4Addr>,
}

impl Network {
    /// Creates the network of `services` (compose names, which become hostnames).
    pub fn create(services: &[&str]) -> anyhow::Result<Self> {
        if services.len() > usize::from(u8::MAX - FIRST_HOST) {
            bail!("{} services do not fit in a /24", services.len());
        }
        let mut net = Self {
            prefix: format!("{PREFIX}{}", std::process::id()),
            bridge: None,
            namespaces: Vec::new(),
            addresses: BTreeMap::new(),
        };
        let subnet = free_subnet()?;
        let bridge = net.prefix.clone();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;

        for (i, service) in services.iter().enumerate() {
            let address: Ipv4Addr = format!("{subnet}.{}", usize::from(FIRST_HOST) + i).parse()?;
            net.addresses.insert((*service).to_owned(), address);
        }
        let hosts = hosts_file(&net.addresses);
        for (i, service) in services.iter().enumerate() {
            let ns = net.namespace(service);
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let veth = format!("{}v{i}", net.prefix);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let address = format!("{}/24", net.addresses[*service]);
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let etc = Path::new(NETNS_ETC).join(&ns);
            std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
            std::fs::write(etc.join("hosts"), &hosts)
                .with_context(|| format!("writing {}/hosts", etc.display()))?;
        }
        Ok(net)
    }

    /// The namespace of `service`.
    pub fn namespace(&self, service: &str) -> String {
        format!("{}-{service}", self.prefix)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or_default()
    }

    /// A command running `program` inside `service`'s namespace, with its hosts file.
    pub fn command(&self, service: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(service)])
            .arg(program);
        command
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            remove_namespace(ns);
        }
        if let Some(bridge) = &self.bridge {
            let _ = ip(&["link", "del", bridge]);
        }
        // Left only when no other run uses it; fails harmlessly otherwise.
        let _ = std::fs::remove_dir(NETNS_ETC);
    }
}

/// Removes what runs that ended without cleaning up (killed outright) left behind: their
/// namespaces, the processes still inside, hosts files and bridges.
pub fn clear_stale() {
    let listed = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    // `crun<pid>` of a run whose process is gone.
    let stale = |name: &str| -> bool {
        let pid = name
            .trim_start_matches(PREFIX)
            .split('-')
            .next()
            .unwrap_or_default();
        name.starts_with(PREFIX)
            && pid.parse::<u32>().is_ok()
            && !Path::new("/proc").join(pid).exists()
    };
    let namespaces = listed(&["netns", "list"]);
    for ns in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if stale(ns) {
            println!("compose-run: removing namespace {ns}, left by a run that was killed");
            remove_namespace(ns);
        }
    }
    let bridges = listed(&["-o", "link", "show", "type", "bridge"]);
    for bridge in bridges.lines().filter_map(|l| l.split(": ").nth(1)) {
        if stale(bridge) {
            println!("compose-run: removing bridge {bridge}, left by a run that was killed");
            let _ = ip(&["link", "del", bridge]);
        }
    }
}

/// Kills whatever still runs in `ns`, then removes it and its hosts file.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = ip(&["netns", "del", ns]);
    let _ = std::fs::remove_dir_all(PathBuf::from(NETNS_ETC).join(ns));
}

/// `/etc/hosts` of every namespace: loopback, then each service under its compose name.
fn hosts_file(addresses: &BTreeMap<String, Ipv4Addr>) -> String {
    let mut hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned();
    for (service, address) in addresses {
        hosts.push_str(&format!("{address}\t{service}\n"));
    }
    hosts
}

/// A `10.x.y` /24 that no interface uses, picked from the pid so concurrent runs differ.
fn free_subnet() -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .context("running ip addr")?;
    let used = String::from_utf8_lossy(&output.stdout).into_owned();
    let pid = std::process::id();
    (0..1000u32)
        .map(|i| pid.wrapping_add(i * 7919))
        .map(|n| format!("10.{}.{}", 100 + (n >> 8) % 100, n & 0xff))
        .find(|subnet| !used.contains(&format!(" {subnet}.")))
        .context("no free 10.x.y.0/24 subnet")
}

/// Runs `ip args...`; an error with its message unless it succeeds.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_knows_every_service_by_its_compose_name() {
        let addresses = BTreeMap::from([
            ("cart".to_owned(), Ipv4Addr::new(10, 1, 2, 10)),
            ("orders-api".to_owned(), Ipv4Addr::new(10, 1, 2, 11)),
        ]);
        let hosts = hosts_file(&addresses);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.contains("10.1.2.10\tcart\n"), "{hosts}");
        assert!(hosts.contains("10.1.2.11\torders-api\n"), "{hosts}");
    }
}
