//! `sandbank snapshots ls [--sandbox ID] [--name NAME] [--metadata K=V]... [--json]`,
//! `sandbank snapshots rm <id>...`, `sandbank snapshots diff <id> [--json]` and
//! `sandbank snapshot <sandboxId> [--name NAME] [--metadata K=V]... [--ttl DURATION] [--json]`.

use super::{api, json_text, print_out, table, time_text, CliResult, SnapshotsCmd};
use sandbank_client::{CreateSnapshotOpts, SnapshotInfo, SnapshotListOpts};
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A snapshot of a large sandbox copies its whole layer: give it far more than the SDK's 60 s.
const SNAPSHOT_TIMEOUT_MS: u64 = 30 * 60 * 1000;

pub async fn main(cmd: SnapshotsCmd) -> CliResult<ExitCode> {
    match cmd {
        SnapshotsCmd::Ls { sandbox, name, metadata, json } => {
            let opts = SnapshotListOpts {
                sandbox_id: sandbox,
                name,
                metadata: Some(metadata).filter(|m| !m.is_empty()),
                ..Default::default()
            };
            ls(opts, json).await
        }
        SnapshotsCmd::Rm { ids } => remove("snapshot", &ids).await,
        SnapshotsCmd::Diff { id, json } => diff(&id, json).await,
        SnapshotsCmd::Export { id, output } => super::snapshot_archive::export(&id, &output).await,
        SnapshotsCmd::Import { file, json } => super::snapshot_archive::import(&file, json).await,
    }
}

/// `KEY=VALUE` (the value may hold `=`).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// What `sandbank snapshot` may give the new snapshot.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A name, unique among live snapshots, usable wherever its ID is.
    #[arg(long)]
    name: Option<String>,
    /// A label (repeat it for more).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_label)]
    metadata: Vec<(String, String)>,
    /// Expire it after this long (`90s`, `30m`, `12h`, `7d`; `0`: never, whatever the server's
    /// default).
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<std::time::Duration>,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" => Ok(Duration::ZERO),
        other => super::serve_args::parse_duration(other),
    }
}

fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// Labels as `k=v,k2=v2` (sorted by key), `-` when none.
fn labels_text(s: &SnapshotInfo) -> String {
    let text = s.metadata.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    dash(Some(&text))
}

pub fn render_table(items: &[SnapshotInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            vec![
                s.snapshot_id.clone(),
                dash(Some(&s.names.join(","))),
                dash(s.sandbox_id.as_deref()),
                dash(s.parent_snapshot_id.as_deref()),
                s.created_at.as_ref().map_or_else(|| "-".into(), time_text),
                s.expires_at.as_ref().map_or_else(|| "never".into(), time_text),
                s.size_bytes.map_or_else(|| "-".into(), table::human_bytes),
                dash(s.mode.as_deref()),
                labels_text(s),
            ]
        })
        .collect();
    table::render(&["SNAPSHOT ID", "NAME", "SANDBOX", "PARENT", "CREATED", "EXPIRES", "SIZE", "MODE", "LABELS"], &rows)
}

async fn ls(opts: SnapshotListOpts, json: bool) -> CliResult<ExitCode> {
    let api = api(None).await?;
    let pages = api.list_snapshots(opts)?;
    let mut items = Vec::new();
    while pages.has_next() {
        items.extend(pages.next_items().await?);
    }
    if json {
        print_out(&json_text(&serde_json::to_value(&items).expect("JSON")));
    } else {
        print_out(&render_table(&items));
    }
    Ok(ExitCode::SUCCESS)
}

/// `sandbank snapshots diff ID`: one `A|C|D <path>` line per change, as `git diff --name-status`.
async fn diff(id: &str, json: bool) -> CliResult<ExitCode> {
    let changes = api(None).await?.snapshot_diff(id).await?;
    if json {
        print_out(&json_text(&serde_json::to_value(&changes).expect("JSON")));
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines: Vec<(&str, &str)> = Vec::new();
    for (mark, paths) in [("A", &changes.added), ("C", &changes.changed), ("D", &changes.removed)] {
        lines.extend(paths.iter().map(|p| (p.as_str(), mark)));
    }
    lines.sort();
    let text: String = lines.iter().map(|(path, mark)| format!("{mark} {path}\n")).collect();
    print_out(&text);
    Ok(ExitCode::SUCCESS)
}

/// `DELETE /templates/{id}` of each of `ids` (snapshots and templates share the route): each one
/// removed printed, each one not with why on stderr (`what` names them), exit status 1 then.
pub async fn remove(what: &str, ids: &[String]) -> CliResult<ExitCode> {
    let api = api(None).await?;
    let mut failed = false;
    for id in ids {
        match api.delete_snapshot(id).await {
            Ok(true) => print_out(&format!("{id}\n")),
            Ok(false) => {
                eprintln!("sandbank: {what} {id} not found");
                failed = true;
            }
            Err(e) => {
                eprintln!("sandbank: cannot remove {what} {id}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `sandbank snapshot <sandboxId>`: prints the new snapshot's ID (or its JSON). While the
/// request runs, a spinner with the elapsed time on stderr when stderr is a terminal.
pub async fn create(sandbox_id: String, json: bool, args: CreateArgs) -> CliResult<ExitCode> {
    let api = api(Some(SNAPSHOT_TIMEOUT_MS)).await?;
    let opts = CreateSnapshotOpts {
        name: args.name,
        metadata: Some(args.metadata.into_iter().collect())
            .filter(|m: &std::collections::BTreeMap<_, _>| !m.is_empty()),
        ttl_ms: args.ttl.map(|d| d.as_millis() as f64),
    };
    let request = api.create_snapshot_with(&sandbox_id, &opts);
    let snap = if std::io::stderr().is_terminal() {
        with_spinner(&format!("snapshotting {sandbox_id}"), request).await
    } else {
        request.await
    }?;
    if json {
        print_out(&json_text(&serde_json::to_value(&snap).expect("JSON")));
    } else {
        print_out(&format!("{}\n", snap.snapshot_id));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `fut`, redrawing `⠋ <what> 3.2s` on stderr every 100 ms after a short grace (a fast
/// snapshot prints nothing), and clears the line at the end.
async fn with_spinner<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    const FRAMES: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    const GRACE: Duration = Duration::from_millis(300);
    let t0 = Instant::now();
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut frame = 0usize;
    let mut drawn = false;
    let out = loop {
        tokio::select! {
            v = &mut fut => break v,
            _ = tick.tick() => {
                if t0.elapsed() >= GRACE {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{} {what} {:.1}s", FRAMES[frame % FRAMES.len()], t0.elapsed().as_secs_f64());
                    let _ = err.flush();
                    frame += 1;
                    drawn = true;
                }
            }
        }
    };
    if drawn {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
    out
}
