//! Engine error texts made fit for a client: the wrappers a failed cluster
//! job carries (`Job <id> failed: Job failed due to stage 1 failed: Task
//! failed due to runtime execution error: DataFusionError(Shared(External(
//! ArrowError(DivideByZero))))`), DataFusion's display prefixes (`Arrow
//! error: `, `Optimizer rule '...' failed: `) and its bug-report boilerplate
//! are removed, and the classes PostgreSQL names get their SQLSTATE
//! (division by zero 22012, invalid input 22P02, overflow 22003, unknown
//! function 42883). The full text is logged by the caller.

use super::{ErrorKind, QueryError};

/// Wrappers of a Debug-printed error, outermost first.
const DEBUG_WRAPPERS: &[&str] = &[
    "DataFusionError(",
    "Shared(",
    "External(",
    "ArrowError(",
    "Execution(",
    "Internal(",
    "Plan(",
    "ObjectStore(",
];

/// Prefixes of status and display texts around the cause.
const PREFIXES: &[&str] = &[
    "Job failed due to stage ",
    "Task failed due to runtime execution error: ",
    "Arrow error: ",
    "Execution error: ",
    "External error: ",
    "Internal error: ",
    "Shared error: ",
    "Error during planning: ",
];

const BUG_REPORT: &str = "This issue was likely caused by a bug in DataFusion's code.";

/// `message` as a client should read it, with the class it reveals (or
/// `kind` when it reveals none).
pub(super) fn tidy(kind: ErrorKind, message: &str) -> QueryError {
    let mut text = message.trim();
    // "Job <id> failed: <cause>"
    if let Some(rest) = text.strip_prefix("Job ")
        && let Some((_, cause)) = rest.split_once(" failed: ")
    {
        text = cause;
    }
    let text = strip(text);
    let (kind, text) = classify(kind, &text);
    QueryError::new(kind, text)
}

fn strip(mut text: &str) -> String {
    loop {
        let before = text;
        for p in PREFIXES {
            if let Some(rest) = text.strip_prefix(p) {
                // "Job failed due to stage 1 failed: ..."
                text = if *p == "Job failed due to stage " {
                    rest.split_once(" failed: ").map_or(rest, |(_, c)| c)
                } else {
                    rest
                };
            }
        }
        if let Some(rest) = text.strip_prefix("Optimizer rule '")
            && let Some((_, cause)) = rest.split_once("' failed: ")
        {
            text = cause;
        }
        for w in DEBUG_WRAPPERS {
            if let Some(inner) = text.strip_prefix(w).and_then(|t| t.strip_suffix(')')) {
                text = inner;
            }
        }
        if text == before {
            break;
        }
    }
    let mut out = text.to_owned();
    if let Some(at) = out.find(BUG_REPORT) {
        // The boilerplate runs to the issue tracker's address.
        let tail = &out[at..];
        let end = tail.find("/issues").map_or(tail.len(), |i| i + "/issues".len());
        out.replace_range(at..at + end, "");
    }
    out.trim().trim_end_matches('.').trim().to_owned()
}

/// `Name("text")` of a Debug-printed Arrow error, unescaped.
fn debug_payload(text: &str, name: &str) -> Option<String> {
    let inner = text.strip_prefix(name)?.strip_prefix("(\"")?.strip_suffix("\")")?;
    Some(unescape(inner))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn classify(kind: ErrorKind, text: &str) -> (ErrorKind, String) {
    if text == "DivideByZero" || text.starts_with("Divide by zero") {
        return (ErrorKind::DivisionByZero, "division by zero".into());
    }
    if let Some(m) = debug_payload(text, "CastError") {
        return (ErrorKind::InvalidTextRepresentation, m);
    }
    if let Some(m) = text.strip_prefix("Cast error: ") {
        return (ErrorKind::InvalidTextRepresentation, m.to_owned());
    }
    if let Some(m) = debug_payload(text, "ArithmeticOverflow") {
        return (ErrorKind::NumericOutOfRange, m);
    }
    if let Some(m) = text.strip_prefix("Arithmetic overflow: ") {
        return (ErrorKind::NumericOutOfRange, m.to_owned());
    }
    for name in ["ComputeError", "InvalidArgumentError", "ParseError", "SchemaError"] {
        if let Some(m) = debug_payload(text, name) {
            return (ErrorKind::DataException, m);
        }
    }
    if let Some(at) = text.find("No function matches the given name and argument types '") {
        let rest = &text[at + "No function matches the given name and argument types '".len()..];
        let call = rest.split_once('\'').map_or(rest, |(c, _)| c);
        return (
            ErrorKind::UndefinedFunction,
            format!("function {call} does not exist; you might need to add explicit type casts"),
        );
    }
    // A quoted Debug string: Execution("...")
    let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => unescape(inner),
        None => text.to_owned(),
    };
    (kind, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tidied(kind: ErrorKind, m: &str) -> (&'static str, String) {
        let e = tidy(kind, m);
        (e.sqlstate(), e.message)
    }

    #[test]
    fn job_failures_read_like_postgres_errors() {
        let job = "Job 038JDTB7X8000 failed: Job failed due to stage 1 failed: Task failed due to runtime \
                   execution error: ";
        assert_eq!(
            tidied(
                ErrorKind::DataException,
                &format!("{job}DataFusionError(Shared(External(ArrowError(DivideByZero))))")
            ),
            ("22012", "division by zero".into())
        );
        assert_eq!(
            tidied(
                ErrorKind::DataException,
                &format!(
                    "{job}DataFusionError(Shared(External(ArrowError(CastError(\"Cannot cast string 'x' to value of Int32 type\")))))"
                )
            ),
            ("22P02", "Cannot cast string 'x' to value of Int32 type".into())
        );
        assert_eq!(
            tidied(
                ErrorKind::DataException,
                &format!("{job}DataFusionError(Execution(\"disk \\\"full\\\"\"))")
            ),
            ("22000", "disk \"full\"".into())
        );
    }

    #[test]
    fn planner_texts_lose_their_wrappers() {
        assert_eq!(
            tidied(
                ErrorKind::DataException,
                "Optimizer rule 'simplify_expressions' failed: Cast error: Cannot cast string 'x' to value of Int32 type"
            ),
            ("22P02", "Cannot cast string 'x' to value of Int32 type".into())
        );
        let (state, m) = tidied(
            ErrorKind::Internal,
            "Internal error: Function 'sum' failed to match any signature.\nThis issue was likely caused by a bug in \
             DataFusion's code. Please help us to resolve this by filing a bug report in our issue tracker: \
             https://github.com/apache/datafusion/issues. No function matches the given name and argument types \
             'sum(Utf8)'. You might need to add explicit type casts.",
        );
        assert_eq!(state, "42883");
        assert_eq!(
            m,
            "function sum(Utf8) does not exist; you might need to add explicit type casts"
        );
        assert_eq!(
            tidied(ErrorKind::DataException, "Arrow error: Divide by zero error").0,
            "22012"
        );
        assert_eq!(
            tidied(
                ErrorKind::Internal,
                "Internal error: something odd.\nThis issue was likely caused by a bug in DataFusion's code. Please help us to resolve this by filing a bug report in our issue tracker: https://github.com/apache/datafusion/issues"
            ),
            ("XX000", "something odd".into())
        );
    }
}
