//! Users and groups of the running system (`/etc/passwd`, `/etc/group`), and the user a
//! request names (`Authorization: Basic base64("<user>:")`).

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sandbank_protocol::connect::{Code, ConnectError};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: String,
    /// Supplementary groups: the primary group and every group listing the user.
    pub groups: Vec<u32>,
}

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `name:x:uid:gid:gecos:home:shell` lines.
fn parse_passwd(text: &str) -> impl Iterator<Item = (String, u32, u32, String, String)> + '_ {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some((f[0].to_string(), f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_string(), f[6].to_string()))
    })
}

/// `name:x:gid:member,member` lines.
fn parse_group(text: &str) -> impl Iterator<Item = (String, u32, Vec<String>)> + '_ {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
        Some((f[0].to_string(), f[2].parse().ok()?, members))
    })
}

fn lookup_in(name: &str, passwd: &str, group: &str) -> Option<User> {
    let (name, uid, gid, home, shell) = parse_passwd(passwd).find(|u| u.0 == name)?;
    let mut groups = vec![gid];
    for (_, g, members) in parse_group(group) {
        if members.contains(&name) && !groups.contains(&g) {
            groups.push(g);
        }
    }
    let shell = if shell.is_empty() { "/bin/sh".to_string() } else { shell };
    Some(User { name, uid, gid, home: PathBuf::from(home), shell, groups })
}

/// Looks `name` up in the system's user database.
pub fn lookup(name: &str) -> Option<User> {
    lookup_in(name, &read(PASSWD), &read(GROUP))
}

/// The user a request names: the `username` query parameter, else the `Authorization: Basic`
/// header, else `default`. An unknown or malformed user is `unauthenticated`.
pub fn resolve(headers: &HeaderMap, query_user: Option<&str>, default: &str) -> Result<User, ConnectError> {
    let name = match query_user.filter(|u| !u.is_empty()) {
        Some(u) => u.to_string(),
        None => match basic_user(headers)? {
            Some(u) => u,
            None => default.to_string(),
        },
    };
    lookup(&name).ok_or_else(|| ConnectError::new(Code::Unauthenticated, format!("invalid username: '{name}'")))
}

/// The user name of an `Authorization: Basic` header, if there is one.
fn basic_user(headers: &HeaderMap) -> Result<Option<String>, ConnectError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = |why: &str| ConnectError::new(Code::Unauthenticated, format!("invalid Authorization header: {why}"));
    let text = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    let Some((scheme, cred)) = text.split_once(' ') else { return Err(bad("expected \"Basic <credentials>\"")) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad(&format!("unsupported scheme {scheme:?}")));
    }
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(cred.trim()).map_err(|_| bad("credentials are not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("credentials are not UTF-8"))?;
    let user = decoded.split(':').next().unwrap_or("").to_string();
    if user.is_empty() {
        return Ok(None);
    }
    Ok(Some(user))
}

/// uid → name and gid → name maps, for listing many files at once.
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    pub fn load() -> Self {
        let users = parse_passwd(&read(PASSWD)).map(|(n, uid, ..)| (uid, n)).collect::<Vec<_>>();
        let groups = parse_group(&read(GROUP)).map(|(n, gid, _)| (gid, n)).collect::<Vec<_>>();
        // The first entry of an id wins, as with getpwuid.
        let mut u = HashMap::new();
        for (id, n) in users {
            u.entry(id).or_insert(n);
        }
        let mut g = HashMap::new();
        for (id, n) in groups {
            g.entry(id).or_insert(n);
        }
        Self { users: u, groups: g }
    }

    pub fn user(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    pub fn group(&self, gid: u32) -> String {
        self.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const PW: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\nuser:x:1000:1000::/home/user:\n";
    const GR: &str = "root:x:0:\nuser:x:1000:\nsudo:x:27:user,other\ndocker:x:999:other\n";

    #[test]
    fn looks_up_users_with_groups_home_and_shell() {
        let u = lookup_in("user", PW, GR).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.home, PathBuf::from("/home/user"));
        assert_eq!(u.shell, "/bin/sh");
        assert_eq!(u.groups, vec![1000, 27]);
        assert_eq!(lookup_in("root", PW, GR).unwrap().shell, "/bin/bash");
        assert!(lookup_in("nobody", PW, GR).is_none());
    }

    #[test]
    fn basic_auth_names_the_user() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_user(&h).unwrap(), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic cm9vdDo="));
        assert_eq!(basic_user(&h).unwrap().as_deref(), Some("root"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_user(&h).unwrap_err().code, Code::Unauthenticated);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic Z2hvc3Q6")); // ghost:
        let err = resolve(&h, None, "root").unwrap_err();
        assert_eq!(err.code, Code::Unauthenticated);
        assert!(err.message.contains("ghost"), "{}", err.message);
        assert_eq!(resolve(&h, Some("root"), "user").unwrap().uid, 0);
    }
}
