//! Registry credentials, from a file in Docker's `config.json` format (`--registry-auth`):
//! `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`, or `username` and
//! `password`, or an `identitytoken`, per registry. Keys may be written as Docker writes them
//! (`https://index.docker.io/v1/` is `docker.io`; a scheme and a path are dropped; case does
//! not matter). The file is read at each pull, so credentials fixed in it take effect at the
//! next pull, with no restart. Credential helpers (`credsStore`, `credHelpers`) are not run: a
//! registry whose credentials a helper keeps is pulled from without any, with a warning.
//!
//! A secret never leaves this module in text a person could read: [`Credentials`]' `Debug`
//! hides it, errors name the file and the registry only.

use super::RuntimeError;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most of a credentials file that is read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What a registry is told: a user and password, or a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The registry, as the image names it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The file the credentials are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsFile(pub PathBuf);

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl CredentialsFile {
    /// The credentials for `registry`, if the file has some; an error if it cannot be read.
    /// An entry with none (what `docker login` leaves when a credential helper keeps the
    /// secret) counts as none: the pull goes without, and a warning names the helper.
    pub fn for_registry(&self, registry: &str) -> Result<Option<Credentials>, RuntimeError> {
        let text = read_bounded(&self.0).map_err(|e| self.error(e))?;
        // Where it is wrong, not serde's words: they may quote a value, and a value here may
        // be a secret.
        let config: ConfigFile = serde_json::from_str(&text).map_err(|e| {
            let (line, column) = (e.line(), e.column());
            let kind = format!("{:?}", e.classify()).to_lowercase();
            self.error(format!(
                "not a Docker config.json ({kind} error at line {line}, column {column})"
            ))
        })?;
        let registry = registry_of_key(registry).to_ascii_lowercase();
        let entry = config
            .auths
            .into_iter()
            .find(|(key, _)| registry_of_key(key).eq_ignore_ascii_case(&registry))
            .map(|(_, entry)| entry)
            .filter(|e| e.auth.is_some() || e.username.is_some() || e.identitytoken.is_some());
        let Some(entry) = entry else {
            let helper = config
                .cred_helpers
                .get(&registry)
                .or(config.creds_store.as_ref());
            if let Some(helper) = helper {
                tracing::warn!(file = %self.0.display(), %registry, %helper,
                    "the registry's credentials are left to a credential helper, which Weeble \
                     does not run: pulling without credentials (write them under \"auths\")");
            }
            return Ok(None);
        };
        let (mut username, mut password) = (entry.username, entry.password);
        if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(self.error(format!(
                    "the \"auth\" of {registry} is not base64 of USER:PASSWORD"
                )));
            };
            (username, password) = (Some(user.to_string()), Some(pass.to_string()));
        }
        Ok(Some(Credentials {
            registry: registry.to_string(),
            username,
            password,
            identity_token: entry.identitytoken,
        }))
    }

    fn error(&self, why: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Failed(format!(
            "registry credentials in {}: {why}",
            self.0.display()
        ))
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    match text.len() as u64 > MAX_FILE_BYTES {
        true => Err(format!("it is larger than {MAX_FILE_BYTES} bytes")),
        false => Ok(text),
    }
}

/// The registry an `auths` key stands for: `https://index.docker.io/v1/` is `docker.io`;
/// a scheme and a path are dropped.
fn registry_of_key(key: &str) -> &str {
    let host = key
        .split_once("://")
        .map_or(key, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        host => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credentials file holding `text`, named after the test (`name`).
    fn file(name: &str, text: &str) -> CredentialsFile {
        let dir = std::env::temp_dir().join(format!("weeble-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        CredentialsFile(path)
    }

    #[test]
    fn credentials_are_found_by_registry_in_any_of_dockers_spellings() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let f = file(
            "spellings",
            &format!(
                r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "bob", "password": "hunter2"}},
                "https://ghcr.io": {{"identitytoken": "tok"}}
            }}}}"#
            ),
        );
        let local = f.for_registry("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(local.username.as_deref(), Some("alice"));
        assert_eq!(local.password.as_deref(), Some("s3cret"));
        let hub = f.for_registry("docker.io").unwrap().unwrap();
        assert_eq!(hub.username.as_deref(), Some("bob"));
        assert_eq!(
            f.for_registry("index.docker.io").unwrap(),
            Some(hub.clone())
        );
        let ghcr = f.for_registry("GHCR.io").unwrap().unwrap();
        assert_eq!(ghcr.identity_token.as_deref(), Some("tok"));
        assert_eq!(f.for_registry("quay.io").unwrap(), None);
        let shown = format!("{local:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        std::fs::remove_file(&f.0).unwrap();
    }

    #[test]
    fn a_broken_file_says_what_is_wrong_without_its_secrets() {
        let f = file(
            "auth",
            r#"{"auths": {"r.io": {"auth": "bm90LWEtcGFpcg=="}}}"#,
        );
        let error = f.for_registry("r.io").unwrap_err().to_string();
        assert!(error.contains("not base64 of USER:PASSWORD"), "{error}");
        assert!(!error.contains("bm90"), "{error}");
        let f = file("json", "{not json");
        let error = f.for_registry("r.io").unwrap_err().to_string();
        assert!(error.contains("not a Docker config.json"), "{error}");
        // What `docker login` writes with a helper: an empty entry. Pulled without.
        let f = file(
            "helper",
            r#"{"auths": {"r.io": {}}, "credsStore": "desktop"}"#,
        );
        assert_eq!(f.for_registry("r.io").unwrap(), None);
        // A value of the wrong type is not quoted back: it may be a secret.
        let f = file("typed", r#"{"auths": {"r.io": "c2VjcmV0OnNlY3JldA=="}}"#);
        let error = f.for_registry("r.io").unwrap_err().to_string();
        assert!(error.contains("data error at line 1"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
        let gone = CredentialsFile(PathBuf::from("/nonexistent/config.json"));
        let error = gone.for_registry("r.io").unwrap_err().to_string();
        assert!(
            error.contains("/nonexistent/config.json: cannot open it"),
            "{error}"
        );
        for name in ["auth", "json", "helper", "typed"] {
            std::fs::remove_file(f.0.with_file_name(format!("{name}.json"))).unwrap();
        }
    }
}
