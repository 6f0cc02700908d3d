//! Errors as a script author reads them: `job.rhai:12:5: message`, then the line and a caret
//! under the place, whether the error is a syntax error, a runtime error or a validation
//! problem found after the script ended.

use std::collections::BTreeMap;
use std::fmt;

use rhai::{EvalAltResult, ParseError, Position};

use super::limits::{
    MAX_ARRAY_ITEMS, MAX_CALL_LEVELS, MAX_MAP_ENTRIES, MAX_OPERATIONS, MAX_STRING_BYTES,
};

/// One error at one place in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The script or module, as named on the command line or in the `import`.
    pub file: String,
    /// 1-based line; `None` when the error is the script's as a whole.
    pub line: Option<usize>,
    /// 1-based column of that line.
    pub column: Option<usize>,
    /// What is wrong, and what to do.
    pub message: String,
    /// The text of that line.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// An error at `position` of `file`, quoting the line from `sources`.
    pub(crate) fn at(
        sources: &BTreeMap<String, String>,
        file: &str,
        position: Position,
        message: String,
    ) -> Self {
        let (line, column) = (position.line(), position.position());
        let source_line =
            line.and_then(|n| sources.get(file)?.lines().nth(n - 1).map(str::to_owned));
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            message,
            source_line,
        }
    }

    pub(crate) fn from_parse(
        sources: &BTreeMap<String, String>,
        file: &str,
        error: &ParseError,
    ) -> Self {
        Self::at(
            sources,
            file,
            error.position(),
            error.err_type().to_string(),
        )
    }

    /// A runtime error, located in the innermost function or module it happened in.
    pub(crate) fn from_eval(
        sources: &BTreeMap<String, String>,
        main: &str,
        error: &EvalAltResult,
    ) -> Self {
        let mut file = main;
        let mut error = error;
        loop {
            match error {
                EvalAltResult::ErrorInFunctionCall(_, source, inner, _) => {
                    if !source.is_empty() {
                        file = source;
                    }
                    error = inner;
                }
                EvalAltResult::ErrorInModule(name, inner, _) => {
                    if !name.is_empty() {
                        file = name;
                    }
                    error = inner;
                }
                _ => break,
            }
        }
        Self::at(sources, file, error.position(), describe(error))
    }
}

/// What went wrong, in capsule's words where Rhai's would puzzle a policy author.
fn describe(error: &EvalAltResult) -> String {
    match error {
        EvalAltResult::ErrorRuntime(value, _) | EvalAltResult::ErrorTerminated(value, _) => {
            value.to_string()
        }
        EvalAltResult::ErrorParsing(kind, _) => kind.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the script ran more than {MAX_OPERATIONS} operations and was stopped; look for a loop that never ends"
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "functions call each other more than {MAX_CALL_LEVELS} deep; look for recursion that never ends"
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => format!(
            "{what} is too large for a policy: strings hold at most {MAX_STRING_BYTES} bytes, arrays {MAX_ARRAY_ITEMS} items, maps {MAX_MAP_ENTRIES} entries"
        ),
        EvalAltResult::ErrorFunctionNotFound(signature, _) => format!(
            "no function {signature}; docs/policy.md lists capsule's functions and the types they take"
        ),
        other => {
            // Rhai ends its messages with " (line L, position C)", which the diagnostic
            // already says in front.
            let text = other.to_string();
            let place = format!(" ({})", other.position());
            text.strip_suffix(&place).unwrap_or(&text).to_owned()
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)?
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message)?,
            _ => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(text) = &self.source_line {
            write!(f, "\n    {text}")?;
            if let Some(column) = self.column {
                // The caret keeps the line's tabs, so it lines up however tabs are shown.
                let pad: String = text
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "\n    {pad}^")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnostic_quotes_its_line_with_a_caret_under_the_column() {
        let sources = BTreeMap::from([(
            "job.rhai".to_owned(),
            "let p = 1;\n\tp.memory(\"64K\");\n".to_owned(),
        )]);
        let d = Diagnostic::at(&sources, "job.rhai", Position::new(2, 4), "bad".to_owned());
        assert_eq!(
            d.to_string(),
            "job.rhai:2:4: bad\n    \tp.memory(\"64K\");\n    \t  ^"
        );
        let whole = Diagnostic::at(&sources, "job.rhai", Position::NONE, "no value".to_owned());
        assert_eq!(whole.to_string(), "job.rhai: no value");
    }
}
