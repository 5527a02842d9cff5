//! `sandbank snapshots export <id> --output FILE` and `sandbank snapshots import FILE [--json]`:
//! a snapshot as one archive file, to move it to another server (see
//! `sandbank_engine::snapshot_archive` for the format).

use super::{api, json_text, print_out, CliResult};
use std::path::Path;
use std::process::ExitCode;

/// `sandbank snapshots export ID --output FILE`: the archive into FILE (whole or not at all);
/// prints the file and its size.
pub async fn export(id: &str, output: &Path) -> CliResult<ExitCode> {
    // No request timeout: a large snapshot takes as long as it takes.
    let api = api(Some(0)).await?;
    let done = api.export_snapshot(id, output, None).await?;
    eprintln!("exported snapshot {id}: {} ({})", done.path.display(), super::table::human_bytes(done.bytes));
    Ok(ExitCode::SUCCESS)
}

/// `sandbank snapshots import FILE [--json]`: prints the new snapshot's ID (`--json`: its API
/// object, as `snapshots ls --json` has it). A name a snapshot on the server has already is not
/// kept: said on stderr.
pub async fn import(file: &Path, json: bool) -> CliResult<ExitCode> {
    let api = api(Some(0)).await?;
    let imported = api.import_snapshot(file, None).await?;
    if let Some(name) = &imported.dropped_name {
        eprintln!("sandbank: imported without its name {name:?}: a snapshot on the server has it");
    }
    if json {
        print_out(&json_text(&serde_json::to_value(&imported.info).expect("JSON")));
    } else {
        print_out(&format!("{}\n", imported.info.snapshot_id));
    }
    Ok(ExitCode::SUCCESS)
}
