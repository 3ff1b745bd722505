//! A small network for multi-host tests: a network namespace the test creates, with a
//! bridge on 192.0.2.1/24 (TEST-NET-1, never routed), and one veth pair per test
//! machine, its inner end in the machine's own network namespace as 192.0.2.(10+i).
//!
//! Processes the test runs "on the network" (the FleetLock test server, etcd) run in
//! the namespace with `ip netns exec`. Dropping the network kills them and deletes the
//! namespace, which takes the veth pairs with it.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::Testbed;

/// The bridge's address, where servers of the test listen.
pub const SERVER_IP: &str = "192.0.2.1";

/// The namespace, its bridge and the servers started in it.
#[derive(Debug)]
pub struct FleetNet {
    ns: String,
    children: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (package iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl FleetNet {
    /// Creates namespace `name` (a leftover of that name is removed first) and joins
    /// `machines` to its bridge; machine `i` gets 192.0.2.(10+i).
    pub fn create(name: &str, machines: &[&Testbed]) -> Result<FleetNet> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let net = FleetNet {
            ns: name.to_owned(),
            children: Vec::new(),
        };
        net.exec_ip(&["link", "add", "br0", "type", "bridge"])?;
        net.exec_ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", "br0"])?;
        net.exec_ip(&["link", "set", "br0", "up"])?;
        net.exec_ip(&["link", "set", "lo", "up"])?;
        for (i, m) in machines.iter().enumerate() {
            // Names are per namespace; the host side is created in the host namespace
            // first, so it needs a name unique on the host.
            let outer = format!("lf{}o{i}", std::process::id() % 100_000);
            let inner = format!("lf{}i{i}", std::process::id() % 100_000);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &outer, "netns", name])?;
            ip(&["link", "set", &inner, "netns", &m.leader_pid().to_string()])?;
            net.exec_ip(&["link", "set", &outer, "master", "br0"])?;
            net.exec_ip(&["link", "set", &outer, "up"])?;
            let addr = format!("192.0.2.{}/24", 10 + i);
            for args in [
                vec!["ip", "addr", "add", &addr, "dev", &inner],
                vec!["ip", "link", "set", &inner, "up"],
            ] {
                m.exec_ok(&args)?;
            }
        }
        Ok(net)
    }

    fn exec_ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["netns", "exec", &self.ns, "ip"];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Starts `program args…` in the namespace; it is killed when the network drops.
    pub fn spawn(&mut self, program: &str, args: &[&str]) -> Result<()> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program} in netns {}", self.ns))?;
        self.children.push(child);
        Ok(())
    }

    /// Stops every process started with [`FleetNet::spawn`].
    pub fn stop_all(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for FleetNet {
    fn drop(&mut self) {
        self.stop_all();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
