//! Who may call the API: bearer tokens from a file (`--api-token-file`), each with a name that
//! the logs show and a kind, full or read-only (for dashboards). Pure: [`Tokens::check`] takes a
//! request's method and `Authorization` header and says who calls, or why not. Tokens are
//! compared in constant time: how long a check takes does not tell how much of a guess was
//! right.
//!
//! The file has one token a line, as Kubernetes' static token file does: `TOKEN,NAME` or
//! `TOKEN,NAME,read-only`; blank lines and lines starting with `#` are skipped.

use axum::http::Method;

/// The shortest token accepted: 16 characters (a guess at random is then out of reach).
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens the API accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens(Vec<Token>);

/// One token: its name shows in the logs; a read-only one may only read.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub read_only: bool,
    secret: Vec<u8>,
}

/// A token is secret: it never shows in a debug print, only its name and kind.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.read_only { "read-only" } else { "full" };
        write!(f, "Token({:?}, {kind})", self.name)
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|t| t.name.as_str()).collect();
        write!(f, "Tokens({names:?})")
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no `Authorization: Bearer` header.
    Missing,
    /// 401: a token this node does not know.
    Unknown,
    /// 403: a read-only token (its name) asked to write.
    ReadOnly(String),
}

impl Tokens {
    /// Reads a token file; every problem is named with its line.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut problems = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let (secret, name, read_only) = match fields[..] {
                [secret, name] => (secret, name, false),
                [secret, name, "read-only"] => (secret, name, true),
                [_, _, other] => {
                    problems.push(format!(
                        "line {n}: the kind is read-only or nothing, not {other:?}"
                    ));
                    continue;
                }
                _ => {
                    problems.push(format!("line {n}: give TOKEN,NAME or TOKEN,NAME,read-only"));
                    continue;
                }
            };
            if secret.len() < MIN_TOKEN_LEN || secret.chars().any(|c| !c.is_ascii_graphic()) {
                problems.push(format!(
                    "line {n}: a token is at least {MIN_TOKEN_LEN} visible ASCII characters"
                ));
            } else if name.is_empty() {
                problems.push(format!(
                    "line {n}: the token needs a name (it shows in the logs)"
                ));
            } else if tokens.iter().any(|t| t.name == name) {
                problems.push(format!("line {n}: a second token named {name:?}"));
            } else {
                tokens.push(Token {
                    name: name.to_string(),
                    read_only,
                    secret: secret.as_bytes().to_vec(),
                });
            }
        }
        if tokens.is_empty() && problems.is_empty() {
            problems.push("no token in the file".into());
        }
        match problems.is_empty() {
            true => Ok(Tokens(tokens)),
            false => Err(problems.join("; ")),
        }
    }

    /// Who sends a request with `authorization`, if it may do what `method` asks.
    pub fn check(&self, method: &Method, authorization: Option<&str>) -> Result<&Token, Denied> {
        let given = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .ok_or(Denied::Missing)?
            .trim()
            .as_bytes();
        // Every token is compared, whichever matches, so the time does not say which did.
        let mut found = None;
        for token in &self.0 {
            if equal(&token.secret, given) {
                found = Some(token);
            }
        }
        let token = found.ok_or(Denied::Unknown)?;
        let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if token.read_only && !reads {
            return Err(Denied::ReadOnly(token.name.clone()));
        }
        Ok(token)
    }
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths.
fn equal(a: &[u8], b: &[u8]) -> bool {
    let longest = a.len().max(b.len());
    let mut differ = u8::from(a.len() != b.len());
    for i in 0..longest {
        differ |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# operators\nadmin-token-0123456789,alice\n\n\
        dashboard-token-0123456,grafana,read-only\n";

    #[test]
    fn a_token_says_who_calls_and_a_read_only_one_may_only_read() {
        let tokens = Tokens::parse(FILE).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        let alice = tokens.check(&Method::POST, Some(&bearer("admin-token-0123456789")));
        assert_eq!(alice.map(|t| t.name.as_str()), Ok("alice"));
        let reads = tokens.check(&Method::GET, Some(&bearer("dashboard-token-0123456")));
        assert_eq!(reads.map(|t| t.name.as_str()), Ok("grafana"));
        assert_eq!(
            tokens.check(&Method::DELETE, Some(&bearer("dashboard-token-0123456"))),
            Err(Denied::ReadOnly("grafana".into()))
        );
        assert_eq!(tokens.check(&Method::GET, None), Err(Denied::Missing));
        assert_eq!(
            tokens.check(&Method::GET, Some("Basic YWxpY2U6eA==")),
            Err(Denied::Missing)
        );
        for wrong in ["admin-token-012345678", "admin-token-01234567890", "x"] {
            assert_eq!(
                tokens.check(&Method::GET, Some(&bearer(wrong))),
                Err(Denied::Unknown),
                "{wrong}"
            );
        }
    }

    #[test]
    fn a_bad_token_file_names_each_line_and_shows_no_secret() {
        let bad = "short,bob\nlong-enough-token-1,\nlong-enough-token-2,carol,admin\n\
            long-enough-token-3,dave\nlong-enough-token-4,dave\n";
        let problems = Tokens::parse(bad).unwrap_err();
        for expected in [
            "line 1: a token is at least 16",
            "line 2: the token needs a name",
            "line 3: the kind is read-only or nothing",
            "line 5: a second token named \"dave\"",
        ] {
            assert!(problems.contains(expected), "{problems}");
        }
        assert_eq!(
            Tokens::parse("# none\n").unwrap_err(),
            "no token in the file"
        );
        let printed = format!("{:?}", Tokens::parse(FILE).unwrap());
        assert_eq!(printed, r#"Tokens(["alice", "grafana"])"#);
    }

    #[test]
    fn tokens_are_equal_only_when_every_byte_is() {
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"abcd"));
        assert!(
            !equal(b"abc\0", b"abc"),
            "a shorter token padded with zeros is not equal"
        );
        assert!(!equal(b"", b"a"));
    }
}
