//! Image tars as `docker save` writes them, and the check a tar fetched from a peer passes
//! before its engine loads it: it holds one image, the config its manifest names hashes to
//! the id the fetch was for (an image's id is its config's sha256, on every engine), and it
//! names nothing (the engine would take a tar's names, moving its own). The engine checks
//! the layers against the config as it loads them.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// Entries of a tar at most (Docker's hold a few per layer).
const MAX_ENTRIES: usize = 16_384;
/// The most bytes of a metadata file read (manifests, configs and indexes are kilobytes).
const MAX_META: u64 = 4 * 1024 * 1024;

/// One image of `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Manifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

/// The sha256 of `bytes`, as an image id is written (`sha256:` and hex).
pub fn image_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files a loader reads for what a tar holds and names.
const METADATA: [&str; 3] = ["manifest.json", "repositories", "index.json"];

/// Whether the tar read from `tar` is image `id` and nothing else (see the module's
/// documentation); why not, if it is not. The tar is read as a loader reads it: names are
/// taken without a leading `./`, and one that climbs out (`..`, or absolute), two entries of
/// one name (a loader keeps the last), a metadata file that is not a plain file or is over
/// [`MAX_META`], are refused rather than passed over.
pub fn check(tar: impl Read, id: &str) -> Result<(), String> {
    let mut archive = tar::Archive::new(tar);
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut metadata: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| format!("not a tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("an unreadable name: {e}"))?;
        let path = clean(&path.to_string_lossy())?;
        if names.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        if !names.insert(path.clone()) {
            return Err(format!("two entries named {path}"));
        }
        let file = entry.header().entry_type().is_file();
        let meta = METADATA.contains(&path.as_str());
        if meta && (!file || entry.size() > MAX_META) {
            return Err(format!("{path} is not a file of at most {MAX_META} bytes"));
        }
        if !file || entry.size() > MAX_META {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {path}: {e}"))?;
        hashes.insert(path.clone(), image_id(&bytes));
        if meta {
            metadata.insert(path, bytes);
        }
    }
    let manifest = metadata
        .get("manifest.json")
        .ok_or("no manifest.json in it")?;
    let manifest: Vec<Manifest> =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest.json: {e}"))?;
    let [image] = manifest.as_slice() else {
        return Err(format!("{} images in it, not one", manifest.len()));
    };
    if image
        .repo_tags
        .as_ref()
        .is_some_and(|tags| !tags.is_empty())
    {
        return Err("it names its image (RepoTags in manifest.json)".into());
    }
    if let Some(repositories) = metadata.get("repositories")
        && !is_empty_object(repositories)
    {
        return Err("it names its image (a repositories file)".into());
    }
    if let Some(index) = metadata.get("index.json")
        && names_an_image(index)
    {
        return Err("it names its image (annotations in index.json)".into());
    }
    match hashes.get(&clean(&image.config)?) {
        Some(config) if config == id => Ok(()),
        Some(config) => Err(format!("its config is {config}, not {id}")),
        None => Err(format!("its config {} is not in it", image.config)),
    }
}

/// A name in a tar as a loader takes it: without `./` parts, or trailing `/`; refused if it
/// climbs out of the tar (`..`) or is absolute.
fn clean(name: &str) -> Result<String, String> {
    if name.starts_with('/') {
        return Err(format!("an absolute name {name:?}"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("a name that climbs out {name:?}")),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn is_empty_object(json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json)
        .is_ok_and(|m| m.is_empty())
}

/// Whether an OCI `index.json` names an image (its manifests' `*.name` annotations).
fn names_an_image(json: &[u8]) -> bool {
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(json) else {
        return true;
    };
    let manifests = index["manifests"].as_array().into_iter().flatten();
    manifests
        .filter_map(|m| m["annotations"].as_object())
        .any(|a| a.keys().any(|k| k.ends_with(".name")))
}

/// A tar as `docker save` writes one for an image of this config and no layers, with these
/// names: what the in-memory runtime saves, and what the tests tamper with.
pub fn write(config: &[u8], names: &[&str]) -> Vec<u8> {
    let id = image_id(config);
    let config_path = format!("{}.json", &id["sha256:".len()..]);
    let manifest = serde_json::json!([{
        "Config": config_path,
        "RepoTags": if names.is_empty() { serde_json::Value::Null } else { names.into() },
        "Layers": [],
    }]);
    let mut tar = tar::Builder::new(Vec::new());
    let manifest = manifest.to_string();
    for (path, bytes) in [
        (config_path.as_str(), config),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes)
            .expect("writing to memory");
    }
    tar.into_inner().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tar_of_the_image_asked_for_passes() {
        let config = br#"{"architecture":"amd64"}"#;
        let id = image_id(config);
        assert_eq!(check(&write(config, &[])[..], &id), Ok(()));
    }

    #[test]
    fn another_image_a_name_or_no_tar_is_refused_with_why() {
        let config = br#"{"architecture":"amd64"}"#;
        let id = image_id(config);
        let other = write(br#"{"architecture":"arm64"}"#, &[]);
        let why = check(&other[..], &id).unwrap_err();
        assert!(
            why.contains("its config is sha256:") && why.contains(&id),
            "{why}"
        );
        let named = write(config, &["nginx:1.27"]);
        let why = check(&named[..], &id).unwrap_err();
        assert!(why.contains("RepoTags"), "{why}");
        let why = check(&b"not a tar at all"[..], &id).unwrap_err();
        assert!(
            why.contains("not a tar") || why.contains("no manifest"),
            "{why}"
        );
    }

    #[test]
    fn a_tar_without_its_config_is_refused() {
        let config = br#"{"architecture":"amd64"}"#;
        let id = image_id(config);
        let mut tar = tar::Builder::new(Vec::new());
        let manifest = format!(r#"[{{"Config":"{}.json","Layers":[]}}]"#, &id[7..]);
        let mut header = tar::Header::new_ustar();
        header.set_size(manifest.len() as u64);
        header.set_cksum();
        tar.append_data(&mut header, "manifest.json", manifest.as_bytes())
            .unwrap();
        let tar = tar.into_inner().unwrap();
        let why = check(&tar[..], &id).unwrap_err();
        assert!(why.contains("is not in it"), "{why}");
    }

    /// A tar of `entries` (name, bytes), each a plain file.
    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, path, *bytes).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn a_second_manifest_a_climbing_name_or_an_oversized_one_is_refused() {
        let config = br#"{"architecture":"amd64"}"#;
        let id = image_id(config);
        let config_path = format!("{}.json", &id[7..]);
        let clean_manifest = format!(r#"[{{"Config":"{config_path}","RepoTags":null}}]"#);
        let named = format!(
            r#"[{{"Config":"{config_path}","RepoTags":null}},{{"Config":"{config_path}","RepoTags":["postgres:15"]}}]"#
        );
        // The loader keeps the last manifest.json; `./manifest.json` is the same file.
        for second in ["manifest.json", "./manifest.json"] {
            let tar = tar_of(&[
                (&config_path, config),
                ("manifest.json", clean_manifest.as_bytes()),
                (second, named.as_bytes()),
            ]);
            let why = check(&tar[..], &id).unwrap_err();
            assert!(why.contains("two entries named manifest.json"), "{why}");
        }
        let padded = format!("{named}{}", " ".repeat(MAX_META as usize));
        let tar = tar_of(&[(&config_path, config), ("manifest.json", padded.as_bytes())]);
        let why = check(&tar[..], &id).unwrap_err();
        assert!(
            why.contains("manifest.json is not a file of at most"),
            "{why}"
        );
        // A config found by a name that climbs out is not this tar's.
        let climbing = format!(r#"[{{"Config":"../{config_path}","RepoTags":null}}]"#);
        let tar = tar_of(&[
            (&config_path, config),
            ("manifest.json", climbing.as_bytes()),
        ]);
        let why = check(&tar[..], &id).unwrap_err();
        assert!(why.contains("climbs out"), "{why}");
        // The clean tar passes, its config named with `./` too.
        let dotted = format!(r#"[{{"Config":"./{config_path}","RepoTags":null}}]"#);
        let tar = tar_of(&[(&config_path, config), ("manifest.json", dotted.as_bytes())]);
        assert_eq!(check(&tar[..], &id), Ok(()));
    }
}
