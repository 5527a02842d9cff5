//! Templates this server knows how to build by itself: `code-interpreter-v1`, the template the
//! official interpreter SDKs (`@e2b/code-interpreter`, `novita-sandbox/code-interpreter`) and
//! `sandbank/code-interpreter` create by default. It is built by the ordinary template builder
//! (cached steps, a memory snapshot once its server is ready) the first time a sandbox of it is
//! asked for, or ahead of time with `sandbank templates prepare code-interpreter`.

use super::catalog::{split_tag, Status};
use super::steps::BuildRequest;
use super::Templates;
use crate::api::backend::Backend;
use crate::api::error::ApiError;
use base64::Engine as _;
use sandbank_client::templates::TemplateSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name the SDKs create (`Sandbox.defaultTemplate` of both official interpreter SDKs).
pub const CODE_INTERPRETER: &str = "code-interpreter-v1";
/// What `sandbank templates prepare` takes for it.
pub const CODE_INTERPRETER_SHORT: &str = "code-interpreter";
/// The port its server listens on (the SDKs' `JUPYTER_PORT`).
pub const CODE_INTERPRETER_PORT: u16 = 49999;

/// The in-sandbox interpreter server (`interpreter/server.py`) and what it loads into Python
/// kernels (`interpreter/display.py`), installed side by side.
const SERVER_PY: &str = include_str!("interpreter/server.py");
const DISPLAY_PY: &str = include_str!("interpreter/display.py");
const SERVER_DIR: &str = "/opt/sandbank-interpreter";
const SERVER_PATH: &str = "/opt/sandbank-interpreter/server.py";

/// Pinned, so that a rebuild gets what was tested (and the step's cached layer stays valid).
/// Python 3.11 (Debian 12's) wheels exist for all of them.
const PIP_PACKAGES: &[&str] =
    &["ipykernel==6.29.5", "jupyter_client==8.6.3", "matplotlib==3.9.2", "pandas==2.2.3", "numpy==2.1.3"];
/// The other languages' kernels: Deno's (JavaScript and TypeScript; PyPI carries its binary)
/// and bash_kernel, with bash_kernel's own dependencies pinned too.
const KERNEL_PACKAGES: &[&str] = &["deno==2.9.8", "bash_kernel==0.10.0", "pexpect==4.9.0", "filetype==1.2.0"];
/// Deno's kernelspec, system-wide (`deno jupyter --install` writes one in the caller's home);
/// without colours, so that a result's text is `5`, not an ANSI-coloured `5`.
const DENO_KERNEL_JSON: &str = r#"{"argv": ["/usr/local/bin/deno", "jupyter", "--kernel", "--conn", "{connection_file}"], "display_name": "Deno", "language": "typescript", "env": {"DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}}"#;

/// The built-in template `reference` (`name[:tag]`) names, if any.
pub fn builtin_name(reference: &str) -> Option<&'static str> {
    (split_tag(reference.trim()).0 == CODE_INTERPRETER).then_some(CODE_INTERPRETER)
}

/// The build of `code-interpreter-v1`, as E2B's builder would send it: the base, the packages
/// (system-wide, so `python3` in commands has them too), the server, and the server as the start
/// command, ready once its default kernel answers.
pub fn code_interpreter_spec() -> TemplateSpec {
    let run = |cmd: String| serde_json::json!({"type": "RUN", "args": [cmd, "root"], "force": false});
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let pip = |packages: &[&str]| {
        format!("pip install --no-cache-dir --break-system-packages --disable-pip-version-check {}", packages.join(" "))
    };
    let json = serde_json::json!({
        "fromImage": sandbank_client::templates::DEFAULT_BASE_IMAGE,
        "steps": [
            // Debian's python3 is "externally managed" (PEP 668): the template is ours to shape.
            run(pip(PIP_PACKAGES)),
            run(format!(
                "{} && python3 -m bash_kernel.install --sys-prefix && mkdir -p {deno} && echo {} | base64 -d > \
                 {deno}/kernel.json",
                pip(KERNEL_PACKAGES),
                b64(DENO_KERNEL_JSON),
                deno = "/usr/local/share/jupyter/kernels/deno",
            )),
            // Without Debian's PEP 668 marker, `!pip install x` in a cell installs for the user
            // (~/.local), as in the cloud's template, instead of refusing.
            run(format!(
                "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED && mkdir -p {SERVER_DIR} && echo {} | base64 -d > \
                 {SERVER_PATH} && echo {} | base64 -d > {SERVER_DIR}/display.py && chmod 0644 {SERVER_DIR}/*.py",
                b64(SERVER_PY),
                b64(DISPLAY_PY),
            )),
        ],
        "startCmd": format!("python3 {SERVER_PATH}"),
        "readyCmd": format!("curl -sf http://127.0.0.1:{CODE_INTERPRETER_PORT}/health"),
        "force": false,
    });
    serde_json::from_value(json).expect("the built-in template's JSON is a TemplateSpec")
}

/// The tag of the build of the current definition (`spec-<hash>`): a server whose built copy
/// is of an older definition (another server.py, other packages) builds it again, from the
/// cached steps that did not change. Builds are tagged with it and `default`.
pub fn code_interpreter_tag() -> String {
    use sha2::Digest;
    let spec = serde_json::to_vec(&code_interpreter_spec()).expect("a TemplateSpec is JSON");
    let digest = sha2::Sha256::digest(&spec);
    format!("spec-{}", digest.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
}

/// Serializes builds of the built-in templates, so that sandboxes asked for at once wait for one
/// build rather than each starting its own.
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often a waiting create looks at the build's status.
const POLL: Duration = Duration::from_millis(500);

/// Makes sure built-in template `reference` is built: builds it now (waiting) when it is not,
/// or waits for the build under way. Does nothing for other names or a template built already.
pub async fn ensure(templates: &Arc<Templates>, backend: &Arc<dyn Backend>, reference: &str) -> Result<(), ApiError> {
    let Some(name) = builtin_name(reference) else { return Ok(()) };
    let tag = code_interpreter_tag();
    let current = format!("{name}:{tag}");
    if templates.resolve(&current).is_some() || users_own(templates, name) {
        return Ok(());
    }
    let _one = BUILDING.lock().await;
    let (template_id, build_id) = match templates.building(name) {
        Some(under_way) => under_way,
        None if templates.resolve(&current).is_some() => return Ok(()),
        None => {
            tracing::info!(
                template = name,
                "building the built-in template (under a minute; a few with a slow network)"
            );
            let spec = serde_json::to_value(code_interpreter_spec()).expect("a TemplateSpec is JSON");
            let req: BuildRequest = serde_json::from_value(spec)
                .map_err(|e| ApiError::Internal(format!("the built-in template {name}: {e}")))?;
            let r = templates.request(name, &[super::catalog::DEFAULT_TAG.to_string(), tag], None, None)?;
            templates.start(Arc::clone(backend), &r.template_id, &r.build_id, req)?;
            (r.template_id, r.build_id)
        }
    };
    wait(templates, name, &template_id, &build_id).await
}

/// Whether `name` is a template built here by a user (`Template.build(t, 'code-interpreter-v1')`):
/// it has a ready build and none of ours (tagged `spec-…`), and is left as it is.
fn users_own(templates: &Templates, name: &str) -> bool {
    let ours = templates.tags(name).is_ok_and(|tags| tags.iter().any(|(tag, _, _)| tag.starts_with("spec-")));
    !ours && templates.resolve(name).is_some()
}

/// Waits for a build, logging its progress; `Err` says why it failed.
async fn wait(templates: &Templates, name: &str, template_id: &str, build_id: &str) -> Result<(), ApiError> {
    let (started, mut offset) = (Instant::now(), 0);
    loop {
        let s = templates.status(template_id, build_id, offset)?;
        offset += s.logs.len();
        for line in &s.logs {
            tracing::info!(template = name, "build: {}", shortened(&line.message));
        }
        match s.status {
            Status::Ready => {
                tracing::info!(template = name, "built in {:.1} s", started.elapsed().as_secs_f64());
                return Ok(());
            }
            Status::Error => {
                let why = s.reason.map_or_else(
                    || "no reason given".to_string(),
                    |r| format!("{}{}", r.step.map(|s| format!("step {s}: ")).unwrap_or_default(), r.message),
                );
                return Err(ApiError::Internal(format!(
                    "building the template {name} failed ({why}); see the server's log, and try \
                     `sandbank templates prepare {CODE_INTERPRETER_SHORT}`"
                )));
            }
            Status::Waiting | Status::Building => tokio::time::sleep(POLL).await,
        }
    }
}

/// A build log line cut to a readable length (the step that writes the server carries it whole,
/// in base64).
pub fn shortened(line: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 1000;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} characters)", &line[..cut], line.len()).into(),
        None => line.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut() {
        assert_eq!(shortened("short"), "short");
        let long = "é".repeat(1200);
        assert_eq!(shortened(&long), format!("{}… (2400 characters)", "é".repeat(1000)));
    }

    #[test]
    fn a_users_own_template_of_that_name_is_left_alone() {
        let t = Templates::in_memory();
        assert!(!users_own(&t, CODE_INTERPRETER), "none yet: ours is built");
        let made = || super::super::Resolved {
            snapshot: "snap".into(),
            envs: Default::default(),
            user: None,
            workdir: None,
            start_cmd: None,
            ready_cmd: None,
            start_on_create: false,
        };
        let r = t.request(CODE_INTERPRETER, &[], None, None).unwrap();
        t.finish(&r.template_id, &r.build_id, Ok(made()));
        assert!(users_own(&t, CODE_INTERPRETER));
        let tags = ["default".to_string(), "spec-000000000000".to_string()];
        let r = t.request(CODE_INTERPRETER, &tags, None, None).unwrap();
        t.finish(&r.template_id, &r.build_id, Ok(made()));
        assert!(!users_own(&t, CODE_INTERPRETER), "one of ours (an older definition): rebuilt");
    }

    #[test]
    fn names() {
        assert_eq!(builtin_name("code-interpreter-v1"), Some(CODE_INTERPRETER));
        assert_eq!(builtin_name("code-interpreter-v1:default"), Some(CODE_INTERPRETER));
        assert_eq!(builtin_name("base"), None);
    }

    #[test]
    fn the_spec_is_a_valid_build() {
        let spec = serde_json::to_value(code_interpreter_spec()).unwrap();
        let req: BuildRequest = serde_json::from_value(spec).unwrap();
        assert_eq!(req.from(), Ok(super::super::steps::From::Base));
        let steps = req.steps().unwrap();
        assert_eq!(steps.len(), 3);
        assert!(req.start_cmd.unwrap().contains(SERVER_PATH));
        assert_eq!(super::super::catalog::check_tag(&code_interpreter_tag()), Ok(code_interpreter_tag()));
    }
}
