//! `fromDockerfile`: a Dockerfile as template steps, the way e2b's builder reads one. A small
//! parser of the instructions it supports, rather than a crate: the one maintained Dockerfile
//! parser on crates.io (`dockerfile-parser`) pulls in pest, regex and an old snafu for what is
//! a line-based format here.
//!
//! As in e2b: the steps start with `USER root` and `WORKDIR /` and end with `USER user` and
//! `WORKDIR /home/user` when the Dockerfile sets none; `RUN` is its words joined by single
//! spaces (continuation lines joined), so both SDKs send the same step and share its cache;
//! `COPY`/`ADD` make one step per source (`--chown` the owner); `ENV`/`ARG` one `ENV` step;
//! the last `CMD`/`ENTRYPOINT` is the start command (an exec-form array joined by spaces), with
//! `sleep 20` as its ready command; `EXPOSE` and `VOLUME` are ignored, anything else is a
//! warning. Where e2b's parser mangles input (quoted `ENV` values, exec-form `COPY`), this one
//! follows Docker, and what neither can do (`COPY --from`, several `FROM`s) is an error.

use crate::error::{Error, Result};
use std::path::Path;

/// The ready command of a Dockerfile's start command (e2b's `waitForTimeout(20_000)`).
pub const DOCKERFILE_READY_CMD: &str = "sleep 20";

/// What a Dockerfile makes of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `FROM` image.
    pub base_image: String,
    /// The builder calls it stands for, in order.
    pub instructions: Vec<Instruction>,
    /// What was ignored and why (`Unsupported instruction: LABEL`).
    pub warnings: Vec<String>,
}

/// One builder call (`runCmd`, `copy`, `setEnvs`, `setWorkdir`, `setUser`, `setStartCmd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    Run(String),
    Copy { src: String, dest: String, user: Option<String> },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Start { cmd: String, ready: String },
}

/// `contentOrPath` as e2b takes it: the file's text when it names a file, else the text itself.
pub fn read(content_or_path: &str) -> Result<Dockerfile> {
    let path = Path::new(content_or_path);
    if !content_or_path.contains('\n') && path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Other(format!("Cannot read the Dockerfile {content_or_path}: {e}")))?;
        return parse(&text);
    }
    parse(content_or_path)
}

/// Parses a Dockerfile's text.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let lines = logical_lines(text);
    let froms: Vec<&(usize, String, String)> = lines.iter().filter(|(_, k, _)| k == "FROM").collect();
    let base_image = match froms.as_slice() {
        [] => return Err(Error::Other("Dockerfile must contain a FROM instruction".into())),
        [(n, _, rest)] => rest
            .split_whitespace()
            .find(|w| !w.starts_with("--"))
            .ok_or_else(|| Error::Other(format!("Dockerfile line {n}: FROM needs an image")))?
            .to_string(),
        _ => return Err(Error::Other("Multi-stage Dockerfiles are not supported".into())),
    };
    let mut out = Dockerfile {
        base_image,
        instructions: vec![Instruction::User("root".into()), Instruction::Workdir("/".into())],
        warnings: Vec::new(),
    };
    let (mut user_set, mut workdir_set) = (false, false);
    for (n, keyword, rest) in &lines {
        let bad = |why: String| Error::Other(format!("Dockerfile line {n}: {why}"));
        let first_word = || {
            rest.split_whitespace().next().map(str::to_string).ok_or_else(|| bad(format!("{keyword} needs a value")))
        };
        match keyword.as_str() {
            "FROM" | "EXPOSE" | "VOLUME" => {}
            "RUN" => {
                let cmd = command(rest);
                if cmd.is_empty() {
                    return Err(bad("RUN needs a command".into()));
                }
                out.instructions.push(Instruction::Run(cmd));
            }
            "CMD" | "ENTRYPOINT" => {
                let cmd = command(rest);
                if cmd.is_empty() {
                    return Err(bad(format!("{keyword} needs a command")));
                }
                out.instructions.push(Instruction::Start { cmd, ready: DOCKERFILE_READY_CMD.into() });
            }
            "COPY" | "ADD" => copy(keyword, rest, &mut out).map_err(bad)?,
            "ENV" | "ARG" => {
                let pairs = env_pairs(keyword, rest).map_err(bad)?;
                out.instructions.push(Instruction::Env(pairs));
            }
            "WORKDIR" => {
                out.instructions.push(Instruction::Workdir(first_word()?));
                workdir_set = true;
            }
            "USER" => {
                out.instructions.push(Instruction::User(first_word()?));
                user_set = true;
            }
            other => out.warnings.push(format!("Unsupported instruction: {other}")),
        }
    }
    if !user_set {
        out.instructions.push(Instruction::User("user".into()));
    }
    if !workdir_set {
        out.instructions.push(Instruction::Workdir("/home/user".into()));
    }
    Ok(out)
}

/// `(line number, KEYWORD, arguments)` of each instruction: comments and blank lines dropped,
/// continuation lines (ending in `\`) joined.
fn logical_lines(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        match line.trim_end().strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                current = Some((start, acc));
            }
            None => {
                acc.push_str(line);
                out.push(split_keyword(start, &acc));
            }
        }
    }
    if let Some((start, acc)) = current {
        out.push(split_keyword(start, &acc));
    }
    out
}

fn split_keyword(n: usize, line: &str) -> (usize, String, String) {
    let line = line.trim();
    let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    (n, keyword.to_ascii_uppercase(), rest.trim().to_string())
}

/// A JSON array of strings (the exec form), if `s` is one.
fn exec_form(s: &str) -> Option<Vec<String>> {
    s.starts_with('[').then(|| serde_json::from_str::<Vec<String>>(s).ok()).flatten()
}

/// RUN, CMD and ENTRYPOINT: the exec form's words, else the shell form's, joined by spaces.
fn command(rest: &str) -> String {
    match exec_form(rest) {
        Some(words) => words.join(" "),
        None => rest.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// COPY/ADD: one copy per source; `--chown` is the owner.
fn copy(keyword: &str, rest: &str, out: &mut Dockerfile) -> Result<(), String> {
    let mut user = None;
    let mut operands = rest.trim();
    while let Some(flag) = operands.strip_prefix("--") {
        let (flag, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
        match name {
            "chown" => user = Some(value.to_string()),
            "from" => return Err(format!("{keyword} --from={value} is not supported (multi-stage builds)")),
            _ => out.warnings.push(format!("{keyword} --{name} is ignored")),
        }
        operands = after.trim_start();
    }
    let words = exec_form(operands).unwrap_or_else(|| operands.split_whitespace().map(str::to_string).collect());
    let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(format!("{keyword} needs a source and a destination, got {operands:?}"));
    };
    for src in sources {
        out.instructions.push(Instruction::Copy { src: src.clone(), dest: dest.clone(), user: user.clone() });
    }
    Ok(())
}

/// ENV (`K=V …` or `K V…`) and ARG (`K[=V] …`) as pairs, quotes removed as Docker does.
fn env_pairs(keyword: &str, rest: &str) -> Result<Vec<(String, String)>, String> {
    let words = shell_words(rest).ok_or_else(|| format!("{keyword} has an unterminated quote: {rest}"))?;
    let Some(first) = words.first() else { return Err(format!("{keyword} needs a name")) };
    if keyword == "ENV" && !first.contains('=') {
        // `ENV NAME value with spaces`: the rest of the line is the value.
        if words.len() < 2 {
            return Err(format!("ENV {first} needs a value (ENV NAME=VALUE or ENV NAME VALUE)"));
        }
        return Ok(vec![(first.clone(), words[1..].join(" "))]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{keyword}: a variable without a name: {w:?}")),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None if keyword == "ARG" => Ok((w.clone(), String::new())),
            None => Err(format!("ENV: expected NAME=VALUE, got {w:?}")),
        })
        .collect()
}

/// Words split at unquoted whitespace, with quotes and backslash escapes removed; `None` for
/// an unterminated quote.
fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next().unwrap_or('\\')),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn instructions_become_builder_calls_as_in_e2b() {
        let d = parse(
            "# syntax=docker/dockerfile:1\nFROM node:24 AS app\nWORKDIR /app\nCOPY package.json .\nrun npm install \\\n  && npm   test\nENTRYPOINT [\"sleep\", \"20\"]\nEXPOSE 80\n",
        )
        .unwrap();
        assert_eq!(d.base_image, "node:24");
        assert_eq!(
            d.instructions,
            vec![
                User(s("root")),
                Workdir(s("/")),
                Workdir(s("/app")),
                Copy { src: s("package.json"), dest: s("."), user: None },
                Run(s("npm install && npm test")),
                Start { cmd: s("sleep 20"), ready: s("sleep 20") },
                User(s("user")),
            ]
        );
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn copy_env_arg_user_and_warnings() {
        let d = parse(
            "FROM --platform=linux/amd64 e2bdev/base\nUSER app\nCOPY --chown=user:user a.txt b.txt /dest/\nADD [\"with space.txt\", \"/x\"]\nENV A=1 B=\"two words\" C=x\\ y\nENV D some value\nARG E\nARG F=3\nLABEL a=b\nCMD python -m  http.server\n",
        )
        .unwrap();
        assert_eq!(d.base_image, "e2bdev/base");
        assert_eq!(
            d.instructions,
            vec![
                User(s("root")),
                Workdir(s("/")),
                User(s("app")),
                Copy { src: s("a.txt"), dest: s("/dest/"), user: Some(s("user:user")) },
                Copy { src: s("b.txt"), dest: s("/dest/"), user: Some(s("user:user")) },
                Copy { src: s("with space.txt"), dest: s("/x"), user: None },
                Env(vec![(s("A"), s("1")), (s("B"), s("two words")), (s("C"), s("x y"))]),
                Env(vec![(s("D"), s("some value"))]),
                Env(vec![(s("E"), s(""))]),
                Env(vec![(s("F"), s("3"))]),
                Start { cmd: s("python -m http.server"), ready: s("sleep 20") },
                Workdir(s("/home/user")),
            ]
        );
        assert_eq!(d.warnings, vec![s("Unsupported instruction: LABEL")]);
    }

    #[test]
    fn bad_dockerfiles_say_what_and_where() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(err("RUN true\n"), "Dockerfile must contain a FROM instruction");
        assert_eq!(err("FROM a\nFROM b\n"), "Multi-stage Dockerfiles are not supported");
        assert_eq!(
            err("FROM a\n\nCOPY only\n"),
            "Dockerfile line 3: COPY needs a source and a destination, got \"only\""
        );
        assert_eq!(
            err("FROM a\nCOPY --from=build /x /y\n"),
            "Dockerfile line 2: COPY --from=build is not supported (multi-stage builds)"
        );
        assert_eq!(err("FROM a\nENV A\n"), "Dockerfile line 2: ENV A needs a value (ENV NAME=VALUE or ENV NAME VALUE)");
        assert_eq!(err("FROM a\nENV A=\"x\n"), "Dockerfile line 2: ENV has an unterminated quote: A=\"x");
        assert_eq!(err("FROM a\nRUN\n"), "Dockerfile line 2: RUN needs a command");
        assert_eq!(err("FROM a\nUSER\n"), "Dockerfile line 2: USER needs a value");
    }

    #[test]
    fn a_path_is_read_and_text_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, "FROM e2bdev/base\nRUN echo hi\n").unwrap();
        let d = read(path.to_str().unwrap()).unwrap();
        assert_eq!(d.instructions[2], Run(s("echo hi")));
        assert_eq!(read("FROM x").unwrap().base_image, "x");
    }
}
