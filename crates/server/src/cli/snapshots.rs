//! `sandbank snapshots ls [--sandbox ID] [--json]`, `sandbank snapshots rm <id>...` and
//! `sandbank snapshot <sandboxId> [--json]`.

use super::{api, json_text, print_out, table, time_text, CliResult, SnapshotsCmd};
use sandbank_client::{SnapshotInfo, SnapshotListOpts};
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A snapshot of a large sandbox copies its whole layer: give it far more than the SDK's 60 s.
const SNAPSHOT_TIMEOUT_MS: u64 = 30 * 60 * 1000;

pub async fn main(cmd: SnapshotsCmd) -> CliResult<ExitCode> {
    match cmd {
        SnapshotsCmd::Ls { sandbox, json } => ls(sandbox, json).await,
        SnapshotsCmd::Rm { ids } => remove("snapshot", &ids).await,
    }
}

fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

pub fn render_table(items: &[SnapshotInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            vec![
                s.snapshot_id.clone(),
                dash(s.sandbox_id.as_deref()),
                dash(s.parent_snapshot_id.as_deref()),
                s.created_at.as_ref().map_or_else(|| "-".into(), time_text),
                s.size_bytes.map_or_else(|| "-".into(), table::human_bytes),
                dash(s.mode.as_deref()),
            ]
        })
        .collect();
    table::render(&["SNAPSHOT ID", "SANDBOX", "PARENT", "CREATED", "SIZE", "MODE"], &rows)
}

async fn ls(sandbox: Option<String>, json: bool) -> CliResult<ExitCode> {
    let api = api(None).await?;
    let pages = api.list_snapshots(SnapshotListOpts { sandbox_id: sandbox, ..Default::default() })?;
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
pub async fn create(sandbox_id: String, json: bool) -> CliResult<ExitCode> {
    let api = api(Some(SNAPSHOT_TIMEOUT_MS)).await?;
    let request = api.create_snapshot(&sandbox_id);
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
