//! `sandbank templates build <name> [--dockerfile PATH] [--context DIR] [--tag T]... [--skip-cache]`,
//! `sandbank templates ls [--json]`, `sandbank templates prepare <built-in>` and
//! `sandbank templates rm <name>...`.

use super::{api, json_text, print_out, table, time_text, CliError, CliResult, TemplatesCmd};
use sandbank_client::templates::{self, dockerfile, BuildOpts, LogEntry, TemplateSpec};
use sandbank_client::{BuildFailure, Error};
use sandbank_protocol::rest::TemplateInfo;
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn main(cmd: TemplatesCmd) -> CliResult<ExitCode> {
    match cmd {
        TemplatesCmd::Build { name, dockerfile, context, tags, skip_cache, cpu_count, memory_mb } => {
            // Absolute, so that messages name where files were looked for.
            let context = std::path::absolute(&context).unwrap_or(context);
            let opts = BuildOpts {
                name,
                tags: Some(tags).filter(|t| !t.is_empty()),
                cpu_count,
                memory_mb,
                skip_cache,
                context,
                ..Default::default()
            };
            build(dockerfile, opts).await
        }
        TemplatesCmd::Ls { json } => ls(json).await,
        TemplatesCmd::Prepare { name, force } => prepare(&name, force).await,
        TemplatesCmd::Rm { names } => super::snapshots::remove("template", &names).await,
    }
}

/// One log line as the CLI prints it: `12:04:05 INFO  message` (UTC).
pub fn log_line(e: &LogEntry) -> String {
    format!("{} {:<5} {}", e.timestamp.format("%H:%M:%S"), e.level.to_uppercase(), e.message)
}

/// What a failed build prints: the step, why, and what the step printed.
pub fn failure_text(name: &str, spec: &TemplateSpec, f: &BuildFailure) -> String {
    let mut out = match &f.step {
        Some(step) => format!(
            "sandbank: the build of {name} failed at step {step} ({}): {}\n",
            spec.describe_step(step),
            f.message
        ),
        None => format!("sandbank: the build of {name} failed: {}\n", f.message),
    };
    if let (Some(step), false) = (&f.step, f.log_entries.is_empty()) {
        out.push_str(&format!("--- the log of step {step} ---\n"));
        for e in &f.log_entries {
            out.push_str(&log_line(e));
            out.push('\n');
        }
    }
    out
}

/// Builds a built-in template (`crate::templates::builtin`) through the server's API, as
/// `Template.build` would, unless it is built already (`force`: build it anyway).
async fn prepare(name: &str, force: bool) -> CliResult<ExitCode> {
    use crate::templates::builtin::{
        code_interpreter_spec, code_interpreter_tag, CODE_INTERPRETER, CODE_INTERPRETER_SHORT,
    };
    if name != CODE_INTERPRETER && name != CODE_INTERPRETER_SHORT {
        return Err(CliError(format!(
            "no built-in template {name:?}: the built-in templates are {CODE_INTERPRETER_SHORT} ({CODE_INTERPRETER})"
        )));
    }
    let api = api(None).await?;
    // Built already when a build of this definition (its tag) is there.
    let tag = code_interpreter_tag();
    let current = format!("{CODE_INTERPRETER}:{tag}");
    let built = api.list_templates().await?.into_iter().find(|t| t.names.contains(&current));
    if let (Some(t), false) = (&built, force) {
        eprintln!("sandbank: {CODE_INTERPRETER} is built already ({tag}; --force builds it again)");
        print_out(&format!("{}\n", t.template_id));
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let tags = Some(vec!["default".to_string(), tag]);
    let opts = BuildOpts { name: CODE_INTERPRETER.into(), tags, context: "/".into(), ..Default::default() };
    let spec = code_interpreter_spec();
    // The step that writes the server carries it in base64: its line is cut, not printed whole.
    let mut log = |e: LogEntry| eprintln!("{}", crate::templates::builtin::shortened(&log_line(&e)));
    match templates::build(&api, spec.clone(), &opts, &mut log).await {
        Ok(info) => {
            eprintln!("sandbank: {CODE_INTERPRETER} built in {:.1} s", started.elapsed().as_secs_f64());
            print_out(&format!("{}\n", info.template_id));
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Build(f)) => {
            eprint!("{}", failure_text(CODE_INTERPRETER, &spec, &f));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// Builds the Dockerfile (default: the context's) as the template `opts.name`.
async fn build(dockerfile: Option<PathBuf>, opts: BuildOpts) -> CliResult<ExitCode> {
    let path = dockerfile.unwrap_or_else(|| opts.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError(format!("cannot read the Dockerfile {}: {e}", path.display())))?;
    let parsed = dockerfile::parse(&text).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    for w in &parsed.warnings {
        eprintln!("sandbank: {}: {w}", path.display());
    }
    if !opts.context.is_dir() {
        return Err(CliError(format!("the context {} is not a directory", opts.context.display())));
    }
    let spec = TemplateSpec::from_dockerfile(&parsed);
    let api = api(None).await?;
    let mut log = |e: LogEntry| eprintln!("{}", log_line(&e));
    match templates::build(&api, spec.clone(), &opts, &mut log).await {
        Ok(info) => {
            print_out(&format!("{}\n", info.template_id));
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Build(f)) => {
            eprint!("{}", failure_text(&opts.name, &spec, &f));
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
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
