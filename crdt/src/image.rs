//! Image references as Docker and the kubelet read them (`[registry[:port]/]path[:tag][@digest]`,
//! the grammar of the `distribution/reference` package), and the pull policy a container gets
//! when its manifest names none: Kubernetes' rule, `Always` for `:latest` or no tag,
//! `IfNotPresent` otherwise (a digest with no tag included).

use crate::PullPolicy;

/// The registry an image with no registry in its name comes from.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag an image with neither tag nor digest means.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository name Docker takes.
const MAX_NAME: usize = 255;
/// The longest tag Docker takes.
const MAX_TAG: usize = 128;

/// One image reference, read ([`Reference::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    /// `host[:port]`, when the name starts with one.
    pub registry: Option<&'a str>,
    /// The repository within the registry: `library/nginx`'s `nginx` stays `nginx`.
    pub path: &'a str,
    pub tag: Option<&'a str>,
    /// `algorithm:hex`.
    pub digest: Option<&'a str>,
}

impl<'a> Reference<'a> {
    /// Reads `image`, or says what is wrong with it (the kubelet's `InvalidImageName`).
    pub fn parse(image: &'a str) -> Result<Self, String> {
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
            None => (image, None),
        };
        // A tag follows the last `:` that comes after the last `/` (a registry's port is
        // before it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        if name.is_empty() {
            return Err("the repository name is empty".into());
        }
        if name.len() > MAX_NAME {
            return Err(format!(
                "the repository name is longer than {MAX_NAME} characters"
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if is_registry(first) => (Some(first), path),
            _ => (None, name),
        };
        if let Some(registry) = registry {
            check_registry(registry)?;
        }
        for component in path.split('/') {
            check_component(component)?;
        }
        // Docker refuses a name an image id could be mistaken for.
        if path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a 64-digit hexadecimal name is taken for an image id".into());
        }
        Ok(Reference {
            registry,
            path,
            tag,
            digest,
        })
    }

    /// The repository, as the engine's pull and tag calls take it: the name without its tag
    /// or digest (`registry/path`, or `path`).
    pub fn repository(&self) -> String {
        match self.registry {
            Some(registry) => format!("{registry}/{}", self.path),
            None => self.path.to_string(),
        }
    }

    /// `image` with a tag: `latest` where it names none (nor a digest), as the engine reads
    /// it (`web` and `web:latest` are one image); as given if it cannot be read.
    pub fn tagged(image: &str) -> String {
        match Reference::parse(image) {
            Ok(r) if r.tag.is_none() && r.digest.is_none() => format!("{image}:{DEFAULT_TAG}"),
            _ => image.to_string(),
        }
    }

    /// The registry it is pulled from (`docker.io` when the name names none).
    pub fn registry(&self) -> &'a str {
        self.registry.unwrap_or(DEFAULT_REGISTRY)
    }

    /// The policy Kubernetes gives a container with this image and no `imagePullPolicy`.
    pub fn default_policy(&self) -> PullPolicy {
        match (self.tag, self.digest) {
            (Some(DEFAULT_TAG), _) | (None, None) => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// Whether `id` is an image id as an engine writes it: `sha256:` and 64 lower-case hex
/// digits (the sha256 of the image's config). A name, or a short id, is not.
pub fn is_id(id: &str) -> bool {
    let hex = id.strip_prefix("sha256:").unwrap_or_default();
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The policy a container pulls `image` by: `given`, or Kubernetes' default for the image;
/// an image that cannot be read gets `IfNotPresent` (it is never pulled: the kubelet's
/// `InvalidImageName`).
pub fn policy(image: &str, given: Option<PullPolicy>) -> PullPolicy {
    given.unwrap_or_else(|| {
        Reference::parse(image).map_or(PullPolicy::IfNotPresent, |r| r.default_policy())
    })
}

/// Whether the first component of a name is a registry: it has a `.`, a `:` or a capital,
/// or it is `localhost` (Docker's `splitDockerDomain`: `nginx/web` is a path on `docker.io`).
fn is_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("invalid registry host {host:?}"));
    }
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(port) = port
        && !(digits(port) && port.parse::<u16>().is_ok())
    {
        return Err(format!("invalid registry port {port:?}"));
    }
    Ok(())
}

/// A path component: lower-case letters and digits, joined by `.`, `_`, `__` or dashes.
fn check_component(component: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid repository name component {component:?}: lower-case letters and digits, \
             separated by '.', '_', '__' or '-'"
        )
    };
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let starts_and_ends = component.starts_with(alnum) && component.ends_with(alnum);
    if !starts_and_ends || !component.chars().all(|c| alnum(c) || "._-".contains(c)) {
        return Err(bad());
    }
    // Separators: one `.`, one or two `_`, or any number of `-`; never mixed.
    let separators = component.split(alnum).filter(|s| !s.is_empty());
    for s in separators {
        let ok = s == "." || s == "_" || s == "__" || s.chars().all(|c| c == '-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = tag.len() <= MAX_TAG
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid tag {tag:?}: up to {MAX_TAG} letters, digits, '_', '.' or '-', not \
             starting with '.' or '-'"
        )),
    }
}

fn check_digest(digest: &str) -> Result<&str, String> {
    let bad = || {
        format!("invalid digest {digest:?}: sha256:, sha384: or sha512: and its hexadecimal digits")
    };
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let digits = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(bad()),
    };
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    match hex.len() == digits && hex.chars().all(lower_hex) {
        true => Ok(digest),
        false => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn names_tags_digests_and_registries_are_read_as_docker_reads_them() {
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(
            (r.registry(), r.path, r.tag, r.digest),
            ("docker.io", "nginx", None, None)
        );
        let r = Reference::parse("127.0.0.1:5000/team/web:1.27").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!((r.path, r.tag), ("team/web", Some("1.27")));
        assert_eq!(r.repository(), "127.0.0.1:5000/team/web");
        let r = Reference::parse("localhost/web").unwrap();
        assert_eq!((r.registry, r.path), (Some("localhost"), "web"));
        let r = Reference::parse("nginx/web:v2").unwrap();
        assert_eq!((r.registry(), r.path), ("docker.io", "nginx/web"));
        assert_eq!(r.repository(), "nginx/web");
        let with_digest = format!("registry.example.com/a_b/c--d.e:v1@{DIGEST}");
        let r = Reference::parse(&with_digest).unwrap();
        assert_eq!((r.tag, r.digest), (Some("v1"), Some(DIGEST)));
    }

    #[test]
    fn ids_are_told_from_names_and_a_name_gets_its_tag() {
        assert!(is_id(DIGEST));
        for not in [
            "sha256:abc",
            "postgres:15",
            "../../etc",
            &DIGEST.to_uppercase(),
            &DIGEST[7..],
        ] {
            assert!(!is_id(not), "{not}");
        }
        assert_eq!(Reference::tagged("web"), "web:latest");
        assert_eq!(
            Reference::tagged("127.0.0.1:5000/web"),
            "127.0.0.1:5000/web:latest"
        );
        assert_eq!(Reference::tagged("web:1"), "web:1");
        let by_digest = format!("web@{DIGEST}");
        assert_eq!(Reference::tagged(&by_digest), by_digest);
    }

    #[test]
    fn a_name_docker_would_refuse_says_why() {
        for (image, why) in [
            ("", "empty"),
            ("Nginx", "component \"Nginx\""),
            ("nginx:1.27:x", "component \"nginx:1.27\""),
            ("nginx:-1", "invalid tag"),
            ("nginx@sha256:abc", "invalid digest"),
            ("web..app", "component"),
            ("host:99999/web", "invalid registry port"),
            ("host:+80/web", "invalid registry port"),
            ("Host.io/Web", "component \"Web\""),
            ("a/-b", "component \"-b\""),
        ] {
            let error = Reference::parse(image).unwrap_err();
            assert!(error.contains(why), "{image}: {error}");
        }
        let id = "0123456789abcdef".repeat(4);
        assert!(Reference::parse(&id).unwrap_err().contains("image id"));
        let r = Reference::parse("Registry/web").unwrap();
        assert_eq!(
            (r.registry, r.path),
            (Some("Registry"), "web"),
            "a capital: a host"
        );
        let sha512 = format!("web@sha512:{}", "ab".repeat(64));
        assert!(Reference::parse(&sha512).is_ok());
        let long = "a".repeat(MAX_NAME + 1);
        assert!(Reference::parse(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn the_default_policy_is_always_for_latest_or_no_tag_and_if_not_present_otherwise() {
        assert_eq!(policy("nginx", None), PullPolicy::Always);
        assert_eq!(policy("nginx:latest", None), PullPolicy::Always);
        assert_eq!(policy("nginx:1.27", None), PullPolicy::IfNotPresent);
        assert_eq!(
            policy(&format!("nginx@{DIGEST}"), None),
            PullPolicy::IfNotPresent
        );
        assert_eq!(policy("nginx", Some(PullPolicy::Never)), PullPolicy::Never);
        assert_eq!(policy("Bad Name", None), PullPolicy::IfNotPresent);
    }
}
