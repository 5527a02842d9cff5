//! The engine↔guest handshake, one line at a time over the guest's stdin and stdout: the engine
//! writes the guest's config (one line of JSON), then [`FromEngine::Joined`]; the guest answers
//! [`FromGuest::Net`], then [`FromGuest::Ready`], or [`FromGuest::Error`] at any point.

/// What the guest reports on its stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromGuest {
    /// It is in the sandbox's network namespace: the engine may connect the network to it.
    Net,
    /// PID 1 serves envd.
    Ready,
    /// It gave up, saying why.
    Error(String),
}

impl FromGuest {
    /// The line that says it (without its newline; a reason's own newlines become spaces).
    pub fn line(&self) -> String {
        match self {
            FromGuest::Net => "net".into(),
            FromGuest::Ready => "ready".into(),
            FromGuest::Error(why) => format!("error {}", why.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Result<Self, String> {
        match line.trim_end_matches('\n') {
            "net" => Ok(FromGuest::Net),
            "ready" => Ok(FromGuest::Ready),
            other => match other.strip_prefix("error ") {
                Some(why) => Ok(FromGuest::Error(why.to_string())),
                None => Err(format!("unexpected report from the guest: {other:?}")),
            },
        }
    }
}

/// What the engine says on the guest's stdin after the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromEngine {
    /// The guest is in the sandbox's cgroup: PID 1 may be started (and is born there).
    Joined,
}

impl FromEngine {
    /// The line that says it, with its newline.
    pub fn line(self) -> &'static str {
        match self {
            FromEngine::Joined => "joined\n",
        }
    }

    pub fn parse(line: &str) -> Result<Self, String> {
        match line.trim_end_matches('\n') {
            "joined" => Ok(FromEngine::Joined),
            other => Err(format!("unexpected word from the engine: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back() {
        for m in [FromGuest::Net, FromGuest::Ready, FromGuest::Error("mount /proc: EPERM".into())] {
            assert_eq!(FromGuest::parse(&m.line()), Ok(m));
        }
        assert_eq!(FromGuest::parse("error two\nlines"), Ok(FromGuest::Error("two\nlines".into())));
        assert_eq!(FromGuest::Error("two\nlines".into()).line(), "error two lines");
        assert!(FromGuest::parse("hello").unwrap_err().contains("\"hello\""));
        assert_eq!(FromEngine::parse(FromEngine::Joined.line()), Ok(FromEngine::Joined));
        assert!(FromEngine::parse("").is_err());
    }
}
