//! The arguments of `sandbank serve`: with the CLI, so that `doctor` reads them (their
//! variables) the way a server started here would, without depending on the server.

use crate::http_server;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// API key clients must send (X-API-KEY or Authorization: Bearer). Generated and stored in
    /// the data directory when not given.
    #[arg(long, env = "SANDBANK_API_KEY")]
    pub api_key: Option<String>,
    /// Where sandboxes, templates and state live.
    #[arg(long, env = "SANDBANK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Stop by itself after this many seconds with no sandbox and no request (0: never). The
    /// SDK starts its background daemon with 300.
    #[arg(long, default_value_t = 0)]
    pub idle_exit_secs: u64,
    /// The disk limit of a sandbox whose request names none (`diskSizeMB`), in MB: past it,
    /// writes inside fail with EDQUOT ("Disk quota exceeded") and uploads with HTTP 507 (on the
    /// btrfs store; on the copy store sandboxes have no disk limit).
    #[arg(long, env = "SANDBANK_DISK_LIMIT_MB", default_value_t = sandbank_engine::DEFAULT_DISK_MB, value_parser = clap::value_parser!(u64).range(1..))]
    pub disk_limit_mb: u64,
    /// Where sandboxes' writable layers and snapshots live: `btrfs` (a copy-on-write store: a
    /// snapshot costs the same whatever the sandbox wrote, and sandboxes have disk limits; on
    /// the data directory's filesystem when it is btrfs, else in a sparse image in it, on a loop
    /// device), `copy` (directories of the data directory; a snapshot copies what the sandbox
    /// wrote), or `auto`: btrfs where it can be used, else copy (saying why), and whichever
    /// the data directory's snapshots are on.
    #[arg(long, env = "SANDBANK_STORE", value_enum, default_value_t = StoreKind::Auto)]
    pub store: StoreKind,
    /// Where the base template's Debian image is built (once, from Debian's packages, with
    /// mmdebstrap: about a minute and the network) and kept; default: `<data-dir>/images`. Data
    /// directories may share one (an image never changes once built).
    #[arg(long, env = "SANDBANK_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Pull Docker Hub's images (a build's `fromImage('python:3.12')`) from this registry instead:
    /// `host[:port]`, or `http://host[:port]` for one without TLS (as dockerd's registry mirrors).
    #[arg(long, env = "SANDBANK_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,
    /// Speak plain HTTP to these registries (`host[:port]`, comma-separated or repeated); those on
    /// a loopback address always are.
    #[arg(long, env = "SANDBANK_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,
    /// The most the btrfs store's image may hold, in GB (sparse: it takes what is written).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub store_image_gb: u64,
    /// Run sandboxes without a user namespace: root in a sandbox is then the host's root
    /// (confined by capabilities, seccomp and masks). Without it, a machine that cannot give
    /// sandboxes a user namespace makes the server refuse to start, saying why.
    /// The variable counts as set unless empty or false, 0, no, off (so `=1` works).
    #[arg(long, env = "SANDBANK_NO_USERNS", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_userns: bool,
    /// Close a connection whose request headers have not all arrived this many seconds after the
    /// server started waiting for them (a new connection, or an idle kept-alive one).
    #[arg(long, default_value_t = http_server::HEADER_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// How long the snapshots users take live when their request sets no `ttl` (`90s`, `30m`,
    /// `12h`, `7d`; a bare number is seconds). An expired snapshot is no longer listed nor
    /// found, and is deleted once no sandbox started from it runs. Default: they never expire.
    #[arg(long, env = "SANDBANK_SNAPSHOT_TTL", value_parser = parse_duration)]
    pub snapshot_ttl: Option<std::time::Duration>,
    /// Keep only the newest N snapshots of each sandbox: taking one more expires the older
    /// ones at once (deleted once no sandbox uses them). Default: all are kept.
    #[arg(long, env = "SANDBANK_KEEP_LAST", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
}

/// A duration as `--snapshot-ttl` takes it: a whole number with a unit (`s`, `m`, `h`, `d`),
/// or seconds without one.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration such as 90s, 30m, 12h or 7d"))?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use s, m, h or d")),
    };
    match n.checked_mul(secs) {
        Some(0) => Err("a snapshot TTL must be more than 0".into()),
        Some(t) => Ok(std::time::Duration::from_secs(t)),
        None => Err(format!("{s:?} is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }
}

/// `--store`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Auto,
    Copy,
    Btrfs,
}
