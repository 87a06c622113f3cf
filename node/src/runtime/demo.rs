//! The demo workload, made on this machine because no registry is reachable: a tiny HTTP
//! server inside the `weeble` binary, and the image `weeble-demo:v1` that runs it.
//!
//! The image holds only the `weeble` binary at `/weeble` and the shared libraries `ldd` lists
//! for it, at their usual paths. Its command line is
//! `/weeble serve-demo --listen 0.0.0.0:80`, so the binary must answer `serve-demo` by calling
//! [`serve_demo`]. Every reply is `hello from <hostname>: <MESSAGE>`.

use super::RuntimeError;
use super::docker::Docker;
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The demo image, as tagged on the host.
pub const DEMO_IMAGE: &str = "weeble-demo:v1";
/// The environment variable whose value the demo server puts in every reply.
pub const MESSAGE_ENV: &str = "MESSAGE";
/// The demo image's settings, as `docker import --change` instructions.
const DEMO_IMAGE_CHANGES: [&str; 2] = [
    r#"CMD ["/weeble","serve-demo","--listen","0.0.0.0:80"]"#,
    "EXPOSE 80/tcp",
];

/// The demo server's health check path.
pub const HEALTH_PATH: &str = "/healthz";
/// While this file exists in its container, the demo server's health check fails.
pub const UNHEALTHY_FILE: &str = "/unhealthy";
/// Connections the demo server answers at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;
/// The most of a request the demo server reads before answering.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a failed `accept` (out of file descriptors, say) before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves the demo reply on `addr` until the task is dropped; fails only if `addr` cannot
/// be bound. The hostname (from `/etc/hostname`, else `$HOSTNAME`) and `$MESSAGE` are read
/// once, at start.
pub async fn serve_demo(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let message = std::env::var(MESSAGE_ENV).unwrap_or_default();
    serve(listener, reply_body(&hostname(), &message)).await
}

/// Builds [`DEMO_IMAGE`] from `weeble_binary` and the libraries it links, with nothing from a
/// registry, and returns the image id. Rebuilding replaces the previous image.
pub async fn build_demo_image(
    docker: &Docker,
    weeble_binary: &Path,
) -> Result<String, RuntimeError> {
    let binary = weeble_binary.to_owned();
    let tarball = tokio::task::spawn_blocking(move || demo_rootfs(&binary))
        .await
        .map_err(|e| RuntimeError::Failed(format!("assembling the demo image failed: {e}")))??;
    docker
        .import_rootfs(tarball, DEMO_IMAGE, &DEMO_IMAGE_CHANGES)
        .await
}

/// This machine's name, as the demo server reports it.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// The demo server's reply to every request.
fn reply_body(hostname: &str, message: &str) -> String {
    format!("hello from {hostname}: {message}\n")
}

/// The whole HTTP response: the head, and `body` unless the request was a `HEAD`.
fn response(body: &str, head_only: bool) -> String {
    response_with("200 OK", body, head_only)
}

fn response_with(status: &str, body: &str, head_only: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    )
}

/// The answer to `GET /healthz`: 200, or 503 while [`UNHEALTHY_FILE`] exists (so a test can
/// fail a pod's probes on purpose, by copying that file into its container).
fn health(head_only: bool) -> String {
    if std::path::Path::new(UNHEALTHY_FILE).exists() {
        response_with("503 Service Unavailable", "unhealthy\n", head_only)
    } else {
        response("ok\n", head_only)
    }
}

/// Answers every connection on `listener` with `body`, each in its own task.
async fn serve(listener: TcpListener, body: String) -> io::Result<()> {
    let body: Arc<str> = body.into();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "demo server: accepting a connection failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let body = Arc::clone(&body);
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &body).await {
                tracing::debug!(error = %e, "demo server: connection failed");
            }
            drop(permit);
        });
    }
}

/// Reads one request head (bounded in size and time) and answers it.
async fn answer(mut stream: TcpStream, body: &str) -> io::Result<()> {
    let Ok(head) = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(()); // too slow: hang up
    };
    let head = head?;
    if head.is_empty() {
        return Ok(()); // closed without asking anything
    }
    log_request(&stream, &head);
    let head_only = head.starts_with(b"HEAD ");
    let path = head.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let reply = if path == HEALTH_PATH.as_bytes() {
        health(head_only)
    } else {
        response(body, head_only)
    };
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// One line per request on stdout, as a web server's access log: `weeble logs` shows it.
fn log_request(stream: &TcpStream, head: &[u8]) {
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let request = String::from_utf8_lossy(first);
    match stream.peer_addr() {
        Ok(peer) => println!("{peer} \"{}\"", request.trim_end()),
        Err(_) => println!("- \"{}\"", request.trim_end()),
    }
}

/// The request up to its blank line, or its first [`MAX_REQUEST_HEAD`] bytes, or what came
/// before the client stopped sending.
async fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0; 1024];
    while head.len() < MAX_REQUEST_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(head)
}

/// The demo image's root filesystem as a tarball: `binary` at `/weeble`, plus every library
/// `ldd` lists for it (symlinks followed) at the path `ldd` gives.
fn demo_rootfs(binary: &Path) -> Result<Vec<u8>, RuntimeError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| RuntimeError::Failed(format!("reading {}: {e}", path.display())))
    };
    let mut tarball = Tarball::default();
    tarball.add_file(Path::new("/weeble"), &read(binary)?, 0o755)?;
    for library in linked_libraries(binary)? {
        let mode = std::fs::metadata(&library)
            .map_err(|e| RuntimeError::Failed(format!("reading {}: {e}", library.display())))?
            .permissions()
            .mode();
        tarball.add_file(&library, &read(&library)?, mode & 0o7777)?;
    }
    Ok(tarball.finish())
}

/// The shared libraries and dynamic loader `binary` needs, by running `ldd`; none for a
/// static binary.
fn linked_libraries(binary: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| {
            RuntimeError::Failed(format!(
                "running ldd on {} (is it installed?): {e}",
                binary.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            Ok(Vec::new())
        } else {
            Err(RuntimeError::Failed(format!(
                "ldd {} failed: {}",
                binary.display(),
                stderr.trim()
            )))
        };
    }
    parse_ldd(&stdout).map_err(|library| {
        RuntimeError::Failed(format!(
            "{} needs {library}, which is not on this machine",
            binary.display()
        ))
    })
}

/// The absolute paths in `ldd` output (`libc.so.6 => /lib/.../libc.so.6 (0x...)` and the
/// loader's bare `/lib64/ld-linux-x86-64.so.2 (0x...)`); the vDSO has none. A library ldd
/// could not find is the error.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in output.lines() {
        let target = line.split_once("=>").map_or(line, |(_, target)| target);
        match target.split_whitespace().next() {
            Some(path) if path.starts_with('/') => paths.push(PathBuf::from(path)),
            Some("not") => return Err(line.split("=>").next().unwrap_or(line).trim().to_owned()),
            _ => {}
        }
    }
    Ok(paths)
}

/// A ustar archive of regular files, built in memory; parent directories are added as they
/// are first needed.
#[derive(Default)]
struct Tarball {
    bytes: Vec<u8>,
    directories: BTreeSet<PathBuf>,
}

/// The tar format's block size.
const BLOCK: usize = 512;

impl Tarball {
    /// Adds a file at absolute `path` in the archive.
    fn add_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), RuntimeError> {
        let mut parents: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|dir| dir.parent().is_some())
            .collect();
        parents.reverse();
        for dir in parents {
            if self.directories.insert(dir.to_owned()) {
                self.push_header(dir, 0o755, 0, b'5')?;
            }
        }
        self.push_header(path, mode, contents.len(), b'0')?;
        self.bytes.extend_from_slice(contents);
        self.bytes
            .resize(self.bytes.len().next_multiple_of(BLOCK), 0);
        Ok(())
    }

    /// The archive, with its end marker.
    fn finish(mut self) -> Vec<u8> {
        self.bytes.resize(self.bytes.len() + 2 * BLOCK, 0);
        self.bytes
    }

    /// Appends the header block of an entry of type `kind` (`b'0'` file, `b'5'` directory).
    fn push_header(
        &mut self,
        path: &Path,
        mode: u32,
        size: usize,
        kind: u8,
    ) -> Result<(), RuntimeError> {
        let unfit = || {
            RuntimeError::Failed(format!(
                "{} cannot be stored in a tar header",
                path.display()
            ))
        };
        if size >= 1 << 33 {
            return Err(unfit()); // more than 11 octal digits
        }
        let name = path.to_str().ok_or_else(unfit)?.trim_start_matches('/');
        // Names over 100 bytes are split at a `/` into a prefix (up to 155) and the rest.
        let (prefix, name) = if name.len() <= 100 {
            ("", name)
        } else {
            let split = name
                .match_indices('/')
                .map(|(at, _)| at)
                .find(|&at| at <= 155 && (1..=100).contains(&(name.len() - at - 1)))
                .ok_or_else(unfit)?;
            (&name[..split], &name[split + 1..])
        };
        let mut header = [0u8; BLOCK];
        let mut put = |at: usize, value: &[u8]| header[at..at + value.len()].copy_from_slice(value);
        put(0, name.as_bytes());
        put(100, format!("{mode:07o}\0").as_bytes());
        put(108, b"0000000\0"); // uid
        put(116, b"0000000\0"); // gid
        put(124, format!("{size:011o}\0").as_bytes());
        put(136, b"00000000000\0"); // mtime
        put(148, b"        "); // checksum, counted as spaces
        put(156, &[kind]);
        put(257, b"ustar\0");
        put(263, b"00");
        put(345, prefix.as_bytes());
        let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
        self.bytes.extend_from_slice(&header);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_names_the_host_and_the_message() {
        assert_eq!(
            reply_body("web-0", "hi there"),
            "hello from web-0: hi there\n"
        );
        assert_eq!(reply_body("web-0", ""), "hello from web-0: \n");
    }

    #[test]
    fn head_requests_get_the_head_only() {
        let get = response("abc\n", false);
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get.contains("\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"));
        assert!(get.ends_with("\r\n\r\nabc\n"));
        let head = response("abc\n", true);
        assert!(head.contains("Content-Length: 4\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn reads_library_paths_from_ldd() {
        let output = "\tlinux-vdso.so.1 (0x00007ffc1d5f2000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f51c5186000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f51c4a1e000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f51c51b9000)\n";
        assert_eq!(
            parse_ldd(output).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n"),
            Err("libfoo.so.1".to_owned())
        );
        assert_eq!(parse_ldd("\tstatically linked\n"), Ok(vec![]));
    }

    /// The entries of a tarball: (name with prefix, type, size), checking every checksum.
    fn entries(tar: &[u8]) -> Vec<(String, u8, usize)> {
        let field = |header: &[u8], at: usize, len: usize| {
            let raw = &header[at..at + len];
            String::from_utf8(raw.iter().take_while(|&&b| b != 0).copied().collect()).unwrap()
        };
        let mut found = Vec::new();
        let mut at = 0;
        while tar[at..at + BLOCK].iter().any(|&b| b != 0) {
            let header = &tar[at..at + BLOCK];
            let stored = u32::from_str_radix(field(header, 148, 6).trim(), 8).unwrap();
            let counted: u32 = header
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u32::from(b)
                    }
                })
                .sum();
            assert_eq!(stored, counted, "checksum of entry at {at}");
            let size = usize::from_str_radix(&field(header, 124, 11), 8).unwrap();
            let prefix = field(header, 345, 155);
            let name = field(header, 0, 100);
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            found.push((full, header[156], size));
            at += BLOCK + size.next_multiple_of(BLOCK);
        }
        assert_eq!(tar.len(), at + 2 * BLOCK, "two zero blocks end the archive");
        found
    }

    #[test]
    fn tarballs_hold_files_under_their_directories() {
        let mut tar = Tarball::default();
        tar.add_file(Path::new("/weeble"), b"binary", 0o755)
            .unwrap();
        tar.add_file(Path::new("/lib/x/libc.so.6"), &[7; 600], 0o644)
            .unwrap();
        tar.add_file(Path::new("/lib/x/libm.so.6"), b"m", 0o644)
            .unwrap();
        let (d, e, f) = ("d".repeat(60), "e".repeat(60), "f".repeat(90));
        let long = format!("/{d}/{e}/{f}");
        tar.add_file(Path::new(&long), b"", 0o644).unwrap();
        let found = entries(&tar.finish());
        let expected = [
            ("weeble".to_owned(), b'0', 6),
            ("lib".to_owned(), b'5', 0),
            ("lib/x".to_owned(), b'5', 0),
            ("lib/x/libc.so.6".to_owned(), b'0', 600),
            ("lib/x/libm.so.6".to_owned(), b'0', 1),
            (d.clone(), b'5', 0),
            (format!("{d}/{e}"), b'5', 0),
            (long.trim_start_matches('/').to_owned(), b'0', 0),
        ];
        assert_eq!(found, expected);

        let too_long = format!("/{}", "x".repeat(300));
        assert!(
            Tarball::default()
                .add_file(Path::new(&too_long), b"", 0o644)
                .is_err()
        );
    }

    /// Sends `request`, returns everything the server answered.
    async fn exchange(addr: SocketAddr, request: String) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }

    #[tokio::test]
    async fn serves_many_clients_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = reply_body("pod-a", "from the test");
        let server = tokio::spawn(serve(listener, body.clone()));

        // A client that connects and leaves without a word does not disturb the others.
        drop(TcpStream::connect(addr).await.unwrap());
        let clients: Vec<_> = (0..300)
            .map(|i| {
                tokio::spawn(exchange(
                    addr,
                    format!("GET /path/{i} HTTP/1.1\r\nHost: x\r\n\r\n"),
                ))
            })
            .collect();
        for client in clients {
            let reply = tokio::time::timeout(Duration::from_secs(20), client)
                .await
                .expect("the server answers within 20 s")
                .unwrap();
            assert_eq!(reply, response(&body, false));
        }
        let head = exchange(addr, "HEAD / HTTP/1.1\r\n\r\n".into()).await;
        assert_eq!(head, response(&body, true));
        server.abort();
    }

    #[tokio::test]
    async fn serve_demo_answers_on_the_given_address() {
        // Let the system choose a free port, then hand it to serve_demo.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let server = tokio::spawn(serve_demo(addr));
        let reply = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match TcpStream::connect(addr).await {
                    Ok(_) => break exchange(addr, "GET / HTTP/1.0\r\n\r\n".into()).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .expect("serve_demo listens within 20 s");
        let body = reply.split_once("\r\n\r\n").unwrap().1;
        let expected = reply_body(&hostname(), &std::env::var(MESSAGE_ENV).unwrap_or_default());
        assert_eq!(body, expected);
        server.abort();
    }
}
