//! One template build: a sandbox from where the build starts runs the steps; after each step
//! that changes files, a snapshot of it (files only) is the step's layer, cached by the step
//! and everything before it ([`super::steps::cache_key`]), so that a build that repeats them
//! starts from there. `ENV`, `USER` and `WORKDIR` change what later steps run with (`USER` also
//! makes the user if there is none, `WORKDIR` its directory); the last `USER` and `WORKDIR` are
//! the defaults of the template's sandboxes' commands. A start command is started last, its ready command waited for, and the template
//! is then a snapshot with its memory (where CRIU can take one), so that its sandboxes start with
//! the process running, as in the cloud.

use super::catalog::Reason;
use super::envd::{self, Ran};
use super::steps::{self, BuildRequest, From, Step};
use super::{Resolved, Templates};
use crate::api::backend::Backend;
use sandbank_engine::{SandboxHandle, SandboxSpec, SnapshotMode, BUILD_SNAPSHOT_PREFIX};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The user steps run as until a USER step (E2B's).
const DEFAULT_USER: &str = "user";
/// What a start command without a ready command waits (E2B's default).
const DEFAULT_READY_CMD: &str = "sleep 20";
/// How long the ready command may take to pass, and how often it is tried.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const READY_INTERVAL: Duration = Duration::from_secs(2);

/// Where a build starts: the layer, the variables it has, and its start and ready commands.
type StartPoint = (String, BTreeMap<String, String>, (Option<String>, Option<String>));

pub async fn run(
    templates: Arc<Templates>,
    backend: Arc<dyn Backend>,
    template_id: String,
    build_id: String,
    req: BuildRequest,
) {
    let mut build = Build {
        templates: Arc::clone(&templates),
        backend,
        template_id,
        build_id,
        sandbox: None,
        defaults: (None, None),
    };
    let started = Instant::now();
    let result = build.steps(&req).await;
    build.drop_sandbox().await;
    match &result {
        Ok(_) => build.log(format!("Template built in {:.3} s", started.elapsed().as_secs_f64()), None),
        Err(r) => build.log_at("error", format!("Build failed: {}", r.message), r.step.clone()),
    }
    templates.finish(&build.template_id, &build.build_id, result);
}

/// What later steps run with.
#[derive(Debug)]
struct State {
    user: String,
    workdir: Option<String>,
    envs: BTreeMap<String, String>,
}

impl State {
    fn describe(&self) -> String {
        format!("{}\n{:?}\n{:?}", self.user, self.workdir, self.envs)
    }
}

struct Build {
    templates: Arc<Templates>,
    backend: Arc<dyn Backend>,
    template_id: String,
    build_id: String,
    /// The sandbox the steps run in, while one is needed.
    sandbox: Option<SandboxHandle>,
    /// The default user and working directory it is started with (the template's, for the one
    /// whose memory the template keeps).
    defaults: (Option<String>, Option<String>),
}

fn failed(message: impl Into<String>, step: impl Into<String>) -> Reason {
    Reason { message: message.into(), step: Some(step.into()) }
}

impl Build {
    fn log(&self, message: String, step: Option<String>) {
        self.log_at("info", message, step)
    }

    fn log_at(&self, level: &str, message: String, step: Option<String>) {
        self.templates.log(&self.template_id, &self.build_id, level, message, step);
    }

    /// Runs the steps; returns what the template's sandboxes start from and run with.
    async fn steps(&mut self, req: &BuildRequest) -> Result<Resolved, Reason> {
        let from = req.from().map_err(|m| failed(m, "base"))?;
        let steps = req.steps().map_err(|(i, m)| failed(m, i.to_string()))?;
        let (mut layer, envs, inherited) = self.start_point(&from).await?;
        let origin = match &from {
            From::Base => "base".to_string(),
            From::Template(_) => layer.clone(),
            From::Image { reference, .. } => format!("{reference} ({layer})"),
        };
        self.log(format!("Building from {origin}"), Some("base".into()));
        let mut state = State { user: DEFAULT_USER.into(), workdir: None, envs };
        // Layers over the base are cached by its image: a new base image builds them anew.
        let mut key = match from {
            From::Base => format!("{layer}:{}", self.backend.base_image_id()),
            // A pulled image's template is named by its digest.
            From::Template(_) | From::Image { .. } => layer.clone(),
        };
        let mut force = req.force;
        for (i, step) in steps.iter().enumerate() {
            let n = (i + 1).to_string();
            force |= req.steps[i].force;
            self.log(format!("[{n}/{}] {}", steps.len(), describe(step)), Some(n.clone()));
            if let Step::Env(pairs) = step {
                state.envs.extend(pairs.iter().cloned());
                continue;
            }
            key = steps::cache_key(&key, &state.describe(), step);
            if let Some(snapshot) = self.cached(&key, force).await {
                self.log(format!("CACHED [{n}/{}]", steps.len()), Some(n.clone()));
                layer = snapshot;
                self.drop_sandbox().await;
            } else {
                self.run_step(step, &layer, &mut state, &n).await?;
                let sandbox = self.sandbox.as_ref().expect("the step ran in it").id.clone();
                let name = format!("{BUILD_SNAPSHOT_PREFIX}{key}");
                let snap = self
                    .backend
                    .snapshot(&sandbox, Some(name), Some(SnapshotMode::Filesystem))
                    .await
                    .map_err(|e| failed(format!("saving the step's layer: {e}"), n.clone()))?;
                self.cache(key.clone(), snap.id.clone()).await;
                layer = snap.id;
            }
            match step {
                Step::Workdir(dir) => state.workdir = Some(dir.clone()),
                Step::User(user) => state.user = user.clone(),
                _ => {}
            }
        }
        // As in the cloud, the last USER and WORKDIR are its sandboxes' defaults.
        let user = Some(state.user.clone()).filter(|u| u != DEFAULT_USER);
        let workdir = state.workdir.clone();
        // Its own start command, else that of the template it is built from (as in E2B): a
        // template on the code interpreter's has the interpreter running.
        let given = |c: &Option<String>| c.clone().filter(|s| !s.trim().is_empty());
        let (start_cmd, ready_cmd) = match given(&req.start_cmd) {
            Some(start) => (Some(start), given(&req.ready_cmd)),
            None => inherited,
        };
        let mut start_on_create = false;
        if let Some(start) = &start_cmd {
            let ready = ready_cmd.as_deref().unwrap_or(DEFAULT_READY_CMD);
            // Its envd, whose memory the template keeps, serves with the template's defaults.
            self.drop_sandbox().await;
            self.defaults = (user.clone(), workdir.clone());
            let (snapshot, with_memory) = self.finalize(start, ready, &layer, &state).await?;
            layer = snapshot;
            start_on_create = !with_memory;
        }
        Ok(Resolved { snapshot: layer, envs: state.envs, user, workdir, start_cmd, ready_cmd, start_on_create })
    }

    /// What the build starts from: the engine's template or snapshot, with the variables of the
    /// template it names and its start and ready commands.
    async fn start_point(&self, from: &From) -> Result<StartPoint, Reason> {
        match from {
            From::Base => Ok((sandbank_engine::BASE_TEMPLATE.to_string(), BTreeMap::new(), (None, None))),
            From::Template(reference) => {
                // `fromTemplate('code-interpreter-v1')`: the built-in is built first if it is not.
                super::builtin::ensure(&self.templates, &self.backend, reference)
                    .await
                    .map_err(|e| failed(e.to_string(), "base"))?;
                if let Some(r) = self.templates.resolve(reference) {
                    return Ok((r.snapshot, r.envs, (r.start_cmd, r.ready_cmd)));
                }
                match self.engine_knows(reference).await {
                    true => Ok((reference.clone(), BTreeMap::new(), (None, None))),
                    false => Err(failed(format!("template {reference:?} not found"), "base")),
                }
            }
            From::Image { reference, credentials } => {
                let (templates, template_id, build_id) =
                    (Arc::clone(&self.templates), self.template_id.clone(), self.build_id.clone());
                let progress =
                    move |line: String| templates.log(&template_id, &build_id, "info", line, Some("base".into()));
                let image = self
                    .backend
                    .pull_image(reference, credentials, &progress)
                    .await
                    .map_err(|e| failed(e.to_string(), "base"))?;
                Ok((image.template, image.env.into_iter().collect(), (None, None)))
            }
        }
    }

    /// Whether the engine can start a sandbox from `name` (a template or a snapshot).
    async fn engine_knows(&self, name: &str) -> bool {
        let (backend, name) = (Arc::clone(&self.backend), name.to_string());
        tokio::task::spawn_blocking(move || backend.template_exists(&name)).await.unwrap_or(false)
    }

    /// The layer cached for `key`, unless forced or gone.
    async fn cached(&self, key: &str, force: bool) -> Option<String> {
        if force {
            return None;
        }
        let snapshot = self.templates.cached(key)?;
        if self.engine_knows(&snapshot).await {
            return Some(snapshot);
        }
        self.templates.forget(key);
        None
    }

    /// Caches `snapshot` as the layer of `key`; the layer it replaces (a forced step's) is
    /// deleted unless a build starts sandboxes from it.
    async fn cache(&self, key: String, snapshot: String) {
        let Some(old) = self.templates.cache(key, snapshot) else { return };
        let backend = Arc::clone(&self.backend);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = backend.delete_snapshot(&old) {
                tracing::debug!(snapshot = %old, "a replaced build layer stays: {e}");
            }
        })
        .await;
    }

    /// The build sandbox, started from `layer` if there is none.
    async fn sandbox(&mut self, layer: &str, step: &str) -> Result<SandboxHandle, Reason> {
        if let Some(s) = &self.sandbox {
            return Ok(s.clone());
        }
        let limits = self.templates.with(|c| {
            let b = c.find(&self.template_id).and_then(|t| t.build(&self.build_id));
            let mut limits = self.backend.default_limits();
            if let Some(cpus) = b.and_then(|b| b.cpu_count) {
                limits.cpu_count = cpus;
            }
            if let Some(mb) = b.and_then(|b| b.memory_mb) {
                limits.memory_mb = mb;
            }
            limits
        });
        let spec = SandboxSpec {
            id: sandbank_engine::id::new_id(),
            template: layer.to_string(),
            env_vars: BTreeMap::new(),
            default_user: self.defaults.0.clone(),
            default_workdir: self.defaults.1.clone(),
            limits,
            allow_internet_access: None,
            egress: Default::default(),
        };
        let handle =
            self.backend.create(spec).await.map_err(|e| failed(format!("starting the build sandbox: {e}"), step))?;
        self.sandbox = Some(handle.clone());
        Ok(handle)
    }

    async fn drop_sandbox(&mut self) {
        if let Some(s) = self.sandbox.take() {
            if let Err(e) = self.backend.kill(&s.id).await {
                tracing::warn!(sandbox = %s.id, "killing a build sandbox: {e}");
            }
        }
    }

    async fn run_step(&mut self, step: &Step, layer: &str, state: &mut State, n: &str) -> Result<(), Reason> {
        match step {
            Step::Run { cmd, user } => {
                let user = user.as_deref().unwrap_or(&state.user).to_string();
                self.exec(layer, &user, cmd, state, n).await
            }
            Step::Copy { src, dest, owner, mode, hash } => {
                let never = || failed(format!("COPY {src}: its files (hash {hash}) were never uploaded"), n);
                let archive = self.templates.archive(hash).ok_or_else(never)?;
                let bytes = tokio::fs::read(&archive).await.map_err(|_| never())?;
                let sandbox = self.sandbox(layer, n).await?;
                let staged = format!("/tmp/.sandbank-build/{hash}.tar");
                envd::write_file(&sandbox.envd_socket, "root", &staged, bytes).await.map_err(|m| failed(m, n))?;
                let owner = owner.clone().unwrap_or_else(|| state.user.clone());
                let script = copy_script(&staged, src, dest, &owner, *mode, state);
                self.exec(layer, "root", &script, state, n).await
            }
            Step::Workdir(dir) => {
                let user = shell_quote(&state.user);
                let dir = shell_quote(dir);
                let script = format!("[ -d {dir} ] || {{ mkdir -p {dir} && chown {user}: {dir}; }}");
                self.exec(layer, "root", &script, state, n).await
            }
            // The user is made when the image has none of that name (as in the cloud).
            Step::User(user) => {
                let user = shell_quote(user);
                let script = format!("id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}");
                self.exec(layer, "root", &script, state, n).await
            }
            Step::Env(_) => Ok(()),
        }
    }

    /// Runs `cmd` in the build sandbox, its output in the build's log; fails unless it exits 0.
    async fn exec(&mut self, layer: &str, user: &str, cmd: &str, state: &State, n: &str) -> Result<(), Reason> {
        let sandbox = self.sandbox(layer, n).await?;
        let envs: HashMap<String, String> = state.envs.clone().into_iter().collect();
        let templates = Arc::clone(&self.templates);
        let (template_id, build_id) = (self.template_id.clone(), self.build_id.clone());
        let step = Some(n.to_string());
        let ran = envd::run(&sandbox.envd_socket, user, cmd, state.workdir.as_deref(), &envs, |line| {
            templates.log(&template_id, &build_id, "info", line.to_string(), step.clone())
        })
        .await
        .map_err(|m| failed(format!("failed to run command '{cmd}': {m}"), n))?;
        match ran {
            Ran::Exited(0) => Ok(()),
            Ran::Exited(code) => {
                Err(failed(format!("failed to run command '{cmd}': command failed: exit status {code}"), n))
            }
            Ran::Failed(why) => Err(failed(format!("failed to run command '{cmd}': command failed: {why}"), n)),
        }
    }

    /// Starts `start` in the background, waits for `ready` to pass, and snapshots the sandbox
    /// with its memory where that can be taken (else its files: its sandboxes then start
    /// without the process).
    async fn finalize(
        &mut self,
        start: &str,
        ready: &str,
        layer: &str,
        state: &State,
    ) -> Result<(String, bool), Reason> {
        self.log(format!("Starting: {start}"), Some("finalize".into()));
        self.exec(layer, &state.user.clone(), &in_background(start), state, "finalize").await?;
        self.log(format!("Waiting for the ready command: {ready}"), Some("finalize".into()));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.exec(layer, &state.user.clone(), ready, state, "finalize").await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(failed(
                    format!("the ready command {ready:?} did not pass within {READY_TIMEOUT:?}"),
                    "finalize",
                ));
            }
            tokio::time::sleep(READY_INTERVAL).await;
        }
        let sandbox = self.sandbox.as_ref().expect("the start command ran in it").id.clone();
        let name = format!("{BUILD_SNAPSHOT_PREFIX}{}", self.build_id);
        let snap = self
            .backend
            .snapshot(&sandbox, Some(name), None)
            .await
            .map_err(|e| failed(format!("saving the template: {e}"), "finalize"))?;
        let with_memory = snap.mode == SnapshotMode::Full;
        if !with_memory {
            self.log_at(
                "warn",
                "CRIU cannot take the sandbox's memory here: its sandboxes start from the files and run the start command when they start".into(),
                Some("finalize".into()),
            );
        }
        Ok((snap.id, with_memory))
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::Run { cmd, user: Some(u) } => format!("RUN {cmd} (as {u})"),
        Step::Run { cmd, user: None } => format!("RUN {cmd}"),
        Step::Copy { src, dest, .. } => format!("COPY {src} {dest}"),
        Step::Env(pairs) => {
            format!("ENV {}", pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
        }
        Step::Workdir(dir) => format!("WORKDIR {dir}"),
        Step::User(user) => format!("USER {user}"),
    }
}

/// The script (run as root) that puts a COPY's uploaded files in place: the archive holds the
/// paths the source matched, relative to the SDK's context directory; what is under the source's
/// part without wildcards goes to `dest` (a directory's contents into it, a file or link as it,
/// or into it when it is a directory or ends with `/`, as Docker's COPY does),
/// owned by `owner` and with `mode` when given. A relative `dest` is under the working directory,
/// else the user's home.
fn copy_script(staged: &str, src: &str, dest: &str, owner: &str, mode: Option<u32>, state: &State) -> String {
    let base = glob_free_prefix(src);
    let owner = if owner.contains(':') { owner.to_string() } else { format!("{owner}:{owner}") };
    let dest = match (dest.starts_with('/'), &state.workdir) {
        (true, _) => shell_quote(dest),
        (false, Some(w)) => shell_quote(&format!("{}/{dest}", w.trim_end_matches('/'))),
        (false, None) => {
            format!("\"$(getent passwd {} | cut -d: -f6)\"/{}", shell_quote(&state.user), shell_quote(dest))
        }
    };
    let chmod_dir = mode.map(|m| format!("chmod -R {m:o} \"$src\"; ")).unwrap_or_default();
    let chmod_file = mode.map(|m| format!("[ -L \"$src\" ] || chmod {m:o} \"$src\"; ")).unwrap_or_default();
    format!(
        "set -e\n\
         unpack={staged}.d; rm -rf \"$unpack\"; mkdir -p \"$unpack\"; tar -xf {staged} -C \"$unpack\"\n\
         src=\"$unpack\"/{base}; dest={dest}\n\
         if [ -d \"$src\" ] && [ ! -L \"$src\" ]; then\n  \
           chown -R {owner} \"$src\"; {chmod_dir}mkdir -p \"$dest\"; cp -a \"$src\"/. \"$dest\"/\n\
         else\n  \
           case $dest in */) dest=\"$dest$(basename \"$src\")\";; *) [ -d \"$dest\" ] && [ ! -L \"$dest\" ] && dest=\"$dest/$(basename \"$src\")\";; esac\n  \
           mkdir -p \"$(dirname \"$dest\")\"; chown -h {owner} \"$src\"; {chmod_file}mv -fT \"$src\" \"$dest\"\n\
         fi\n\
         rm -rf \"$unpack\" {staged}; rmdir --ignore-fail-on-non-empty \"$(dirname {staged})\"",
        staged = shell_quote(staged),
        base = shell_quote(&base),
        owner = shell_quote(&owner),
    )
}

/// The path components of `src` before the first with a wildcard (`folder/*.txt` → `folder`).
fn glob_free_prefix(src: &str) -> String {
    let parts: Vec<&str> = src
        .trim_start_matches("./")
        .split('/')
        .filter(|p| !p.is_empty())
        .take_while(|p| !p.contains(['*', '?', '[', '{']))
        .collect();
    match parts.is_empty() {
        true => ".".into(),
        false => parts.join("/"),
    }
}

/// `s` as one shell word.
/// `cmd` started in the background, detached from the command that starts it (its own session,
/// no terminal, output dropped): a template's start command.
pub fn in_background(cmd: &str) -> String {
    format!("setsid nohup bash -l -c {} >/dev/null 2>&1 < /dev/null &", shell_quote(cmd))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_of_a_source_before_its_wildcards() {
        assert_eq!(glob_free_prefix("folder/*"), "folder");
        assert_eq!(glob_free_prefix("folder/symlink.txt"), "folder/symlink.txt");
        assert_eq!(glob_free_prefix("./a/b/*.py"), "a/b");
        assert_eq!(glob_free_prefix("*.txt"), ".");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("/app"), "/app");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shell_quote(""), "''");
    }
}
