//! `sandbank templates build` against a real server, configured the local way (`SANDBANK_URL` /
//! `SANDBANK_API_KEY`): a Dockerfile and its context become a template whose sandboxes have what
//! its steps made; the log goes to stderr as it comes and the template's ID to stdout; a rebuild
//! is cached; a failing step exits 1 with the step and its log; bad input is named. Needs root
//! and the engine.

mod common;

use common::*;
use hyper::StatusCode;
use std::path::Path;
use std::process::Output;

/// Runs `sandbank <args>` in `dir` against `s`.
async fn cli(s: &Server, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = common::cli::command(args);
    cmd.current_dir(dir)
        .env("SANDBANK_URL", s.url())
        .env("SANDBANK_API_KEY", KEY)
        .env("SANDBANK_DATA_DIR", "/nonexistent/sandbank-cli-test");
    common::cli::run_logged(cmd, args).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// A context directory with a Dockerfile of `dockerfile` and a file to copy.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(dir.path().join("secret.log"), "not copied\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
    dir
}

const DOCKERFILE: &str = "FROM e2bdev/base\nENV GREETING=hi\nCOPY hello.txt /home/user/hello.txt\nRUN echo \"$GREETING from RUN\" > /home/user/built.txt && ls /home/user\n";

/// A file of a new sandbox of `template`.
async fn file_of(s: &Server, template: &str, path: &str) -> (StatusCode, String) {
    let sb = create(s.addr, &format!(r#"{{"templateID":"{template}"}}"#)).await;
    let r = common::host::envd(s.addr, &sb, "GET", &format!("/files?path={path}"), Vec::new()).await;
    let killed = call(s.addr, "DELETE", &format!("/sandboxes/{sb}"), None).await;
    assert_eq!(killed.status, StatusCode::NO_CONTENT);
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test]
async fn a_dockerfile_becomes_a_template_and_a_rebuild_is_cached() {
    let s = Server::start();
    let ctx = context(DOCKERFILE);
    let o = cli(&s, ctx.path(), &["templates", "build", "cli-app", "--tag", "v1", "-t", "stable"]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout);
    let err = text(&o.stderr);
    for line in [
        "INFO  Requesting build for template: cli-app with tags v1, stable",
        "INFO  Uploaded 'hello.txt'",
        "INFO  Starting building...",
        "INFO  [5/7] RUN echo \"$GREETING from RUN\" > /home/user/built.txt && ls /home/user",
        "INFO  hello.txt",
    ] {
        assert!(err.lines().any(|l| l.ends_with(line)), "{line:?} in:\n{err}");
    }
    // The template's ID alone on stdout, as the server lists it.
    let listed = call(s.addr, "GET", "/templates", None).await.json();
    assert_eq!(id, format!("{}\n", listed[0]["templateID"].as_str().unwrap()));
    let mut names: Vec<&str> = listed[0]["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["cli-app:stable", "cli-app:v1"]);
    assert_eq!(file_of(&s, "cli-app:v1", "/home/user/built.txt").await, (StatusCode::OK, "hi from RUN\n".into()));
    assert_eq!(
        file_of(&s, "cli-app:stable", "/home/user/hello.txt").await,
        (StatusCode::OK, "hello from the context\n".into())
    );

    // Again: every step is cached and nothing uploaded; --skip-cache runs them all.
    let again = cli(&s, ctx.path(), &["templates", "build", "cli-app:v2"]).await;
    assert!(again.status.success());
    let err = text(&again.stderr);
    assert!(err.contains("Skipping upload of 'hello.txt', already cached") && err.contains("CACHED [5/7]"), "{err}");
    let forced = cli(&s, ctx.path(), &["templates", "build", "cli-app:v3", "--skip-cache"]).await;
    assert!(forced.status.success());
    assert!(!text(&forced.stderr).contains("CACHED"), "{}", text(&forced.stderr));

    // Another Dockerfile and context, named by path.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("Build.dockerfile"),
        "FROM e2bdev/base\nWORKDIR /srv\nCOPY hello.txt ./copied.txt\n",
    )
    .unwrap();
    let dockerfile = other.path().join("Build.dockerfile");
    let args = [
        "templates",
        "build",
        "cli-other",
        "-f",
        dockerfile.to_str().unwrap(),
        "--context",
        ctx.path().to_str().unwrap(),
    ];
    assert!(cli(&s, other.path(), &args).await.status.success());
    assert_eq!(file_of(&s, "cli-other", "/srv/copied.txt").await, (StatusCode::OK, "hello from the context\n".into()));
    s.stop();
}

#[tokio::test]
async fn a_failing_step_or_bad_input_exits_1_saying_which() {
    let s = Server::start();
    let failing = context("FROM e2bdev/base\nRUN echo fail-marker && exit 4\nRUN echo never\n");
    let o = cli(&s, failing.path(), &["templates", "build", "cli-fails"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stdout), "");
    let err = text(&o.stderr);
    let tail: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("sandbank: the build")).collect();
    assert_eq!(
        tail.first().copied(),
        Some(
            "sandbank: the build of cli-fails failed at step 3 (RUN echo fail-marker && exit 4): failed to run command 'echo fail-marker && exit 4': command failed: exit status 4"
        ),
        "{err}"
    );
    assert_eq!(tail.get(1).copied(), Some("--- the log of step 3 ---"), "{err}");
    assert!(tail[2..].iter().any(|l| l.ends_with("INFO  fail-marker")), "{err}");

    let bad = |o: &Output| {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
        text(&o.stderr)
    };
    let empty = tempfile::tempdir().unwrap();
    let err = bad(&cli(&s, empty.path(), &["templates", "build", "x"]).await);
    let expected = format!("sandbank: cannot read the Dockerfile {}: ", empty.path().join("Dockerfile").display());
    assert!(err.starts_with(&expected), "{err}");
    let missing = context("FROM e2bdev/base\nCOPY nope.txt /x\n");
    let err = bad(&cli(&s, missing.path(), &["templates", "build", "cli-missing"]).await);
    assert!(
        err.ends_with(&format!("sandbank: No files found in {}\n", missing.path().join("nope.txt").display())),
        "{err}"
    );
    let r = call(s.addr, "GET", "/templates/aliases/cli-missing", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "files are looked for before the template is made");
    let err = bad(&cli(&s, failing.path(), &["templates", "build", "Bad Name"]).await);
    assert!(
        err.ends_with(
            "sandbank: the build of Bad Name failed: 400: Invalid template name \"Bad Name\": use letters, digits, '-' and '_'\n"
        ),
        "{err}"
    );
    let multi = context("FROM a\nFROM b\n");
    let err = bad(&cli(&s, multi.path(), &["templates", "build", "x"]).await);
    let dockerfile = multi.path().join("Dockerfile");
    assert_eq!(err, format!("sandbank: {}: Multi-stage Dockerfiles are not supported\n", dockerfile.display()));
    let single = context("FROM e2bdev/base\n");
    let args = ["templates", "build", "x", "--context", "nowhere", "-f", "Dockerfile"];
    let err = bad(&cli(&s, single.path(), &args).await);
    assert_eq!(err, format!("sandbank: the context {} is not a directory\n", single.path().join("nowhere").display()));
    s.stop();
}
