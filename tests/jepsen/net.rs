//! The network the test cluster runs on, and the partitions the nemesis makes in it.
//!
//! Preferred (root, `ip netns` working): one network namespace per node, each with its own
//! address 10.77.S.(i+1) on a veth whose other end is in a bridge. The bridge lives in a
//! "switch" namespace of its own, so the host's firewall (a `FORWARD DROP` policy with
//! bridge netfilter, as Docker installs) never sees node-to-node traffic; the test process
//! reaches the nodes from the host as 10.77.S.254 over one more veth into the switch. Cuts are
//! `iptables -A OUTPUT -d PEER -j DROP` inside the sending node's namespace (a one-way cut;
//! two of them make a partition), so clients still reach every node: an isolated leader keeps
//! talking to clients, as in Jepsen's etcd tests. Without iptables (or with
//! `JEPSEN_CUT=route`), a blackhole route in the sender's namespace does the same job.
//!
//! Fallback (not root, or namespaces refused): addresses 127.77.S.(i+1) on the loopback
//! device, no partitions; the nemesis then uses only kill and SIGSTOP faults.
//!
//! Invariants: the harness only sends traffic to addresses it created (10.77.S.x, or its own
//! 127.77.S.x); everything created is named with the test process id (`rjsw<pid>`,
//! `rjn<pid>s<i>`, `rjh<pid>`) and removed on drop (also when a test panics); leftovers of
//! a killed test (its pid gone) are removed by the next run.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Namespaces,
    Loopback,
}

/// How a one-way cut is made inside a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CutTool {
    Iptables,
    BlackholeRoute,
}

pub struct Net {
    pub mode: Mode,
    tool: CutTool,
    /// The third octet: the run's /24.
    subnet: u8,
    nodes: usize,
    /// Namespaces created, for clean-up (switch first).
    namespaces: Vec<String>,
    /// Directed cuts in place, (from, to), 0-based.
    cuts: Vec<(usize, usize)>,
}

/// Run a command, returning its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Remove namespaces left by earlier test processes that no longer exist.
fn remove_leftovers() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let pid = name
            .strip_prefix("rjsw")
            .or_else(|| name.strip_prefix("rjn").and_then(|r| r.split('s').next()));
        let Some(pid) = pid.filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(name);
        }
    }
}

/// Kill what still runs inside a namespace (only our own nodes ever run there), then delete it.
fn delete_namespace(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-CONT", pid]);
            let _ = run("kill", &["-KILL", pid]);
        }
    }
    let _ = ip(&["netns", "del", name]);
}

/// A /24 under 10.77.0.0/16 that no interface on this host uses yet.
fn free_subnet() -> u8 {
    let used = ip(&["-o", "-4", "addr", "show"]).unwrap_or_default();
    let start = (std::process::id() % 200) as u8 + 20;
    (0..200u8)
        .map(|k| 20 + (start - 20 + k) % 200)
        .find(|s| !used.contains(&format!("10.77.{s}.")))
        .unwrap_or(start)
}

impl Net {
    /// Namespaces if possible (and not disabled with `JEPSEN_NETNS=0`), else loopback.
    pub fn setup(nodes: usize) -> Net {
        let wanted = std::env::var("JEPSEN_NETNS").map_or(true, |v| v != "0");
        if wanted && is_root() {
            remove_leftovers();
            match Net::namespaces(nodes) {
                Ok(net) => return net,
                Err(e) => eprintln!("jepsen: network namespaces unavailable ({e}); using loopback"),
            }
        }
        Net {
            mode: Mode::Loopback,
            tool: CutTool::Iptables,
            subnet: (std::process::id() % 200) as u8 + 20,
            nodes,
            namespaces: Vec::new(),
            cuts: Vec::new(),
        }
    }

    fn namespaces(nodes: usize) -> Result<Net, String> {
        let pid = std::process::id();
        let mut net = Net {
            mode: Mode::Namespaces,
            tool: CutTool::Iptables,
            subnet: free_subnet(),
            nodes,
            namespaces: Vec::new(),
            cuts: Vec::new(),
        };
        // From here on, `net` owns what exists: an error drops it, which removes it all.
        let switch = format!("rjsw{pid}");
        ip(&["netns", "add", &switch])?;
        net.namespaces.push(switch.clone());
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let ns = net.namespace(i);
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", net.node_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let host = format!("rjh{pid}");
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "host", "netns", &switch,
        ])?;
        ip(&["-n", &switch, "link", "set", "host", "master", "br0", "up"])?;
        let host_addr = format!("10.77.{}.254/24", net.subnet);
        ip(&["addr", "add", &host_addr, "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        let forced_routes = std::env::var("JEPSEN_CUT").is_ok_and(|v| v == "route");
        if forced_routes || run("iptables", &["--version"]).is_err() {
            eprintln!(
                "jepsen: partitions use blackhole routes (iptables missing or JEPSEN_CUT=route)"
            );
            net.tool = CutTool::BlackholeRoute;
        }
        Ok(net)
    }

    fn namespace(&self, i: usize) -> String {
        format!("rjn{}s{i}", std::process::id())
    }

    /// Node `i`'s address (0-based).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        let host = u8::try_from(i + 1).unwrap_or(u8::MAX);
        match self.mode {
            Mode::Namespaces => Ipv4Addr::new(10, 77, self.subnet, host),
            Mode::Loopback => Ipv4Addr::new(127, 77, self.subnet, host),
        }
    }

    pub fn can_partition(&self) -> bool {
        self.mode == Mode::Namespaces
    }

    /// The command that runs `program` as node `i` (inside its namespace when there is one).
    pub fn command(&self, i: usize, program: &str) -> Command {
        match self.mode {
            Mode::Namespaces => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.namespace(i), program]);
                c
            }
            Mode::Loopback => Command::new(program),
        }
    }

    /// Drop every packet node `from` sends to node `to` (a one-way cut).
    pub fn cut(&mut self, from: usize, to: usize) -> Result<(), String> {
        assert!(self.can_partition(), "cut without namespaces");
        assert!(from < self.nodes && to < self.nodes && from != to);
        if self.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let ns = self.namespace(from);
        let peer = self.node_ip(to).to_string();
        match self.tool {
            CutTool::Iptables => ip(&[
                "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &peer, "-j", "DROP",
            ])?,
            CutTool::BlackholeRoute => ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "blackhole",
                &format!("{peer}/32"),
            ])?,
        };
        self.cuts.push((from, to));
        Ok(())
    }

    /// Cut both ways between every node of `a` and every node of `b`.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) -> Result<(), String> {
        for &x in a {
            for &y in b {
                self.cut(x, y)?;
                self.cut(y, x)?;
            }
        }
        Ok(())
    }

    /// Remove every cut.
    pub fn heal(&mut self) -> Result<(), String> {
        for (from, to) in std::mem::take(&mut self.cuts) {
            let ns = self.namespace(from);
            let peer = self.node_ip(to).to_string();
            match self.tool {
                CutTool::Iptables => ip(&[
                    "netns", "exec", &ns, "iptables", "-D", "OUTPUT", "-d", &peer, "-j", "DROP",
                ])?,
                CutTool::BlackholeRoute => ip(&[
                    "-n",
                    &ns,
                    "route",
                    "del",
                    "blackhole",
                    &format!("{peer}/32"),
                ])?,
            };
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Node namespaces first (they hold the nodes), the switch (and with it every veth) last.
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
    }
}
