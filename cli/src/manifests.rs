//! Reading manifest files for `apply` and `delete`: from a path or standard input, parsed and
//! validated, warnings printed, errors prefixed with the file's name.

use anyhow::{Context, anyhow};
use std::io::Read;
use std::path::Path;
use weeble_crdt::{Object, parse_manifests};

/// The text of a manifest file (`-` is standard input, read once and kept).
pub fn read_text(file: &Path) -> anyhow::Result<String> {
    static STDIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if file == Path::new("-") {
        if let Some(text) = STDIN.get() {
            return Ok(text.clone());
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(STDIN.get_or_init(|| text).clone());
    }
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Reads and validates a manifest file (`-` is standard input), printing its warnings.
pub fn read(file: &Path) -> anyhow::Result<Vec<Object>> {
    let text = read_text(file)?;
    let name = if file == Path::new("-") {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    let parsed = parse_manifests(&text).map_err(|e| {
        let lines: Vec<String> = e.errors.iter().map(|l| format!("{name}: {l}")).collect();
        anyhow!("{} rejected, nothing applied:\n{}", name, lines.join("\n"))
    })?;
    for warning in &parsed.warnings {
        eprintln!("Warning: {name}: {warning}");
    }
    Ok(parsed.objects)
}

/// kubectl's way of naming an object: `deployment.apps/nginx`, `service/nginx-service`.
pub fn resource_name(object: &Object) -> String {
    let meta = object.meta();
    let kind = object.kind().kubectl_name();
    if meta.namespace == weeble_crdt::DEFAULT_NAMESPACE {
        format!("{kind}/{}", meta.name)
    } else {
        format!("{kind}/{} -n {}", meta.name, meta.namespace)
    }
}

/// `apply --dry-run`: validates without any server and prints what would be applied.
pub fn dry_run(file: &Path) -> anyhow::Result<()> {
    for object in read(file)? {
        println!("{} valid (dry run)", resource_name(&object));
        if let Object::Deployment(d) = &object {
            let images: Vec<&str> = d
                .spec
                .template
                .containers
                .iter()
                .map(|c| c.image.as_str())
                .collect();
            println!(
                "  replicas: {}, images: {}",
                d.spec.replicas,
                images.join(", ")
            );
        }
    }
    Ok(())
}
