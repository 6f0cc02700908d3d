//! One reason a Plan is refused, structured so each front end can say it in its own words.
//!
//! The command line names flags (`drop --memory-swap`); a policy script names functions
//! (`drop memory_swap()`) and points at the line that set the field. Both share the field,
//! the value and what is wrong, so a Problem keeps those apart from the advice.

use std::fmt;

/// One problem with one field of a Plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field at fault as a path into the Plan's JSON: `resources.memory`, `mounts[0]`;
    /// empty when the problem is the host's rather than a field's.
    pub field: String,
    /// The field and its value as the Plan holds them: `resources.memory 65536`.
    pub subject: String,
    /// What is wrong and what would be accepted.
    pub problem: String,
    /// What to do, in the words of the command-line flags.
    pub flag_fix: Option<String>,
    /// What to do, in the words of a policy script.
    pub script_fix: Option<String>,
}

impl Problem {
    /// A problem with `field`, whose value reads `subject` (`resources.memory 65536`).
    pub fn new(
        field: impl Into<String>,
        subject: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Problem {
            field: field.into(),
            subject: subject.into(),
            problem: problem.into(),
            flag_fix: None,
            script_fix: None,
        }
    }

    /// The same advice for flags and scripts.
    pub fn fix(self, both: impl Into<String>) -> Self {
        let both = both.into();
        self.fixes(both.clone(), both)
    }

    /// Advice in the words of the flags and of a script.
    pub fn fixes(mut self, flags: impl Into<String>, script: impl Into<String>) -> Self {
        self.flag_fix = Some(flags.into());
        self.script_fix = Some(script.into());
        self
    }

    /// The problem as a script author reads it: `written` is the value as the script wrote it
    /// (`"64K"`), when known.
    pub fn script_text(&self, written: Option<&str>) -> String {
        let head = match written {
            Some(value) if !self.field.is_empty() => format!("{} = {value}", self.field),
            _ => self.subject.clone(),
        };
        join(&head, &self.problem, self.script_fix.as_deref())
    }
}

fn join(head: &str, problem: &str, fix: Option<&str>) -> String {
    let mut text = if head.is_empty() {
        problem.to_owned()
    } else {
        format!("{head}: {problem}")
    };
    if let Some(fix) = fix {
        text.push_str("; ");
        text.push_str(fix);
    }
    text
}

/// The problem in the words of the command-line flags.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(
            &self.subject,
            &self.problem,
            self.flag_fix.as_deref(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_scripts_get_their_own_advice() {
        let p = Problem::new(
            "resources.pids",
            "resources.pids",
            "a microVM is sized by memory and cpus only",
        )
        .fixes("drop --pids", "drop pids()");
        assert_eq!(
            p.to_string(),
            "resources.pids: a microVM is sized by memory and cpus only; drop --pids"
        );
        assert_eq!(
            p.script_text(Some("16")),
            "resources.pids = 16: a microVM is sized by memory and cpus only; drop pids()"
        );
        assert_eq!(
            p.script_text(None),
            "resources.pids: a microVM is sized by memory and cpus only; drop pids()"
        );
    }
}
