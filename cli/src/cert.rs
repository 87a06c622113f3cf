//! `weeble cert new`: a certificate for a node's API (`--api-tls-cert`, `--api-tls-key`),
//! signed by the cluster's own CA, which the first run makes in the same folder (`ca.crt`,
//! for the CLI's `--certificate-authority`; `ca.key`, kept to sign the next node's). And
//! `weeble config view`: a kubeconfig-style file for the node the CLI talks to.

use crate::client::Client;
use anyhow::{Context, anyhow};
use base64::Engine;
use clap::Args;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use weeble_core::objects::{ANNOTATION_API, List, Node};

#[derive(Args)]
pub struct NewArgs {
    /// The node the certificate is for: the files NAME.crt and NAME.key.
    #[arg(long)]
    name: String,
    /// A host name or IP address clients reach the API at (repeat for each): the
    /// certificate is good for these only.
    #[arg(long = "host", required = true)]
    hosts: Vec<String>,
    /// Where the CA and the certificates are kept.
    #[arg(long, default_value = "weeble-certs")]
    dir: PathBuf,
    /// How long the certificate is good for, in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
}

/// The CA's name: its certificate is made again from its key and this name when it signs.
const CA_NAME: &str = "weeble cluster CA";

pub fn new(args: NewArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("--dir {}", args.dir.display()))?;
    let (ca, ca_key) = ca(&args.dir)?;
    let mut params = CertificateParams::new(args.hosts.clone())
        .map_err(|e| anyhow!("--host {:?}: {e}", args.hosts))?;
    params
        .distinguished_name
        .push(DnType::CommonName, &args.name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let (from, until) = (date_in(0), date_in(args.days));
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(until.0, until.1, until.2);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let crt = args.dir.join(format!("{}.crt", args.name));
    write(&crt, cert.pem().as_bytes(), 0o644)?;
    let key_path = args.dir.join(format!("{}.key", args.name));
    write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    println!(
        "{} and {} (good for {} until {}-{:02}-{:02}), signed by {}.\n\
         Start the node with --api-tls-cert {} --api-tls-key {}; the CLI with \
         --server https://HOST:PORT --certificate-authority {}",
        crt.display(),
        key_path.display(),
        args.hosts.join(", "),
        until.0,
        until.1,
        until.2,
        args.dir.join("ca.crt").display(),
        crt.display(),
        key_path.display(),
        args.dir.join("ca.crt").display(),
    );
    Ok(())
}

/// The cluster's CA in `dir`: made (ca.crt, ca.key) if there is none yet.
fn ca(dir: &Path) -> anyhow::Result<(Certificate, KeyPair)> {
    let key_path = dir.join("ca.key");
    let existing = std::fs::read_to_string(&key_path).ok();
    let key = match &existing {
        Some(pem) => KeyPair::from_pem(pem).map_err(|e| anyhow!("{}: {e}", key_path.display()))?,
        None => KeyPair::generate()?,
    };
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (from, until) = (date_in(0), date_in(10 * 365));
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(until.0, until.1, until.2);
    let cert = params.self_signed(&key)?;
    if existing.is_none() {
        write(&dir.join("ca.crt"), cert.pem().as_bytes(), 0o644)?;
        write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    }
    Ok((cert, key))
}

/// The UTC date `days` from now: (year, month, day).
fn date_in(days: u32) -> (i32, u8, u8) {
    let ms = weeble_node::clock::now_ms() + i64::from(days) * 86_400_000;
    let date = weeble_core::time::rfc3339(ms);
    let part = |range: std::ops::Range<usize>| date[range].parse().expect("an RFC 3339 date");
    (part(0..4), part(5..7) as u8, part(8..10) as u8)
}

/// Writes `bytes` to a new file `path` with `mode`; an existing file is an error, not
/// overwritten (a key in use would be lost).
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{}: not written (it exists already?)", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// `weeble config view`: the server, its CA and the token the CLI was given, as a
/// kubeconfig, named after the node that answers there (asked, so the file is known to work).
pub fn view(
    client: &Client,
    server: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> anyhow::Result<()> {
    let nodes: List<Node> = client.list("/api/v1/nodes")?;
    let host = server
        .split("://")
        .nth(1)
        .unwrap_or(server)
        .trim_end_matches('/');
    let name = nodes
        .items
        .iter()
        .find(|n| n.metadata.annotation(ANNOTATION_API) == Some(host))
        .map_or("weeble".to_string(), |n| n.metadata.name.clone());
    let mut cluster = serde_json::json!({ "server": server });
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("{}", ca.display()))?;
        let data = base64::engine::general_purpose::STANDARD.encode(pem);
        cluster["certificate-authority-data"] = data.into();
    }
    let user = match token {
        Some(token) => serde_json::json!({ "token": token }),
        None => serde_json::json!({}),
    };
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": cluster }],
        "users": [{ "name": name, "user": user }],
        "contexts": [{
            "name": name,
            "context": { "cluster": name, "user": name, "namespace": "default" },
        }],
        "current-context": name,
    });
    print!("{}", serde_yaml_ng::to_string(&config)?);
    Ok(())
}
