//! `sandbank sandboxes ls [--json]` and `sandbank sandboxes kill <id>...`.

use super::{api, json_text, print_out, table, time_text, CliResult, SandboxesCmd};
use sandbank_client::{Api, SandboxInfo, SandboxListOpts};
use serde_json::json;
use std::process::ExitCode;

pub async fn main(cmd: SandboxesCmd) -> CliResult<ExitCode> {
    match cmd {
        SandboxesCmd::Ls { json } => ls(json).await,
        SandboxesCmd::Kill { ids } => kill(&ids).await,
    }
}

/// Every sandbox, following the pages.
pub async fn list_all(api: &Api) -> CliResult<Vec<SandboxInfo>> {
    let pages = api.list(SandboxListOpts::default());
    let mut all = Vec::new();
    while pages.has_next() {
        all.extend(pages.next_items().await?);
    }
    Ok(all)
}

/// The API's object for a listed sandbox (camelCase keys, as `GET /v2/sandboxes` names them).
fn to_json(s: &SandboxInfo) -> serde_json::Value {
    let metadata: std::collections::BTreeMap<_, _> = s.metadata.iter().collect();
    let mut v = json!({
        "sandboxID": s.sandbox_id,
        "templateID": s.template_id,
        "metadata": metadata,
        "startedAt": s.started_at,
        "endAt": s.end_at,
        "state": s.state,
        "cpuCount": s.cpu_count,
        "memoryMB": s.memory_mb,
        "envdVersion": s.envd_version,
    });
    if let Some(alias) = &s.name {
        v["alias"] = json!(alias);
    }
    v
}

fn metadata_text(s: &SandboxInfo) -> String {
    let mut pairs: Vec<_> = s.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

pub fn render_table(items: &[SandboxInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            let template = match &s.name {
                Some(alias) if alias != &s.template_id => format!("{} ({alias})", s.template_id),
                _ => s.template_id.clone(),
            };
            vec![
                s.sandbox_id.clone(),
                template,
                time_text(&s.started_at),
                time_text(&s.end_at),
                s.cpu_count.to_string(),
                s.memory_mb.to_string(),
                metadata_text(s),
            ]
        })
        .collect();
    table::render(&["ID", "TEMPLATE", "STARTED", "ENDS", "CPU", "MEM MB", "METADATA"], &rows)
}

async fn ls(json: bool) -> CliResult<ExitCode> {
    let api = api(None).await?;
    let items = list_all(&api).await?;
    if json {
        print_out(&json_text(&serde_json::Value::Array(items.iter().map(to_json).collect())));
    } else {
        print_out(&render_table(&items));
    }
    Ok(ExitCode::SUCCESS)
}

async fn kill(ids: &[String]) -> CliResult<ExitCode> {
    let api = api(None).await?;
    let mut failed = false;
    for id in ids {
        match api.kill(id).await {
            Ok(true) => print_out(&format!("{id}\n")),
            Ok(false) => {
                eprintln!("sandbank: sandbox {id} not found");
                failed = true;
            }
            Err(e) => {
                eprintln!("sandbank: cannot kill sandbox {id}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
