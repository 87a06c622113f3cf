//! The API against what a browser, a careless client or a hostile one sends: one real
//! `weeble node` per test (127.0.0.121-128), spoken to over raw HTTP/1.1 sockets so that every
//! header and every stall is the test's choice.

mod support;

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// A running node on `ip` with `extra` flags, its API answering.
fn node(tag: &str, ip: &str, extra: &[&str]) -> Option<Cluster> {
    if !docker_available() {
        return None;
    }
    let mut cluster = Cluster::new(tag);
    cluster.start(tag, ip, extra);
    let addr = format!("{ip}:17070");
    wait_for("the API", Duration::from_secs(30), || {
        try_http_get(&addr, "/healthz").ok()
    });
    Some(cluster)
}

/// An answer: its status code, headers (lower case) and body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            let start: String = self.body.chars().take(300).collect();
            panic!("{e}: {start}")
        })
    }

    /// Asserts a Kubernetes `Status` failure of `code` and `reason`; returns its message.
    fn status(&self, code: u16, reason: &str) -> String {
        assert_eq!(self.code, code, "{}{}", self.head, self.body);
        assert!(
            self.head.contains("content-type: application/json"),
            "{}",
            self.head
        );
        let status = self.json();
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["code"], code, "{status}");
        assert_eq!(status["reason"], reason, "{status}");
        status["message"].as_str().unwrap().to_string()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a new
/// connection with `Connection: close`, and reads the whole answer.
fn request(addr: &str, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The node may answer (413) before it has read all of a large body.
    let _ = stream.write_all(body);
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset && !reply.is_empty() => {}
        Err(e) => panic!("reading the answer to {head}: {e}"),
    }
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP answer");
    let head = head.to_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        code: head[9..12].parse().unwrap(),
        head,
        body,
    }
}

/// The body of a chunked answer: each chunk is its size in hex, CRLF, its bytes, CRLF.
fn dechunk(mut chunked: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, rest) = chunked.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size, 16).expect("a hex size");
        if size == 0 {
            return body;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: idle
spec:
  replicas: 0
  selector:
    matchLabels: {app: idle}
  template:
    metadata:
      labels: {app: idle}
    spec:
      containers:
      - name: idle
        image: weeble-demo:v1
";

fn apply_head(ip: &str, extra: &str) -> String {
    format!("POST /apis/weeble.io/v1/apply HTTP/1.1\r\nHost: {ip}:17070{extra}")
}

fn deployments(addr: &str, host: &str) -> usize {
    let answer = request(
        addr,
        &format!("GET /apis/apps/v1/deployments HTTP/1.1\r\nHost: {host}"),
        b"",
    );
    assert_eq!(answer.code, 200, "{}", answer.body);
    answer.json()["items"].as_array().unwrap().len()
}

#[test]
fn a_browser_page_can_neither_write_nor_rebind_to_a_node() {
    let ip = "127.0.0.121";
    let Some(cluster) = node(
        "api-browser",
        ip,
        &[
            "--api-allow-origin",
            "http://dashboard.test:8080",
            "--api-allow-host",
            "weeble.test",
        ],
    ) else {
        return;
    };
    let addr = format!("{ip}:17070");
    let body = DEPLOYMENT.as_bytes();
    // What an HTML form can send, and a write with no type at all.
    for content_type in [
        "\r\nContent-Type: text/plain",
        "\r\nContent-Type: application/x-www-form-urlencoded",
        "\r\nContent-Type: multipart/form-data; boundary=x",
        "",
    ] {
        let message =
            request(&addr, &apply_head(ip, content_type), body).status(415, "UnsupportedMediaType");
        assert!(message.contains("application/yaml"), "{message}");
    }
    // A page of another origin, even with the right type.
    let message = request(
        &addr,
        &apply_head(
            ip,
            "\r\nContent-Type: application/yaml\r\nOrigin: http://evil.test",
        ),
        body,
    )
    .status(403, "Forbidden");
    assert!(message.contains("--api-allow-origin"), "{message}");
    // DNS rebinding: the page's own name, now pointing at the node.
    let message = request(
        &addr,
        "GET /apis/apps/v1/deployments HTTP/1.1\r\nHost: evil.test:17070",
        b"",
    )
    .status(403, "Forbidden");
    assert!(message.contains("--api-allow-host"), "{message}");
    assert_eq!(deployments(&addr, ip), 0, "nothing was applied");

    // The allowed origin, on an allowed host name, may write.
    let answer = request(
        &addr,
        "POST /apis/weeble.io/v1/apply HTTP/1.1\r\nHost: weeble.test:17070\r\n\
         Content-Type: application/x-yaml\r\nOrigin: http://dashboard.test:8080",
        body,
    );
    assert_eq!(answer.code, 200, "{}", answer.body);
    assert_eq!(deployments(&addr, "localhost:17070"), 1);
    assert_eq!(deployments(&addr, "api-browser"), 1, "the node's own name");

    // The CLI sends the right types: apply as YAML, scale as JSON.
    let server = cluster.server(0);
    let file = cluster.dir.join("idle.yaml");
    std::fs::write(&file, DEPLOYMENT.replace("name: idle", "name: idle2")).unwrap();
    let out = weeble(&["--server", &server, "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = weeble(&[
        "--server",
        &server,
        "scale",
        "deployment",
        "idle2",
        "--replicas",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(deployments(&addr, ip), 2);
}

#[test]
fn every_error_is_a_status_and_quotes_little_of_its_input() {
    let ip = "127.0.0.122";
    let Some(_cluster) = node("api-errors", ip, &[]) else {
        return;
    };
    let addr = format!("{ip}:17070");
    let host = format!("\r\nHost: {ip}");
    let message =
        request(&addr, &format!("GET /no/such/path HTTP/1.1{host}"), b"").status(404, "NotFound");
    assert!(message.contains("/no/such/path"), "{message}");
    request(&addr, &format!("DELETE /api/v1/nodes HTTP/1.1{host}"), b"")
        .status(405, "MethodNotAllowed");
    let yaml = "\r\nContent-Type: application/yaml";
    request(&addr, &apply_head(ip, yaml), &vec![b'#'; 3 << 20])
        .status(413, "RequestEntityTooLarge");
    request(&addr, &apply_head(ip, yaml), b"kind: \xff\xfe\n").status(400, "BadRequest");
    request(
        &addr,
        &format!(
            "PUT /apis/apps/v1/namespaces/default/deployments/x/scale HTTP/1.1{host}\
             \r\nContent-Type: application/json"
        ),
        format!(
            "{{\"spec\": {{\"replicas\": \"{}\"}}}}",
            "9".repeat(1 << 20)
        )
        .as_bytes(),
    )
    .status(400, "BadRequest");
    // A name of a megabyte: the 422 quotes 64 characters of it.
    let long = DEPLOYMENT.replacen(
        "name: idle\n",
        &format!("name: {}\n", "x".repeat(1 << 20)),
        1,
    );
    let answer = request(&addr, &apply_head(ip, yaml), long.as_bytes());
    let message = answer.status(422, "Invalid");
    assert!(answer.body.len() < 4096, "{} bytes", answer.body.len());
    assert!(message.contains("… (1048576 bytes)"), "{message}");
    // Each cause names its field, as Kubernetes' do (kubectl prints them).
    let status: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let causes = status["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        causes.iter().any(|c| c["field"] == "metadata.name"),
        "{status}"
    );
    // A byte order mark is no error.
    let answer = request(
        &addr,
        &apply_head(ip, yaml),
        format!("\u{feff}{DEPLOYMENT}").as_bytes(),
    );
    assert_eq!(answer.code, 200, "{}", answer.body);
}

/// How long until the node closes `stream` (a read gives end of file or a reset), reading
/// at most `limit`; each `tick`, `poke` may write to it.
fn closed_after(
    stream: &mut TcpStream,
    limit: Duration,
    mut poke: impl FnMut(&mut TcpStream),
) -> Duration {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                poke(stream)
            }
            Err(_) => return start.elapsed(),
        }
    }
    panic!("the node kept the connection open for {limit:?}");
}

#[test]
fn connections_are_capped_and_stalled_ones_closed() {
    let ip = "127.0.0.123";
    let Some(cluster) = node(
        "api-limits",
        ip,
        &[
            "--api-max-connections",
            "8",
            "--api-header-timeout",
            "1s",
            "--api-idle-timeout",
            "2s",
        ],
    ) else {
        return;
    };
    let addr = format!("{ip}:17070");
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", cluster.nodes[0].child.id())).unwrap();
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        files[3], files[4],
        "soft limit raised to the hard one: {limits}"
    );

    // Eight connections that send nothing take every place; a ninth is refused at once. The
    // eight count once the node has accepted them, which a loaded machine can put off past
    // the wait: the ninth then takes a place and is closed by the header timeout, answered
    // nothing. Such a try proves nothing either way, and is made again (three times at most).
    let mut tries = Vec::new();
    let (mut idle, reply) = loop {
        let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut ninth = TcpStream::connect(&addr).unwrap();
        ninth
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reply = String::new();
        let _ = ninth.read_to_string(&mut reply);
        if !reply.is_empty() || tries.len() == 2 {
            break (idle, reply);
        }
        tries.push(reply);
        // The eight close at the header timeout: the next try finds every place free.
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(
        reply.starts_with("HTTP/1.1 503"),
        "{reply:?} after {tries:?}"
    );
    assert!(reply.contains("\"kind\":\"Status\""), "{reply}");
    // The header timeout closes them, and the node serves again.
    for stream in &mut idle {
        let after = closed_after(stream, Duration::from_secs(5), |_| {});
        assert!(after < Duration::from_secs(3), "{after:?}");
    }
    assert!(http_get(&addr, "/healthz").ends_with("ok"));
    let log = json_log(&cluster, "api-limits");
    assert!(
        log.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("API: connection refused"))),
        "the refusal is logged"
    );

    // Headers sent a line at a time, forever: closed after the header timeout.
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(slow, "GET /healthz HTTP/1.1\r\nHost: {ip}\r\n").unwrap();
    let after = closed_after(&mut slow, Duration::from_secs(10), |s| {
        let _ = s.write_all(b"X-Slow: 1\r\n");
    });
    assert!(after < Duration::from_secs(3), "{after:?}");

    // A kept-alive connection after its answer: closed after the header timeout too.
    let mut kept = TcpStream::connect(&addr).unwrap();
    write!(kept, "GET /healthz HTTP/1.1\r\nHost: {ip}\r\n\r\n").unwrap();
    let after = closed_after(&mut kept, Duration::from_secs(10), |_| {});
    assert!(
        (Duration::from_millis(800)..Duration::from_secs(3)).contains(&after),
        "{after:?}"
    );

    // A body that stops coming: closed after the idle timeout.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    write!(
        stalled,
        "POST /apis/weeble.io/v1/apply HTTP/1.1\r\nHost: {ip}\r\n\
         Content-Type: application/yaml\r\nContent-Length: 1000\r\n\r\nkind: Depl"
    )
    .unwrap();
    let after = closed_after(&mut stalled, Duration::from_secs(10), |_| {});
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&after),
        "{after:?}"
    );
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[test]
fn pod_reads_cost_what_they_return_not_every_replica() {
    let ip = "127.0.0.124";
    let Some(cluster) = node("api-pods", ip, &[]) else {
        return;
    };
    let addr = format!("{ip}:17070");
    let get = |path: &str| request(&addr, &format!("GET {path} HTTP/1.1\r\nHost: {ip}"), b"");
    // 30,000 replicas placed nowhere: 16 MB of pods as JSON.
    let manifest = DEPLOYMENT
        .replace("replicas: 0", "replicas: 30000")
        .replace(
            "    spec:\n",
            "    spec:\n      nodeSelector: {nowhere: \"true\"}\n",
        );
    let answer = request(
        &addr,
        &apply_head(ip, "\r\nContent-Type: application/yaml"),
        manifest.as_bytes(),
    );
    assert_eq!(answer.code, 200, "{}", answer.body);

    // Pages of 500 that follow each other, the last with no token.
    let first = wait_for("the pods in the view", Duration::from_secs(10), || {
        let page = get("/api/v1/pods?limit=500").json();
        (page["items"].as_array().unwrap().len() == 500).then_some(page)
    });
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&first).len(), 500);
    assert_eq!(names(&first)[499], "idle-499");
    let token = first["metadata"]["continue"].as_str().unwrap();
    let second = get(&format!(
        "/api/v1/namespaces/default/pods?limit=500&continue={token}"
    ))
    .json();
    assert_eq!(names(&second)[0], "idle-500");
    let last = get("/api/v1/pods?limit=500&continue=default/idle/29499").json();
    assert_eq!(names(&last).len(), 500);
    assert_eq!(last["metadata"]["continue"], Value::Null, "nothing follows");
    assert!(
        last["metadata"]["resourceVersion"].is_string(),
        "{}",
        last["metadata"]
    );
    for bad in ["nonsense", "default/idle/x", "default/idle", "a%20b/c/1"] {
        let message =
            get(&format!("/api/v1/pods?limit=5&continue={bad}")).status(400, "BadRequest");
        assert!(message.contains("continue token"), "{message}");
    }
    get("/api/v1/pods?limit=many").status(400, "BadRequest");

    // One pod and one deployment, found directly.
    let start = Instant::now();
    let pod = get("/api/v1/namespaces/default/pods/idle-29999").json();
    assert_eq!(pod["status"]["reason"], "Unschedulable", "{pod}");
    let deployment = get("/apis/apps/v1/namespaces/default/deployments/idle").json();
    assert_eq!(deployment["status"]["replicas"], 30000);
    assert_eq!(deployment["status"]["readyReplicas"], 0);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    for missing in ["idle-30000", "idle-01", "idle-", "idle", "other-1"] {
        get(&format!("/api/v1/namespaces/default/pods/{missing}")).status(404, "NotFound");
    }

    // The whole list at once, streamed: the node's memory hardly moves.
    let pid = cluster.nodes[0].child.id();
    let before = rss_mib(pid);
    let all = get("/api/v1/pods");
    assert_eq!(all.code, 200);
    assert!(all.body.len() > 10 << 20, "{} bytes", all.body.len());
    assert_eq!(names(&all.json()).len(), 30000);
    let after = rss_mib(pid);
    assert!(
        after < before + 100,
        "RSS {before} MiB before, {after} MiB after"
    );

    // The CLI reads the list in pages (one answer would pass its 10 MB limit).
    let out = weeble(&["--server", &cluster.server(0), "get", "pods", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 30000);
}

/// `GET /apis/apps/v1/deployments` with `token` (if any): the answer.
fn list_with(addr: &str, token: Option<&str>) -> Answer {
    let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
    request(
        addr,
        &format!("GET /apis/apps/v1/deployments HTTP/1.1\r\nHost: {addr}{auth}"),
        b"",
    )
}

/// A token file of `lines` for test `tag`, in a directory of its own (removed by the caller).
fn token_file(tag: &str, lines: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("weeble-{tag}-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, lines).unwrap();
    (dir, file)
}

#[test]
fn without_a_token_the_api_says_401_and_a_read_only_one_cannot_write() {
    let _serial = serial();
    let ip = "127.0.0.125";
    let addr = format!("{ip}:17070");
    let (admin, reader) = ("admin-0123456789abcdef", "reader-0123456789abcdef");
    let lines = format!("{admin},alice\n{reader},grafana,read-only\n");
    let (dir, file) = token_file("auth", &lines);
    let Some(cluster) = node("tok", ip, &["--api-token-file", file.to_str().unwrap()]) else {
        return;
    };
    let post = |extra: &str| {
        let head = apply_head(ip, &format!("\r\nContent-Type: application/yaml{extra}"));
        request(&addr, &head, DEPLOYMENT.as_bytes())
    };
    // No token, a wrong one, a read-only one writing: refused, and nothing changes.
    let unauthorized = post("");
    let message = unauthorized.status(401, "Unauthorized");
    assert!(message.contains("needs a token"), "{message}");
    assert!(
        unauthorized.head.contains("www-authenticate: bearer"),
        "{}",
        unauthorized.head
    );
    post("\r\nAuthorization: Bearer wrong-token-0123456789").status(401, "Unauthorized");
    let forbidden = post(&format!("\r\nAuthorization: Bearer {reader}"));
    assert!(
        forbidden
            .status(403, "Forbidden")
            .contains("\"grafana\" is read-only")
    );
    list_with(&addr, None).status(401, "Unauthorized");
    let listed = list_with(&addr, Some(reader));
    assert_eq!(listed.code, 200, "a read-only token reads");
    assert_eq!(
        listed.json()["items"].as_array().unwrap().len(),
        0,
        "nothing was written"
    );
    assert!(
        try_http_get(&addr, "/healthz").unwrap().ends_with("ok"),
        "/healthz is open"
    );
    // The full token writes; the CLI sends it with --token or WEEBLE_TOKEN.
    let written = post(&format!("\r\nAuthorization: Bearer {admin}"));
    assert_eq!(written.code, 200, "{}", written.body);
    let server = format!("http://{addr}");
    let denied = weeble(&["--server", &server, "get", "deployments"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied.stderr).contains("needs a token"),
        "{}",
        text(&denied.stderr)
    );
    let by_flag = weeble(&["--server", &server, "--token", reader, "get", "deployments"]);
    assert!(
        text(&by_flag.stdout).contains("idle"),
        "{}",
        text(&by_flag.stderr)
    );
    let by_env = std::process::Command::new(WEEBLE)
        .args([
            "--server",
            &server,
            "scale",
            "deployment",
            "idle",
            "--replicas",
            "0",
        ])
        .env("WEEBLE_TOKEN", admin)
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));
    // The log names the token of each write, never the token itself.
    let log = std::fs::read_to_string(cluster.log_path("tok")).unwrap();
    let writes = messages(&json_log(&cluster, "tok"), "write").len();
    assert_eq!(
        writes, 2,
        "the apply and the scale, each logged with its token's name"
    );
    assert!(log.contains("\"token\":\"alice\"") && !log.contains(admin) && !log.contains(reader));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_will_not_serve_its_api_beyond_loopback_without_a_token() {
    let dir = std::env::temp_dir().join(format!("weeble-open-{}", std::process::id()));
    let out = weeble(&[
        "node",
        "--name",
        "open",
        "--data-dir",
        dir.to_str().unwrap(),
        "--p2p",
        "127.0.0.126:17946",
        "--api",
        "0.0.0.0:17999",
    ]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("--api 0.0.0.0:17999") && said.contains("--api-token-file"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_caller_past_its_rate_gets_429_and_the_others_do_not() {
    let _serial = serial();
    let ip = "127.0.0.127";
    let addr = format!("{ip}:17070");
    let (flood, calm) = ("flood-0123456789abcdef", "calm-0123456789abcdefg");
    let (dir, file) = token_file("rate", &format!("{flood},flooder\n{calm},calm\n"));
    let flags = [
        "--api-token-file",
        file.to_str().unwrap(),
        "--api-rate-limit",
        "5",
    ];
    let Some(cluster) = node("rate", ip, &flags) else {
        return;
    };
    // A burst of 10 (twice the rate) passes; the rest of 40 at once are refused.
    let codes: Vec<u16> = (0..40)
        .map(|_| list_with(&addr, Some(flood)).code)
        .collect();
    let refused = codes.iter().filter(|&&c| c == 429).count();
    assert!((25..=30).contains(&refused), "{codes:?}");
    let limited = list_with(&addr, Some(flood));
    assert!(
        limited
            .status(429, "TooManyRequests")
            .contains("flooder asks faster")
    );
    assert!(limited.head.contains("retry-after: 1"), "{}", limited.head);
    // A write past the rate changes nothing.
    let head = apply_head(
        ip,
        &format!("\r\nContent-Type: application/yaml\r\nAuthorization: Bearer {flood}"),
    );
    request(&addr, &head, DEPLOYMENT.as_bytes()).status(429, "TooManyRequests");
    // Another caller is not slowed, and sees that nothing was written.
    let listed = list_with(&addr, Some(calm));
    assert_eq!(listed.code, 200);
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 0);
    // The flood is logged once for the period, not once per request.
    let log = json_log(&cluster, "rate");
    let warned = messages(
        &log,
        "over the API's rate limit: refusing its requests (429) for now; logged once every 10 s",
    );
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["fields"]["caller"], "flooder");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `weeble cert new` makes a CA and a certificate for the node; the node serves its API over
/// TLS with it; the CLI reaches it with the CA (`--certificate-authority`), and not without
/// it, nor over plain HTTP; `weeble config view` prints a kubeconfig that kubectl reads, with
/// the server, the CA and the token.
#[test]
fn the_api_serves_tls_with_a_certificate_weeble_makes_and_the_cli_checks_it() {
    if !docker_available() {
        return;
    }
    let ip = "127.0.0.128";
    let mut cluster = Cluster::new("tls");
    let mut args = cluster.tls_args("tls", ip);
    let certs = cluster.dir.join("certs");
    let again = weeble(&[
        "cert",
        "new",
        "--dir",
        certs.to_str().unwrap(),
        "--name",
        "tls",
        "--host",
        ip,
    ]);
    assert!(
        !again.status.success(),
        "an existing key is never overwritten"
    );
    let token = "tls-token-0123456789abcdef";
    let tokens = cluster.dir.join("tokens");
    std::fs::write(&tokens, format!("{token},ops\n")).unwrap();
    args.extend(["--api-token-file".into(), tokens.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.start("tls", ip, &args);
    let ca = certs.join("ca.crt");
    let https = format!("https://{ip}:17070");
    let ca = ca.to_str().unwrap();
    let cli = |server: &str, ca: Option<&str>, args: &[&str]| {
        let mut all = vec!["--server", server, "--token", token];
        if let Some(ca) = ca {
            all.extend(["--certificate-authority", ca]);
        }
        all.extend(args);
        weeble(&all)
    };
    wait_for("the API over TLS", Duration::from_secs(30), || {
        cli(&https, Some(ca), &["get", "nodes"])
            .status
            .success()
            .then_some(())
    });
    let untrusted = cli(&https, None, &["get", "nodes"]);
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("invalid peer certificate"),
        "{}",
        text(&untrusted.stderr)
    );
    let plain = cli(&format!("http://{ip}:17070"), None, &["get", "nodes"]);
    assert!(!plain.status.success(), "no plain HTTP on a TLS port");
    let view = cli(&https, Some(ca), &["config", "view"]);
    assert!(view.status.success(), "{}", text(&view.stderr));
    let kubeconfig = cluster.dir.join("kubeconfig");
    std::fs::write(&kubeconfig, &view.stdout).unwrap();
    let read = |path: &str| {
        let out = std::process::Command::new("kubectl")
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "config",
                "view",
            ])
            .args(["--raw", "-o", &format!("jsonpath={path}")])
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(read("{.clusters[0].cluster.server}"), https);
    assert_eq!(read("{.users[0].user.token}"), token);
    assert_eq!(read("{.current-context}"), "tls", "named after the node");
    let ca_data = read("{.clusters[0].cluster.certificate-authority-data}");
    let ca_pem = std::fs::read_to_string(ca).unwrap();
    let decoded = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(ca_data.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(text(&decoded.stdout), ca_pem, "the CA, whole");
    // kubectl calls the node with it: the token over TLS, checked against the CA.
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(args)
            .output()
            .expect("kubectl runs")
    };
    let nodes = kubectl(&["get", "nodes", "-o", "name"]);
    assert!(nodes.status.success(), "{}", text(&nodes.stderr));
    assert_eq!(text(&nodes.stdout).trim(), "node/tls");
    let refused = kubectl(&["get", "nodes", "--token", "not-a-token-0123456789"]);
    assert!(!refused.status.success(), "a wrong token is refused");
}
