//! Running the `sandbank` CLI from a test: a clean configuration (none of the caller's
//! `NOVITA_*`, `E2B_*` or `SANDBANK_*` settings leak in), the run and its output logged.

use std::process::Output;

/// The SDK settings the CLI reads, each under `NOVITA_` and `E2B_`.
const CONFIG_VARS: &[&str] = &["API_KEY", "ACCESS_TOKEN", "API_URL", "SANDBOX_URL", "DOMAIN", "DEBUG"];

/// `sandbank <args>` with none of the caller's configuration: the test sets what it needs.
pub fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbank"));
    cmd.args(args);
    for v in CONFIG_VARS {
        cmd.env_remove(format!("NOVITA_{v}")).env_remove(format!("E2B_{v}"));
    }
    cmd.env_remove("SANDBANK_URL").env_remove("SANDBANK_API_KEY").env_remove("SANDBANK_DATA_DIR");
    cmd
}

/// Runs `cmd` (made by [`command`] with `args`), its command line and output in the test's log.
pub async fn run_logged(mut cmd: tokio::process::Command, args: &[&str]) -> Output {
    let out = cmd.output().await.expect("running the sandbank CLI");
    eprintln!(
        "$ sandbank {}\n{}{}[{}]",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
    out
}
