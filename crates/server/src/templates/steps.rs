//! A template build as E2B's builder sends it (`POST /v2/templates/{id}/builds/{build}`): where
//! it starts from, and its steps, checked and typed; and the key each step's result is cached by.

use sandbank_engine::oci::Credentials;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The build request's body.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BuildRequest {
    pub from_image: Option<String>,
    pub from_template: Option<String>,
    pub from_image_registry: Option<serde_json::Value>,
    pub steps: Vec<RawStep>,
    /// Build every step again, cached or not.
    pub force: bool,
    pub start_cmd: Option<String>,
    pub ready_cmd: Option<String>,
}

/// One step as sent (unknown keys, such as `forceUpload`, are ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RawStep {
    #[serde(rename = "type")]
    pub kind: String,
    pub args: Vec<String>,
    pub force: bool,
    pub files_hash: Option<String>,
}

/// Where a build starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    /// The local `base` (the cloud's `e2bdev/base`, and what a build names nothing else starts from).
    Base,
    /// Another template of this server, by name (with its tag) or ID.
    Template(String),
    /// An image of a registry, pulled with these credentials.
    Image { reference: String, credentials: Credentials },
}

/// The image E2B's `fromBaseImage()` names: the cloud's base, which `base` is here.
pub const CLOUD_BASE_IMAGE: &str = "e2bdev/base";

/// A step, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `RUN cmd` as `user` (the build's current user when `None`).
    Run {
        cmd: String,
        user: Option<String>,
    },
    /// `COPY src dest`: the uploaded archive `hash` of the files `src` matched; owned by `owner`
    /// (`user` or `user:group`), with `mode` when given.
    Copy {
        src: String,
        dest: String,
        owner: Option<String>,
        mode: Option<u32>,
        hash: String,
    },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
}

impl BuildRequest {
    /// Where the build starts; `Err` names what is not supported.
    pub fn from(&self) -> Result<From, String> {
        match (&self.from_template, &self.from_image) {
            (Some(t), _) if !t.trim().is_empty() => Ok(From::Template(t.trim().to_string())),
            (_, None) => Ok(From::Base),
            (_, Some(image)) if image == CLOUD_BASE_IMAGE || image.starts_with("e2bdev/base:") => Ok(From::Base),
            (_, Some(image)) if image.trim().is_empty() => Err("fromImage is empty: name an image".into()),
            (_, Some(image)) => Ok(From::Image {
                reference: image.trim().to_string(),
                credentials: credentials(self.from_image_registry.as_ref())?,
            }),
        }
    }
    /// The steps, checked; `Err` names the step (1-based, as E2B counts) and what is wrong.
    pub fn steps(&self) -> Result<Vec<Step>, (usize, String)> {
        self.steps.iter().enumerate().map(|(i, s)| parse(s).map_err(|why| (i + 1, why))).collect()
    }
}

/// The credentials of `fromImageRegistry` (`{"type": "registry", "username", "password"}`, or a
/// GCP service account's key, which Google's registries take as the password of `_json_key`).
fn credentials(registry: Option<&serde_json::Value>) -> Result<Credentials, String> {
    let Some(registry) = registry.filter(|r| !r.is_null()) else { return Ok(Credentials::Anonymous) };
    let field = |name: &str| registry.get(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    match registry.get("type").and_then(|t| t.as_str()) {
        Some("registry") => match (field("username"), field("password")) {
            (Some(u), Some(p)) => Ok(Credentials::Basic { username: u.into(), password: p.into() }),
            _ => Err("fromImageRegistry: both username and password are required".into()),
        },
        Some("gcp") => match field("serviceAccountJson") {
            Some(key) => Ok(Credentials::Basic { username: "_json_key".into(), password: key.into() }),
            None => Err("fromImageRegistry: type \"gcp\" needs serviceAccountJson".into()),
        },
        Some("aws") => Err("fromImageRegistry: AWS (ECR) credentials are not supported by this server; give \
                            the registry's username and password instead (`AWS` and the output of \
                            `aws ecr get-login-password`)"
            .into()),
        other => Err(format!("fromImageRegistry: unknown type {other:?} (registry, gcp, aws)")),
    }
}

fn parse(s: &RawStep) -> Result<Step, String> {
    let args = &s.args;
    let arg = |i: usize| args.get(i).map(String::as_str).filter(|a| !a.is_empty());
    let need = |n: usize| match args.len() >= n {
        true => Ok(()),
        false => Err(format!("{} needs {n} argument(s), got {}: {args:?}", s.kind, args.len())),
    };
    match s.kind.as_str() {
        "RUN" => {
            need(1)?;
            let cmd = arg(0).ok_or("RUN with an empty command")?.to_string();
            Ok(Step::Run { cmd, user: arg(1).map(str::to_string) })
        }
        "COPY" => {
            need(2)?;
            let hash = s.files_hash.clone().unwrap_or_default();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("COPY {:?}: invalid filesHash {hash:?} (64 hex digits)", args[0]));
            }
            let mode = match arg(3) {
                None => None,
                Some(m) => Some(
                    u32::from_str_radix(m, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("COPY {:?}: invalid mode {m:?} (octal, e.g. 0755)", args[0]))?,
                ),
            };
            Ok(Step::Copy {
                src: arg(0).ok_or("COPY with an empty source")?.to_string(),
                dest: arg(1).ok_or("COPY with an empty destination")?.to_string(),
                owner: arg(2).map(str::to_string),
                mode,
                hash: hash.to_ascii_lowercase(),
            })
        }
        "ENV" => {
            if !args.len().is_multiple_of(2) {
                return Err(format!("ENV needs name/value pairs, got {} argument(s): {args:?}", args.len()));
            }
            let pairs: Vec<(String, String)> = args.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            if let Some((bad, _)) = pairs.iter().find(|(k, _)| !valid_env_name(k)) {
                return Err(format!("ENV: invalid variable name {bad:?}"));
            }
            Ok(Step::Env(pairs))
        }
        "WORKDIR" => {
            need(1)?;
            Ok(Step::Workdir(arg(0).ok_or("WORKDIR with an empty path")?.to_string()))
        }
        "USER" => {
            need(1)?;
            Ok(Step::User(arg(0).ok_or("USER with an empty name")?.to_string()))
        }
        other => Err(format!("unknown step type {other:?} (RUN, COPY, ENV, WORKDIR, USER)")),
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The cache key of the files after `step`, done over the files of key `parent` in `state` (the
/// user, working directory and variables the build had then): a build that repeats all that
/// finds the layer made the first time.
pub fn cache_key(parent: &str, state: &str, step: &Step) -> String {
    let mut h = Sha256::new();
    h.update(format!("{parent}\n{state}\n{step:?}"));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str, args: &[&str]) -> RawStep {
        RawStep { kind: kind.into(), args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn steps_are_typed_and_bad_ones_named() {
        let hash = "a".repeat(64);
        let mut copy = raw("COPY", &["folder/*", "folder", "", "0755"]);
        copy.files_hash = Some(hash.clone());
        let req = BuildRequest {
            steps: vec![
                raw("RUN", &["apt-get update", "root"]),
                copy,
                raw("ENV", &["A", "1", "B", "two"]),
                raw("WORKDIR", &["/app"]),
                raw("USER", &["user"]),
            ],
            ..Default::default()
        };
        assert_eq!(
            req.steps().unwrap(),
            vec![
                Step::Run { cmd: "apt-get update".into(), user: Some("root".into()) },
                Step::Copy { src: "folder/*".into(), dest: "folder".into(), owner: None, mode: Some(0o755), hash },
                Step::Env(vec![("A".into(), "1".into()), ("B".into(), "two".into())]),
                Step::Workdir("/app".into()),
                Step::User("user".into()),
            ]
        );
        let bad = |s: RawStep| BuildRequest { steps: vec![raw("RUN", &["true"]), s], ..Default::default() }.steps();
        assert_eq!(
            bad(raw("FROB", &[])).unwrap_err(),
            (2, "unknown step type \"FROB\" (RUN, COPY, ENV, WORKDIR, USER)".into())
        );
        assert!(bad(raw("ENV", &["A"])).unwrap_err().1.contains("pairs"));
        assert!(bad(raw("ENV", &["1A", "x"])).unwrap_err().1.contains("\"1A\""));
        assert!(bad(raw("COPY", &["a", "b"])).unwrap_err().1.contains("filesHash"));
        assert!(bad(raw("RUN", &[])).unwrap_err().1.contains("RUN needs 1"));
    }

    #[test]
    fn where_a_build_starts() {
        let from = |image: Option<&str>, template: Option<&str>| {
            BuildRequest {
                from_image: image.map(Into::into),
                from_template: template.map(Into::into),
                ..Default::default()
            }
            .from()
        };
        assert_eq!(from(None, None).unwrap(), From::Base);
        assert_eq!(from(Some("e2bdev/base"), None).unwrap(), From::Base);
        assert_eq!(from(None, Some("mine:v1")).unwrap(), From::Template("mine:v1".into()));
        let anonymous = From::Image { reference: "ubuntu:22.04".into(), credentials: Credentials::Anonymous };
        assert_eq!(from(Some("ubuntu:22.04"), None).unwrap(), anonymous);
        assert!(from(Some(" "), None).unwrap_err().contains("empty"));
        let with = |registry: serde_json::Value| {
            BuildRequest { from_image: Some("r/i".into()), from_image_registry: Some(registry), ..Default::default() }
                .from()
        };
        let basic = with(serde_json::json!({"type": "registry", "username": "u", "password": "p"})).unwrap();
        let expected = Credentials::Basic { username: "u".into(), password: "p".into() };
        assert_eq!(basic, From::Image { reference: "r/i".into(), credentials: expected });
        assert!(!format!("{basic:?}").contains("\"p\""), "no password in Debug: {basic:?}");
        assert!(with(serde_json::json!({"type": "registry", "username": "u"})).unwrap_err().contains("password"));
        assert!(with(serde_json::json!({"type": "aws"})).unwrap_err().contains("ECR"));
        assert!(with(serde_json::json!({"type": "quay"})).unwrap_err().contains("\"quay\""));
    }

    #[test]
    fn cache_keys_follow_the_parent_the_state_and_the_step() {
        let run = Step::Run { cmd: "true".into(), user: None };
        let k = cache_key("base", "user", &run);
        assert_eq!(k, cache_key("base", "user", &run));
        assert_ne!(k, cache_key("other", "user", &run));
        assert_ne!(k, cache_key("base", "root", &run));
        assert_ne!(k, cache_key("base", "user", &Step::Run { cmd: "false".into(), user: None }));
    }
}
