//! A template as E2B's builder sends it (the body of `POST /v2/templates/{id}/builds/{build}`):
//! where it starts, its steps, its start and ready commands. The JS builder makes it (as JSON);
//! the CLI makes it from a Dockerfile ([`TemplateSpec::from_dockerfile`]).

use super::dockerfile::{Dockerfile, Instruction};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The image `fromBaseImage()` names, and where a template that names nothing starts.
pub const DEFAULT_BASE_IMAGE: &str = "e2bdev/base";

/// One step. Field order and the absent keys are the JS builder's, so that the JSON is what
/// e2b sends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// `RUN`, `COPY`, `ENV`, `WORKDIR` or `USER`.
    #[serde(rename = "type")]
    pub kind: String,
    pub args: Vec<String>,
    /// Build this step again even if cached (`skipCache()` came before it).
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_upload: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_symlinks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip: Option<bool>,
    /// COPY only: the hash of the files it copies, computed when the build starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_hash: Option<String>,
}

impl Step {
    fn new(kind: &str, args: Vec<String>) -> Step {
        Step { kind: kind.into(), args, ..Default::default() }
    }

    /// A COPY step's source (`args[0]`).
    pub fn copy_source(&self) -> Option<&str> {
        (self.kind == "COPY").then(|| self.args.first().map(String::as_str)).flatten()
    }

    /// How a person would write it (`RUN make`, `COPY app /app`), for messages.
    pub fn describe(&self) -> String {
        match self.kind.as_str() {
            "COPY" => format!("COPY {}", self.args.iter().take(2).cloned().collect::<Vec<_>>().join(" ")),
            "ENV" => format!("ENV {}", self.args.chunks(2).map(|p| p.join("=")).collect::<Vec<_>>().join(" ")),
            "RUN" => match self.args.get(1) {
                Some(user) => format!("RUN {} (as {user})", self.args[0]),
                None => format!("RUN {}", self.args.first().map(String::as_str).unwrap_or("")),
            },
            kind => format!("{kind} {}", self.args.join(" ")),
        }
    }
}

/// The whole template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_cmd: Option<String>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Build every step again (`skipCache` at the start, or the build option).
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_template: Option<String>,
    /// Registry credentials, as the builder gives them (`{type: "registry"|"aws"|"gcp", …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_image_registry: Option<serde_json::Value>,
}

impl TemplateSpec {
    /// The template JSON the JS builder serialized; `Err` says what is wrong with it.
    pub fn from_json(json: &str) -> Result<TemplateSpec> {
        serde_json::from_str(json).map_err(|e| Error::Template(format!("Invalid template: {e}")))
    }

    /// What `Template().fromDockerfile(text)` makes: the Dockerfile's base image, its
    /// instructions as steps, its CMD/ENTRYPOINT as the start command.
    pub fn from_dockerfile(dockerfile: &Dockerfile) -> TemplateSpec {
        let mut spec = TemplateSpec { from_image: Some(dockerfile.base_image.clone()), ..Default::default() };
        for i in &dockerfile.instructions {
            match i {
                Instruction::Run(cmd) => spec.steps.push(Step::new("RUN", vec![cmd.clone()])),
                Instruction::Copy { src, dest, user } => spec.steps.push(Step::new(
                    "COPY",
                    vec![src.clone(), dest.clone(), user.clone().unwrap_or_default(), String::new()],
                )),
                Instruction::Env(pairs) => {
                    spec.steps.push(Step::new("ENV", pairs.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()))
                }
                Instruction::Workdir(dir) => spec.steps.push(Step::new("WORKDIR", vec![dir.clone()])),
                Instruction::User(user) => spec.steps.push(Step::new("USER", vec![user.clone()])),
                Instruction::Start { cmd, ready } => {
                    spec.start_cmd = Some(cmd.clone());
                    spec.ready_cmd = Some(ready.clone());
                }
            }
        }
        spec
    }

    /// The step a build's `reason.step` names: `base` is the `from*` call, `finalize` the start
    /// command, a number the step (1-based).
    pub fn describe_step(&self, step: &str) -> String {
        match step {
            "base" => match (&self.from_template, &self.from_image) {
                (Some(t), _) => format!("FROM template {t}"),
                (None, Some(i)) => format!("FROM {i}"),
                (None, None) => format!("FROM {DEFAULT_BASE_IMAGE}"),
            },
            "finalize" => format!("start command {}", self.start_cmd.as_deref().unwrap_or("(none)")),
            n => match n.parse::<usize>().ok().and_then(|i| i.checked_sub(1)).and_then(|i| self.steps.get(i)) {
                Some(s) => s.describe(),
                None => format!("step {n}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_js_builder_does() {
        // The JSON of `Template().skipCache().fromBaseImage().copy('a', 'b').runCmd('x', {user: 'root'})`,
        // as e2b 2.51 serializes it, goes through unchanged.
        let js = r#"{"steps":[{"type":"COPY","args":["a","b","",""],"force":true,"forceUpload":true},{"type":"RUN","args":["x","root"],"force":true}],"force":true,"fromImage":"e2bdev/base"}"#;
        let spec = TemplateSpec::from_json(js).unwrap();
        assert_eq!(serde_json::to_string(&spec).unwrap(), js);
        assert_eq!(spec.steps[0].copy_source(), Some("a"));
        assert_eq!(spec.steps[1].copy_source(), None);
        let e = TemplateSpec::from_json(r#"{"steps":[{"args":[]}]}"#).unwrap_err();
        assert_eq!(e.kind(), "TemplateError");
        assert!(e.to_string().starts_with("Invalid template: missing field `type`"), "{e}");
    }

    #[test]
    fn steps_are_described_by_the_names_builds_give_them() {
        let spec = TemplateSpec {
            from_image: Some("e2bdev/base".into()),
            start_cmd: Some("serve".into()),
            steps: vec![
                Step::new("RUN", vec!["make".into(), "root".into()]),
                Step::new("ENV", vec!["A".into(), "1".into(), "B".into(), "2".into()]),
                Step::new("COPY", vec!["app".into(), "/app".into(), "".into(), "".into()]),
            ],
            ..Default::default()
        };
        assert_eq!(spec.describe_step("1"), "RUN make (as root)");
        assert_eq!(spec.describe_step("2"), "ENV A=1 B=2");
        assert_eq!(spec.describe_step("3"), "COPY app /app");
        assert_eq!(spec.describe_step("4"), "step 4");
        assert_eq!(spec.describe_step("base"), "FROM e2bdev/base");
        assert_eq!(spec.describe_step("finalize"), "start command serve");
    }
}
