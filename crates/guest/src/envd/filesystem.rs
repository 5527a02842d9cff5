//! The `filesystem.Filesystem` service: Stat, MakeDir, Move, ListDir, Remove (WatchDir is in
//! [`super::watch`]).

use super::fsutil::{create_dirs, entry_info, resolve, rpc_error};
use super::users::{self, Names, User};
use super::Shared;
use super::{connect, creds};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use sandbank_protocol::connect::{Code, ConnectError};
use sandbank_protocol::filesystem::*;
use sandbank_protocol::process::Empty;
use std::path::{Path, PathBuf};

/// A request path, resolved for `user` as envd does (relative to the home, `~`).
pub(super) fn path_arg(path: &str, user: &User) -> Result<PathBuf, ConnectError> {
    resolve(path, &user.home).map_err(|m| ConnectError::new(Code::InvalidArgument, m))
}

/// Runs blocking file-system work off the async threads, with `user`'s credentials.
async fn blocking<T: Send + 'static>(
    user: User,
    f: impl FnOnce() -> Result<T, ConnectError> + Send + 'static,
) -> Result<T, ConnectError> {
    tokio::task::spawn_blocking(move || {
        creds::as_user(&user, f).unwrap_or_else(|e| Err(ConnectError::new(Code::Internal, e.to_string())))
    })
    .await
    .map_err(|e| ConnectError::new(Code::Internal, format!("file-system task failed: {e}")))?
}

pub(super) fn user_of(envd: &Shared, headers: &HeaderMap) -> Result<User, ConnectError> {
    users::resolve(headers, None, &envd.opts.default_user)
}

pub async fn stat(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let user = user_of(&envd, &headers);
    connect::unary(&headers, body, |req: PathRequest| async move {
        let user = user?;
        let path = path_arg(&req.path, &user)?;
        blocking(user, move || {
            let entry = entry_info(&path, &Names::load()).map_err(|e| rpc_error("stat", &path, &e))?;
            Ok(EntryResponse { entry: Some(entry) })
        })
        .await
    })
    .await
}

pub async fn make_dir(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let user = user_of(&envd, &headers);
    connect::unary(&headers, body, |req: PathRequest| async move {
        let user = user?;
        let path = path_arg(&req.path, &user)?;
        blocking(user.clone(), move || {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    return Err(ConnectError::new(
                        Code::AlreadyExists,
                        format!("directory {:?} already exists", req.path),
                    ))
                }
                Ok(_) => {
                    return Err(ConnectError::new(
                        Code::InvalidArgument,
                        format!("path {:?} already exists but is not a directory", req.path),
                    ))
                }
                Err(_) => {}
            }
            let created = create_dirs(&path, &user).map_err(|e| rpc_error("mkdir", &path, &e))?;
            if !created {
                return Err(ConnectError::new(Code::AlreadyExists, format!("directory {:?} already exists", req.path)));
            }
            let entry = entry_info(&path, &Names::load()).map_err(|e| rpc_error("stat", &path, &e))?;
            Ok(EntryResponse { entry: Some(entry) })
        })
        .await
    })
    .await
}

pub async fn move_entry(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let user = user_of(&envd, &headers);
    connect::unary(&headers, body, |req: MoveRequest| async move {
        let user = user?;
        let source = path_arg(&req.source, &user)?;
        let destination = path_arg(&req.destination, &user)?;
        blocking(user.clone(), move || {
            std::fs::symlink_metadata(&source).map_err(|e| rpc_error("move", &source, &e))?;
            if let Some(parent) = destination.parent() {
                create_dirs(parent, &user).map_err(|e| rpc_error("mkdir", parent, &e))?;
            }
            std::fs::rename(&source, &destination).map_err(|e| {
                let mut err = rpc_error("move", &source, &e);
                err.message = format!("{} (to {:?})", err.message, req.destination);
                err
            })?;
            let entry = entry_info(&destination, &Names::load()).map_err(|e| rpc_error("stat", &destination, &e))?;
            Ok(EntryResponse { entry: Some(entry) })
        })
        .await
    })
    .await
}

fn walk(dir: &Path, depth: u32, names: &Names, out: &mut Vec<EntryInfo>) -> std::io::Result<()> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let Ok(entry) = entry_info(&child, names) else { continue }; // vanished meanwhile
        let recurse = depth > 1 && entry.r#type == FileType::Directory as i32 && entry.symlink_target.is_none();
        out.push(entry);
        if recurse {
            // An unreadable subdirectory is listed but not entered.
            let _ = walk(&child, depth - 1, names, out);
        }
    }
    Ok(())
}

pub async fn list_dir(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let user = user_of(&envd, &headers);
    connect::unary(&headers, body, |req: ListDirRequest| async move {
        let user = user?;
        let path = path_arg(&req.path, &user)?;
        let depth = req.depth.max(1);
        blocking(user, move || {
            let meta = std::fs::metadata(&path).map_err(|e| rpc_error("list", &path, &e))?;
            if !meta.is_dir() {
                return Err(ConnectError::new(
                    Code::InvalidArgument,
                    format!("path {:?} is not a directory", req.path),
                ));
            }
            let mut entries = Vec::new();
            walk(&path, depth, &Names::load(), &mut entries).map_err(|e| rpc_error("list", &path, &e))?;
            Ok(ListDirResponse { entries })
        })
        .await
    })
    .await
}

pub async fn remove(State(envd): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let user = user_of(&envd, &headers);
    connect::unary(&headers, body, |req: PathRequest| async move {
        let user = user?;
        let path = path_arg(&req.path, &user)?;
        if path == Path::new("/") {
            return Err(ConnectError::new(Code::InvalidArgument, "refusing to remove \"/\""));
        }
        blocking(user, move || {
            // A missing path is removed already, as envd's `os.RemoveAll` has it.
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Empty {}),
                Err(e) => return Err(rpc_error("remove", &path, &e)),
            };
            // Not std's remove_dir_all: it recurses once per level, and a tree as deep as the
            // sandbox likes overflowed envd's stack.
            let result =
                if meta.is_dir() { sandbank_engine::tree::remove_tree(&path) } else { std::fs::remove_file(&path) };
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(rpc_error("remove", &path, &e)),
                _ => Ok(Empty {}),
            }
        })
        .await
    })
    .await
}
