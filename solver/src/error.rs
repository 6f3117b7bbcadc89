//! Errors of case handling and runs.
use std::fmt;

/// Where a value came from: a file position or a `--set` argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// File name, or `--set KEY=VALUE` for command-line overrides.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// The source line, for the caret display.
    pub snippet: String,
    /// Width of the underline in characters (0 with an empty snippet: no caret display).
    pub width: usize,
}

/// A problem with a case file (or an override): exit code 2.
#[derive(Clone, Debug)]
pub struct CaseError {
    /// Where, when known.
    pub location: Option<Location>,
    /// The file when no position is known.
    pub file: String,
    /// Dotted key the problem concerns, if any.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What is allowed / how to fix it.
    pub help: Option<String>,
}

impl CaseError {
    /// An error about `file` as a whole.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        CaseError { location: None, file: file.into(), key: None, message: message.into(), help: None }
    }

    /// Adds the allowed values / a fix.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{}:{}:{}: ", l.file, l.line, l.column)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        write!(f, "{}", self.message)?;
        // A location with no source line (e.g. a section missing from the file) has
        // no caret display.
        if let Some(l) = self.location.as_ref().filter(|l| !(l.snippet.is_empty() && l.width == 0)) {
            let num = l.line.to_string();
            let pad = " ".repeat(num.len());
            write!(
                f,
                "\n{pad} |\n{num} | {}\n{pad} | {}{}",
                l.snippet,
                " ".repeat(l.column.saturating_sub(1)),
                "^".repeat(l.width.max(1))
            )?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CaseError {}

/// Errors of `tessera run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad case file or options (exit 2).
    #[error("{0}")]
    Case(#[from] CaseError),
    /// Bad command-line use or environment that the user must fix (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The run failed: I/O, divergence (exit 3).
    #[error("{0}")]
    Failed(String),
}

impl RunError {
    /// The process exit code DESIGN.md assigns.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Case(_) | RunError::Usage(_) => 2,
            RunError::Failed(_) => 3,
        }
    }
}

impl From<decomp::Error> for RunError {
    fn from(e: decomp::Error) -> Self {
        RunError::Failed(e.to_string())
    }
}

/// Result with [`RunError`].
pub type Result<T, E = RunError> = std::result::Result<T, E>;

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Wrong case only (`X` for `x`, `Heat` for `heat`): always a likely typo.
    if let Some(c) = candidates.iter().find(|c| c.eq_ignore_ascii_case(word) && **c != word) {
        return Some(c);
    }
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("difusivity", &["diffusivity", "source"]), Some("diffusivity"));
        assert_eq!(suggest("celss", &["cells", "lower", "upper"]), Some("cells"));
        assert_eq!(suggest("banana", &["cells", "lower"]), None);
        assert_eq!(suggest("X", &["x", "y", "z", "t"]), Some("x"));
    }

    #[test]
    fn display_has_position_caret_and_help() {
        let e = CaseError {
            location: Some(Location { file: "a.toml".into(), line: 3, column: 9, snippet: "cells = [-4, 8]".into(), width: 2 }),
            file: "a.toml".into(),
            key: Some("mesh.cells".into()),
            message: "must be positive".into(),
            help: Some("integers >= 1".into()),
        };
        let s = e.to_string();
        assert!(s.starts_with("a.toml:3:9: mesh.cells: must be positive"), "{s}");
        assert!(s.contains("3 | cells = [-4, 8]") && s.contains("  |         ^^") && s.contains("help: integers >= 1"), "{s}");
    }
}
