//! Errors of `tessera post`: bad input names the file, line and column (exit 2); a
//! failure while reading or writing says what failed (exit 3).
use std::fmt;

/// A position in a pipeline file.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// The file as the user spelled it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The source line, for the caret display.
    pub snippet: String,
    /// Width of the underline in characters.
    pub width: usize,
}

impl Location {
    /// The location of byte range `span` of `text` (the contents of `file`).
    pub fn of(file: &str, text: &str, span: (usize, usize)) -> Location {
        let at = span.0.min(text.len());
        let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = text[at..].find('\n').map(|i| at + i).unwrap_or(text.len());
        let line = text[..at].matches('\n').count() + 1;
        let column = text[line_start..at].chars().count() + 1;
        let end = span.1.clamp(at, line_end.max(at));
        let width = text[at..end].chars().count().max(1);
        Location { file: file.to_string(), line, column, snippet: text[line_start..line_end].trim_end_matches('\r').to_string(), width }
    }
}

/// Everything that can go wrong in `tessera post`.
#[derive(Debug)]
pub enum PostError {
    /// Bad input: pipeline file, options, a run that does not fit the pipeline (exit 2).
    Input {
        /// Where, when known.
        location: Option<Location>,
        /// What is wrong.
        message: String,
        /// What is allowed, or how to fix it.
        help: Option<String>,
    },
    /// Reading the run or writing results failed (exit 3).
    Failed(String),
}

impl PostError {
    /// Bad input at `loc`.
    pub fn at(loc: Location, message: impl Into<String>) -> Self {
        PostError::Input { location: Some(loc), message: message.into(), help: None }
    }

    /// Bad input with no position (a missing file, a run that is not a RUN_DIR).
    pub fn input(message: impl Into<String>) -> Self {
        PostError::Input { location: None, message: message.into(), help: None }
    }

    /// Adds what is allowed.
    pub fn help(mut self, h: impl Into<String>) -> Self {
        if let PostError::Input { help, .. } = &mut self {
            *help = Some(h.into());
        }
        self
    }

    /// The process exit code (DESIGN.md): 2 bad input, 3 a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            PostError::Input { .. } => 2,
            PostError::Failed(_) => 3,
        }
    }
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Failed(m) => write!(f, "{m}"),
            PostError::Input { location, message, help } => {
                match location {
                    Some(l) => write!(f, "{}:{}:{}: {message}", l.file, l.line, l.column)?,
                    None => write!(f, "{message}")?,
                }
                if let Some(l) = location {
                    let num = l.line.to_string();
                    let pad = " ".repeat(num.len());
                    write!(f, "\n{pad} |\n{num} | {}\n{pad} | {}{}", l.snippet, " ".repeat(l.column - 1), "^".repeat(l.width))?;
                }
                if let Some(h) = help {
                    write!(f, "\n  = help: {h}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PostError {}

/// Result with [`PostError`].
pub type Result<T, E = PostError> = std::result::Result<T, E>;

/// The closest of `candidates` to `word`, when it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
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

/// "did you mean `x`? " or nothing.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`? ")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_display() {
        let text = "[source]\nsnapshots = \"al\"\n";
        let l = Location::of("p.toml", text, (21, 25));
        assert_eq!((l.line, l.column, l.width), (2, 13, 4));
        let e = PostError::at(l, "bad value").help("\"all\", \"last\"");
        let s = e.to_string();
        assert!(s.starts_with("p.toml:2:13: bad value"), "{s}");
        assert!(s.contains("2 | snapshots = \"al\"") && s.contains("^^^^") && s.contains("help: \"all\""), "{s}");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(suggest("vorticty", &["vorticity", "velocity_x"]), Some("vorticity"));
    }
}
