//! The partition filters of `get_partitions_by_filter`, as Hive's and
//! Spark's clients write them: comparisons of a partition key with a
//! literal (`ds = "2024-01-01"`, `hr >= 10`, `k <> 'x'`, `k like 'a%'`),
//! combined with `and`, `or`, `not` and parentheses. A comparison is numeric
//! when the literal is a number and the value parses as one, else on text.

use std::cmp::Ordering;

use super::convert::ConvertError;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    Open,
    Close,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Filter {
    Cmp {
        key: String,
        op: &'static str,
        literal: Literal,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    True,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Str(String),
    Num(String),
}

fn bad(filter: &str, why: impl std::fmt::Display) -> ConvertError {
    ConvertError::Invalid(format!("cannot parse partition filter {filter:?}: {why}"))
}

fn lex(text: &str) -> Result<Vec<Token>, ConvertError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '"' | '\'' => {
                let mut j = i + 1;
                let mut s = String::new();
                // Verbatim, as Hive's filter lexer reads quoted values
                // (Spark does not escape what it puts inside them).
                while j < chars.len() && chars[j] != c {
                    s.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(bad(text, "unterminated string"));
                }
                out.push(Token::Str(s));
                i = j + 1;
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = match two.as_str() {
                    "<=" => "<=",
                    ">=" => ">=",
                    "<>" | "!=" => "<>",
                    _ => match c {
                        '=' => "=",
                        '<' => "<",
                        '>' => ">",
                        _ => return Err(bad(text, "stray '!'")),
                    },
                };
                // "!=" is read as "<>": both are two characters.
                i += op.len();
                out.push(Token::Op(op));
            }
            _ if c.is_ascii_digit() || c == '-' || c == '.' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_digit() || chars[j] == '.' || chars[j] == 'e' || chars[j] == 'E')
                {
                    j += 1;
                }
                out.push(Token::Num(chars[i..j].iter().collect()));
                i = j;
            }
            _ if c.is_alphanumeric() || c == '_' || c == '`' => {
                let mut j = i;
                let mut s = String::new();
                while j < chars.len()
                    && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '`' || chars[j] == '.')
                {
                    if chars[j] != '`' {
                        s.push(chars[j]);
                    }
                    j += 1;
                }
                out.push(match s.to_ascii_lowercase().as_str() {
                    "and" => Token::Op("and"),
                    "or" => Token::Op("or"),
                    "not" => Token::Op("not"),
                    "like" => Token::Op("like"),
                    _ => Token::Ident(s),
                });
                i = j;
            }
            _ => return Err(bad(text, format!("unexpected {c:?}"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
    /// Nesting of `not` and parentheses (bounded: the parser recurses).
    depth: usize,
}

/// Longest filter accepted, and deepest nesting.
const MAX_FILTER: usize = 64 * 1024;
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Filter, ConvertError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Op("or")) {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ConvertError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::Op("and")) {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ConvertError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(bad(self.text, format!("nested deeper than {MAX_DEPTH}")));
        }
        let f = self.unary_inner();
        self.depth -= 1;
        f
    }

    fn unary_inner(&mut self) -> Result<Filter, ConvertError> {
        match self.next() {
            Some(Token::Op("not")) => Ok(Filter::Not(Box::new(self.unary()?))),
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(bad(self.text, "missing ')'")),
                }
            }
            Some(Token::Ident(key)) => {
                let op = match self.next() {
                    Some(Token::Op(op)) if !matches!(op, "and" | "or" | "not") => op,
                    other => {
                        return Err(bad(
                            self.text,
                            format!("expected a comparison after {key}, got {other:?}"),
                        ));
                    }
                };
                let literal = match self.next() {
                    Some(Token::Str(s)) => Literal::Str(s),
                    Some(Token::Num(n)) => Literal::Num(n),
                    other => {
                        return Err(bad(
                            self.text,
                            format!("expected a literal after {key} {op}, got {other:?}"),
                        ));
                    }
                };
                Ok(Filter::Cmp { key, op, literal })
            }
            Some(lit @ (Token::Str(_) | Token::Num(_))) => {
                // `"x" = k`: the same comparison turned around.
                let op = match self.next() {
                    Some(Token::Op(op)) if matches!(op, "=" | "<>" | "<" | "<=" | ">" | ">=") => op,
                    other => return Err(bad(self.text, format!("expected a comparison, got {other:?}"))),
                };
                let key = match self.next() {
                    Some(Token::Ident(k)) => k,
                    other => return Err(bad(self.text, format!("expected a partition key, got {other:?}"))),
                };
                let flipped = match op {
                    "<" => ">",
                    "<=" => ">=",
                    ">" => "<",
                    ">=" => "<=",
                    o => o,
                };
                let literal = match lit {
                    Token::Str(s) => Literal::Str(s),
                    Token::Num(n) => Literal::Num(n),
                    _ => unreachable!("matched above"),
                };
                Ok(Filter::Cmp {
                    key,
                    op: flipped,
                    literal,
                })
            }
            other => Err(bad(self.text, format!("unexpected {other:?}"))),
        }
    }
}

/// Parses `text` (empty: every partition); keys must be among `keys`.
pub(super) fn parse(text: &str, keys: &[String]) -> Result<Filter, ConvertError> {
    if text.trim().is_empty() {
        return Ok(Filter::True);
    }
    if text.len() > MAX_FILTER {
        return Err(bad(
            &text.chars().take(64).collect::<String>(),
            format!("longer than {MAX_FILTER} bytes"),
        ));
    }
    let mut p = Parser {
        text,
        tokens: lex(text)?,
        at: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.at != p.tokens.len() {
        return Err(bad(text, "trailing input"));
    }
    check_keys(&f, keys, text)?;
    Ok(f)
}

fn check_keys(f: &Filter, keys: &[String], text: &str) -> Result<(), ConvertError> {
    match f {
        Filter::Cmp { key, .. } => {
            if keys.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                Ok(())
            } else {
                Err(bad(text, format!("{key} is not a partition key")))
            }
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_keys(a, keys, text)?;
            check_keys(b, keys, text)
        }
        Filter::Not(a) => check_keys(a, keys, text),
        Filter::True => Ok(()),
    }
}

/// SQL LIKE (`%` any run, `_` one character), matched without
/// backtracking recursion: linear in the value for each `%`.
fn like(value: &str, pattern: &str) -> bool {
    let (v, p): (Vec<char>, Vec<char>) = (value.chars().collect(), pattern.chars().collect());
    let (mut vi, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] == v[vi])) {
            vi += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// Orders a partition value and a numeric literal: as integers when both
/// are (exact beyond 2^53), as finite floats otherwise, else as text.
fn numeric_order(value: &str, literal: &str) -> Option<Ordering> {
    if let (Ok(a), Ok(b)) = (value.parse::<i128>(), literal.parse::<i128>()) {
        return Some(a.cmp(&b));
    }
    match (value.parse::<f64>(), literal.parse::<f64>()) {
        (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => a.partial_cmp(&b),
        _ => None,
    }
}

impl Filter {
    /// Whether a partition with `values` (in `keys` order) passes.
    pub(super) fn matches(&self, keys: &[String], values: &[String]) -> bool {
        match self {
            Filter::True => true,
            Filter::And(a, b) => a.matches(keys, values) && b.matches(keys, values),
            Filter::Or(a, b) => a.matches(keys, values) || b.matches(keys, values),
            Filter::Not(a) => !a.matches(keys, values),
            Filter::Cmp { key, op, literal } => {
                let Some(value) = keys
                    .iter()
                    .position(|k| k.eq_ignore_ascii_case(key))
                    .and_then(|i| values.get(i))
                else {
                    return false;
                };
                if value == crate::catalog::NULL_PARTITION {
                    return false;
                }
                let (lit, numeric) = match literal {
                    Literal::Str(s) => (s.as_str(), false),
                    Literal::Num(n) => (n.as_str(), true),
                };
                if *op == "like" {
                    return like(value, lit);
                }
                let ord = numeric
                    .then(|| numeric_order(value, lit))
                    .flatten()
                    .unwrap_or_else(|| value.as_str().cmp(lit));
                match *op {
                    "=" => ord == Ordering::Equal,
                    "<>" => ord != Ordering::Equal,
                    "<" => ord == Ordering::Less,
                    "<=" => ord != Ordering::Greater,
                    ">" => ord == Ordering::Greater,
                    ">=" => ord != Ordering::Less,
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        vec!["ds".into(), "hr".into()]
    }

    fn pass(filter: &str, ds: &str, hr: &str) -> bool {
        parse(filter, &keys())
            .unwrap()
            .matches(&keys(), &[ds.into(), hr.into()])
    }

    #[test]
    fn hive_and_spark_filters() {
        assert!(pass(r#"ds = "2024-01-01""#, "2024-01-01", "3"));
        assert!(!pass(r#"ds = "2024-01-01""#, "2024-01-02", "3"));
        assert!(pass("hr >= 10", "x", "12"));
        assert!(!pass("hr >= 10", "x", "9"), "numeric, not text, comparison");
        assert!(pass("(ds = 'a') and (hr < 5)", "a", "4"));
        assert!(pass("ds = 'a' or ds = 'b'", "b", "0"));
        assert!(!pass("not (ds = 'a')", "a", "0"));
        assert!(pass("ds <> 'a'", "b", "0"));
        assert!(pass("ds != 'a'", "b", "0"));
        assert!(pass("ds like '2024-%'", "2024-05-01", "0"));
        assert!(pass("'2024' < ds", "2025", "0"));
        assert!(pass("", "any", "thing"));
        assert!(!pass("hr = 1", "x", crate::catalog::NULL_PARTITION));
        assert!(pass(r"ds = 'a\b'", r"a\b", "0"), "backslashes are verbatim");
        assert!(
            pass("hr > 9007199254740992", "x", "9007199254740993"),
            "integers beyond 2^53"
        );
        assert!(pass("hr > 1", "x", "NaN"), "NaN is no number: compared as text, kept");
        assert!(pass("ds like 'a%b%c'", "axxbyyc", "0"));
        assert!(!pass("ds like 'a%b%c'", "axxbyy", "0"));
        assert!(pass("ds like 'a_c'", "abc", "0"));
    }

    #[test]
    fn hostile_filters_are_refused_not_recursed_into() {
        let deep = format!("{}ds = 'a'{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep, &keys()).unwrap_err().to_string().contains("nested deeper"));
        let nots = format!("{}ds = 'a'", "not ".repeat(10_000));
        assert!(parse(&nots, &keys()).is_err());
        assert!(parse(&"x".repeat(100_000), &keys()).is_err());
        let many = format!("ds like '{}b'", "%".repeat(5_000));
        assert!(!pass(&many, &"a".repeat(5_000), "0"));
    }

    #[test]
    fn bad_filters_are_refused_by_name() {
        for (f, why) in [
            ("nope = 1", "not a partition key"),
            ("ds = ", "expected a literal"),
            ("(ds = 'a'", "missing ')'"),
            ("ds = 'a", "unterminated"),
            ("ds = 'a' 'b'", "trailing input"),
        ] {
            let err = parse(f, &keys()).unwrap_err().to_string();
            assert!(err.contains(why), "{f}: {err}");
        }
    }
}
