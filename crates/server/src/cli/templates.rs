//! `sandbank templates ls [--json]` and `sandbank templates rm <name>...`.

use super::{api, json_text, print_out, table, time_text, CliResult, TemplatesCmd};
use sandbank_protocol::rest::TemplateInfo;
use std::process::ExitCode;

pub async fn main(cmd: TemplatesCmd) -> CliResult<ExitCode> {
    match cmd {
        TemplatesCmd::Ls { json } => ls(json).await,
        TemplatesCmd::Rm { names } => super::snapshots::remove("template", &names).await,
    }
}

pub fn render_table(items: &[TemplateInfo]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            let tags: Vec<&str> = t.names.iter().filter_map(|n| n.rsplit_once(':').map(|(_, tag)| tag)).collect();
            vec![
                t.aliases.first().cloned().unwrap_or_else(|| "-".into()),
                t.template_id.clone(),
                if tags.is_empty() { "-".into() } else { tags.join(",") },
                t.build_status.clone(),
                t.build_count.to_string(),
                time_text(&t.updated_at),
            ]
        })
        .collect();
    table::render(&["NAME", "TEMPLATE ID", "TAGS", "STATUS", "BUILDS", "UPDATED"], &rows)
}

async fn ls(json: bool) -> CliResult<ExitCode> {
    let items = api(None).await?.list_templates().await?;
    if json {
        print_out(&json_text(&serde_json::to_value(&items).expect("JSON")));
    } else {
        print_out(&render_table(&items));
    }
    Ok(ExitCode::SUCCESS)
}
