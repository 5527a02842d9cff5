//! Egress rules (E2B's `allowOut` / `denyOut`): which addresses a sandbox's processes may
//! connect to, enforced in the sandbox's own network namespace by an nftables table that only the
//! host can change (processes in the sandbox have no CAP_NET_ADMIN). An allowed destination wins
//! over a denied one; loopback and DNS (port 53, which the sandbox's resolver needs) are always
//! allowed; a denied connection is refused at once (TCP reset, ICMP "administratively
//! prohibited"), so nothing leaves the sandbox.

use crate::error::{During, SysError};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The nftables table the rules live in.
const TABLE: &str = "sandbank_egress";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Egress {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Egress {
    /// No rule: everything is allowed.
    pub fn is_open(&self) -> bool {
        self.deny.is_empty()
    }

    /// The nftables script that replaces the table with these rules (or removes it).
    pub fn script(&self) -> String {
        // Declaring the table first makes the delete valid when it does not exist yet.
        let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
        if self.is_open() {
            return s;
        }
        let set = |nets: &[IpNet], v4: bool| -> Option<String> {
            let items: Vec<String> =
                nets.iter().filter(|n| matches!(n, IpNet::V4(_)) == v4).map(|n| n.trunc().to_string()).collect();
            (!items.is_empty()).then(|| format!("{{ {} }}", items.join(", ")))
        };
        s.push_str(&format!(
            "table inet {TABLE} {{\n  chain output {{\n    type filter hook output priority filter; policy accept;\n"
        ));
        s.push_str("    oifname \"lo\" accept\n    udp dport 53 accept\n    tcp dport 53 accept\n");
        for (family, v4) in [("ip", true), ("ip6", false)] {
            if let Some(allowed) = set(&self.allow, v4) {
                s.push_str(&format!("    {family} daddr {allowed} accept\n"));
            }
            if let Some(denied) = set(&self.deny, v4) {
                s.push_str(&format!("    meta l4proto tcp {family} daddr {denied} reject with tcp reset\n"));
                s.push_str(&format!("    {family} daddr {denied} reject with icmpx admin-prohibited\n"));
            }
        }
        s.push_str("  }\n}\n");
        s
    }
}

/// An address (`1.2.3.4`, `::1`) or a CIDR block (`10.0.0.0/8`); `None` for anything else (a
/// domain name, or garbage).
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Where `nft` is, if installed (Debian package `nftables`).
pub fn find_nft() -> Option<PathBuf> {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].into_iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Why egress rules could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("they need nftables (`nft`; Debian package nftables), which is not installed")]
    NoNft,
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("nft refused the egress rules ({status}): {stderr}")]
    Refused { status: std::process::ExitStatus, stderr: String },
}

/// Applies `egress` in the network namespace `netns` with `nft` (a blocking call).
pub fn apply(nft: &Path, netns: &OwnedFd, egress: &Egress) -> Result<(), EgressError> {
    let ns = netns.as_raw_fd();
    let mut cmd = Command::new(nft);
    cmd.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    // The descriptor stays open until the exec.
    crate::sys::before_exec(&mut cmd, crate::sys::BeforeExec { join_net: Some(ns), ..Default::default() });
    let mut child = cmd.spawn().during(format_args!("start {}", nft.display()))?;
    let script = egress.script();
    child.stdin.take().expect("stdin is piped").write_all(script.as_bytes()).during("give nft the rules")?;
    let out = child.wait_with_output().during("wait for nft")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(EgressError::Refused { status: out.status, stderr });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_blocks_parse_and_names_do_not() {
        assert_eq!(parse_net("1.1.1.1").unwrap().to_string(), "1.1.1.1/32");
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(parse_net("example.com").is_none());
        assert!(parse_net("10.0.0.0/33").is_none());
    }

    #[test]
    fn the_script_allows_before_it_denies() {
        assert!(!Egress::default().script().contains("chain"), "no rule: the table goes");
        let e = Egress {
            allow: vec![parse_net("1.1.1.1").unwrap()],
            deny: vec![parse_net("0.0.0.0/0").unwrap(), parse_net("10.1.2.3/8").unwrap()],
        };
        let s = e.script();
        let allow = s.find("ip daddr { 1.1.1.1/32 } accept").expect(&s);
        let deny = s.find("ip daddr { 0.0.0.0/0, 10.0.0.0/8 } reject").expect(&s);
        assert!(allow < deny, "{s}");
        assert!(!s.contains("ip6 daddr"), "no IPv6 rule without an IPv6 entry: {s}");
    }
}
