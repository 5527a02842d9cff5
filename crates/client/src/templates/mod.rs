//! Template builds as e2b's `Template` drives them (e2b 2.51; novita-sandbox has none), shared
//! by the JS SDK's `Template` and `sandbank templates build`:
//!
//! - [`spec`]: the template as sent (`TemplateSpec`: where it starts, its steps, its start
//!   and ready commands); [`dockerfile`]: a Dockerfile as such a template;
//! - [`files`]: a COPY step's files: which, their hash (the server's cache key), their archive;
//! - [`routes`]: the control plane's template routes, with e2b's error classes;
//! - [`build`]: a whole build: request it, upload what the server lacks, start it, follow its
//!   status and log until it ends.

pub mod build;
pub mod dockerfile;
pub mod files;
pub mod routes;
pub mod spec;

pub use build::{build, start_build, wait_for_build, BuildInfo, BuildOpts};
pub use dockerfile::{Dockerfile, Instruction};
pub use routes::{BuildReason, BuildStatus, TemplateTag, TemplateTagInfo};
pub use spec::{Step, TemplateSpec, DEFAULT_BASE_IMAGE};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One line of a build's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: DateTime<Utc>,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// Without terminal escape sequences (colours), as e2b's `LogEntry` has it.
    pub message: String,
    /// The step it belongs to, when the server says (`base`, `finalize`, or a step's 1-based
    /// number); e2b drops it, the CLI shows a failed step's lines with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

impl LogEntry {
    /// An `info` line of the SDK's own (`Uploaded 'app'`).
    pub fn info(message: impl Into<String>) -> LogEntry {
        LogEntry { timestamp: Utc::now(), level: "info".into(), message: message.into(), step: None }
    }
}

/// `s` without ANSI escape sequences (CSI such as colours, and OSC such as titles).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates up to a final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[31mred\u{1b}[0m plain"), "red plain");
        assert_eq!(strip_ansi("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(strip_ansi("a\u{1b}[2K\u{1b}[1Gb"), "ab");
        assert_eq!(strip_ansi("no escapes: [1/2] ✓"), "no escapes: [1/2] ✓");
    }
}
