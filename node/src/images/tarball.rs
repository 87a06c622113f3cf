//! Image tars as `docker save` writes them, and the check a tar fetched from a peer passes
//! before its engine loads it: it holds one image, the config its manifest names hashes to
//! the id the fetch was for (an image's id is its config's sha256, on every engine), and it
//! names nothing (the engine would take a tar's names, moving its own). The engine checks
//! the layers against the config as it loads them.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

/// Entries of a tar hashed at most while checking it (Docker's hold a few per layer).
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

/// Whether the tar read from `tar` is image `id` and nothing else (see the module's
/// documentation); why not, if it is not.
pub fn check(tar: impl Read, id: &str) -> Result<(), String> {
    let mut archive = tar::Archive::new(tar);
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut metadata: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| format!("not a tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a tar: {e}"))?;
        if !entry.header().entry_type().is_file() || entry.size() > MAX_META {
            continue;
        }
        if hashes.len() >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} small files"));
        }
        let path = entry
            .path()
            .map_err(|e| format!("an unreadable name: {e}"))?;
        let path = path.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {path}: {e}"))?;
        hashes.insert(path.clone(), image_id(&bytes));
        if matches!(
            path.as_str(),
            "manifest.json" | "repositories" | "index.json"
        ) {
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
    match hashes.get(&image.config) {
        Some(config) if config == id => Ok(()),
        Some(config) => Err(format!("its config is {config}, not {id}")),
        None => Err(format!("its config {} is not in it", image.config)),
    }
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
}
