//! A pod's logs and its removal, done on the node that runs it: for this node's API, and for a
//! peer's. A client may ask any node, with its token, and be answered there: the node it
//! asked forwards the request over the cluster's own connections ([`PodRequest`]) and streams
//! the answer back, so no client has to follow a redirect to another host (Python's client
//! drops its token there) or reach the pod's node at all.
//!
//! A log goes to a peer a part at a time ([`Sessions`]): the first answer opens a session, the
//! asking node asks for the next part until the last; a part waits at most [`WAIT`] for the
//! container to write (a followed log that is quiet answers with no bytes), well within the
//! transport's 5 s request timeout, and [`LINGER`] for more once it did (a busy log goes ten
//! parts a second, not a part a line). Sessions are bounded ([`MAX_SESSIONS`]) and one nobody
//! asks for in [`IDLE`] (its client went away) is closed.

use crate::runtime::{
    ContainerRuntime, LABEL_CONTAINER, LABEL_DEPLOYMENT, LABEL_POD, LogOptions, LogStream, Observed,
};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};
use weeble_core::wire::{MAX_LOG_PART, PodAnswer, PodLog, PodRef, PodRequest};

/// The log sessions peers may hold open on this node at once.
pub const MAX_SESSIONS: usize = 64;

/// How long a part waits for the container to write before it is answered with none.
pub const WAIT: Duration = Duration::from_secs(2);

/// How long a part waits for more once the container wrote something: a busy log goes in
/// parts of what came in this time, about ten a second, not one per line.
pub const LINGER: Duration = Duration::from_millis(100);

/// How long a session stays open with nobody asking for its next part.
pub const IDLE: Duration = Duration::from_secs(30);

/// Why a pod's logs or removal were not done: the HTTP status and message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn runtime(e: impl std::fmt::Display) -> Refusal {
        Refusal::new(500, e.to_string())
    }
}

impl From<Refusal> for PodAnswer {
    fn from(r: Refusal) -> PodAnswer {
        PodAnswer::Refused {
            status: r.status,
            message: r.message,
        }
    }
}

/// The containers `node` runs for `pod`.
pub async fn containers<R: ContainerRuntime>(
    runtime: &R,
    node: &str,
    pod: &PodRef,
) -> Result<Vec<Observed>, Refusal> {
    let containers = runtime.list(node).await.map_err(Refusal::runtime)?;
    Ok(containers
        .into_iter()
        .filter(|c| {
            c.labels.get(LABEL_POD) == Some(&pod.name)
                && c.labels.get(LABEL_DEPLOYMENT) == pod.deployment.as_ref()
        })
        .collect())
}

/// The output of one of `pod`'s containers on `node`: the one `log.container` names (its
/// latest run), or the pod's only one.
pub async fn log<R: ContainerRuntime>(
    runtime: &R,
    node: &str,
    pod: &PodRef,
    log: &PodLog,
) -> Result<LogStream, Refusal> {
    let containers = containers(runtime, node, pod).await?;
    let mut by_name: BTreeMap<&str, &Observed> = BTreeMap::new();
    for c in &containers {
        let container = c.labels.get(LABEL_CONTAINER).map_or("", String::as_str);
        let held = by_name.entry(container).or_insert(c);
        if c.started_at_ms > held.started_at_ms {
            *held = c;
        }
    }
    let names = || by_name.keys().copied().collect::<Vec<_>>().join(" ");
    let name = &pod.name;
    let chosen = match (&log.container, by_name.len()) {
        (Some(wanted), _) => by_name.get(wanted.as_str()).ok_or_else(|| {
            Refusal::new(
                400,
                format!(
                    "container {} is not valid for pod {name}: choose one of [{}]",
                    weeble_crdt::echo::echo(wanted),
                    names()
                ),
            )
        })?,
        (None, 1) => by_name.values().next().expect("one container"),
        (None, 0) => {
            return Err(Refusal::new(
                400,
                format!("pod {name} has no container on node {node} yet"),
            ));
        }
        (None, _) => {
            return Err(Refusal::new(
                400,
                format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names()
                ),
            ));
        }
    };
    let options = LogOptions {
        tail: log.tail_lines,
        follow: log.follow,
        since_s: log
            .since_seconds
            .filter(|&s| s > 0)
            .map(|s| (crate::clock::now_ms() / 1000).saturating_sub(s)),
        timestamps: log.timestamps,
    };
    Ok(runtime.logs(&chosen.id, &options))
}

/// Removes `pod`'s containers on `node` (its deployment makes them again, as a new pod).
pub async fn delete<R: ContainerRuntime>(
    runtime: &R,
    node: &str,
    pod: &PodRef,
) -> Result<(), Refusal> {
    for c in containers(runtime, node, pod).await? {
        runtime.remove(&c.id).await.map_err(Refusal::runtime)?;
    }
    Ok(())
}

/// The log sessions this node serves its peers, and what it answers a [`PodRequest`] with.
/// Clones share the sessions.
#[derive(Clone)]
pub struct Sessions<R> {
    runtime: R,
    node: String,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    by_id: BTreeMap<u64, Session>,
    next: u64,
}

struct Session {
    /// The peer that opened it: no other may read it.
    peer: String,
    stream: Arc<tokio::sync::Mutex<Parts>>,
    asked: Instant,
}

impl<R: ContainerRuntime> Sessions<R> {
    pub fn new(runtime: R, node: String) -> Sessions<R> {
        Sessions {
            runtime,
            node,
            open: Arc::default(),
        }
    }

    /// Does what peer `from` asks for a client of its API, answering within [`WAIT`] of the
    /// engine's answers: a part of a log has what came by then, and a removal still under way
    /// (a loaded engine) is answered as begun, as Kubernetes answers a pod's `DELETE` before
    /// its containers stop (its failure is logged).
    pub async fn answer(&self, from: &str, request: PodRequest) -> PodAnswer {
        let until = Instant::now() + WAIT;
        let answer = match request {
            PodRequest::Log { pod, log } => self.open(from, &pod, &log, until).await,
            PodRequest::More { session } => self.next(from, session, until).await,
            PodRequest::Delete { pod } => {
                let (runtime, node, from) =
                    (self.runtime.clone(), self.node.clone(), from.to_owned());
                let removal = tokio::spawn(async move {
                    let deleted = delete(&runtime, &node, &pod).await;
                    match &deleted {
                        Ok(()) => {
                            debug!(peer = %from, pod = %pod.name, "pod deleted for a peer's client")
                        }
                        Err(r) => {
                            warn!(peer = %from, pod = %pod.name, why = %r.message, "a pod's deletion for a peer's client failed")
                        }
                    }
                    deleted
                });
                match tokio::time::timeout_at(until, removal).await {
                    Ok(Ok(deleted)) => deleted.map(|()| PodAnswer::Deleted),
                    Ok(Err(failed)) => Err(Refusal::runtime(failed)),
                    Err(_) => Ok(PodAnswer::Deleted),
                }
            }
        };
        answer.unwrap_or_else(PodAnswer::from)
    }

    /// Opens a session on the log asked for, and answers with its first part.
    async fn open(
        &self,
        from: &str,
        pod: &PodRef,
        asked: &PodLog,
        until: Instant,
    ) -> Result<PodAnswer, Refusal> {
        self.room(from)?;
        let stream = log(&self.runtime, &self.node, pod, asked).await?;
        self.hold(from, stream, until).await
    }

    /// Refused if [`MAX_SESSIONS`] are open.
    fn room(&self, from: &str) -> Result<(), Refusal> {
        if self.count() >= MAX_SESSIONS {
            warn!(peer = %from, max = MAX_SESSIONS, "a peer's log session refused: too many open");
            return Err(Refusal::new(
                429,
                format!(
                    "node {} streams {MAX_SESSIONS} logs to other nodes' clients already: \
                     try again later",
                    self.node
                ),
            ));
        }
        Ok(())
    }

    /// Keeps `stream` for peer `from` in a new session, and answers with its first part.
    async fn hold(
        &self,
        from: &str,
        stream: LogStream,
        until: Instant,
    ) -> Result<PodAnswer, Refusal> {
        self.room(from)?;
        let stream = Arc::new(tokio::sync::Mutex::new(in_parts(stream)));
        let id = {
            let mut open = self.open.lock().expect("sessions");
            open.next += 1;
            let id = open.next;
            let session = Session {
                peer: from.to_owned(),
                stream,
                asked: Instant::now(),
            };
            open.by_id.insert(id, session);
            id
        };
        self.close_when_idle(id);
        self.next(from, id, until).await
    }

    /// The next part of session `id`, for the peer that opened it: what came by `until`.
    async fn next(&self, from: &str, id: u64, until: Instant) -> Result<PodAnswer, Refusal> {
        let stream = {
            let mut open = self.open.lock().expect("sessions");
            let session = open.by_id.get_mut(&id).filter(|s| s.peer == from);
            let session = session.ok_or_else(|| {
                Refusal::new(
                    404,
                    format!("log session {id} is not open on node {}", self.node),
                )
            })?;
            session.asked = Instant::now();
            session.stream.clone()
        };
        let read = match tokio::time::timeout_at(until, stream.lock()).await {
            Ok(mut stream) => part(&mut stream, until).await,
            // Another request for it holds it (one the asking node gave up on).
            Err(_) => Ok((Vec::new(), false)),
        };
        let ended = read.as_ref().map_or(true, |&(_, end)| end);
        if ended {
            self.open.lock().expect("sessions").by_id.remove(&id);
        }
        let (bytes, end) = read?;
        Ok(PodAnswer::Log {
            session: id,
            bytes,
            end,
        })
    }

    fn count(&self) -> usize {
        self.open.lock().expect("sessions").by_id.len()
    }

    /// Closes session `id` once nobody asked for it in [`IDLE`].
    fn close_when_idle(&self, id: u64) {
        let open = Arc::downgrade(&self.open);
        tokio::spawn(async move {
            let mut at = Instant::now() + IDLE;
            loop {
                tokio::time::sleep_until(at).await;
                let Some(open) = open.upgrade() else { return };
                let mut open = open.lock().expect("sessions");
                let Some(session) = open.by_id.get(&id) else {
                    return;
                };
                if session.asked.elapsed() >= IDLE {
                    debug!(session = id, "a log session nobody asks for is closed");
                    open.by_id.remove(&id);
                    return;
                }
                at = session.asked + IDLE;
            }
        });
    }
}

/// A log in chunks of [`MAX_LOG_PART`] at most, whose next chunk can be looked at.
type Parts = futures::stream::Peekable<LogStream>;

/// `stream` in chunks of [`MAX_LOG_PART`] at most.
fn in_parts(stream: LogStream) -> Parts {
    stream
        .flat_map(|chunk| {
            let pieces = match chunk {
                Ok(bytes) => (0..bytes.len())
                    .step_by(MAX_LOG_PART)
                    .map(|at| Ok(bytes.slice(at..bytes.len().min(at + MAX_LOG_PART))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        })
        .boxed()
        .peekable()
}

/// What `stream` has by `until` (it waits no longer for its first bytes) and in the
/// [`LINGER`] after its first bytes, up to about [`MAX_LOG_PART`]; and whether it ended. The
/// engine's error is the answer when no bytes come before it (else the next part's).
async fn part(stream: &mut Parts, until: Instant) -> Result<(Vec<u8>, bool), Refusal> {
    /// What comes next.
    enum Next {
        Bytes,
        Error,
        End,
    }
    let mut bytes = Vec::new();
    let deadline = tokio::time::sleep_until(until);
    tokio::pin!(deadline);
    while bytes.len() < MAX_LOG_PART {
        let next = tokio::select! {
            next = std::pin::Pin::new(&mut *stream).peek() => match next {
                Some(Ok(_)) => Next::Bytes,
                Some(Err(_)) => Next::Error,
                None => Next::End,
            },
            _ = &mut deadline => return Ok((bytes, false)),
        };
        match next {
            Next::End => return Ok((bytes, true)),
            Next::Error if !bytes.is_empty() => return Ok((bytes, false)),
            Next::Bytes | Next::Error => match stream.next().await.expect("a chunk peeked at") {
                Ok(chunk) => {
                    if bytes.is_empty() {
                        deadline.as_mut().reset(until.min(Instant::now() + LINGER));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Err(e) => return Err(Refusal::runtime(e)),
            },
        }
    }
    Ok((bytes, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeError;
    use crate::runtime::memory::MemoryRuntime;

    fn sessions() -> Sessions<MemoryRuntime> {
        Sessions::new(MemoryRuntime::default(), "n1".into())
    }

    fn log_of(chunks: Vec<Result<bytes::Bytes, RuntimeError>>) -> LogStream {
        futures::stream::iter(chunks).boxed()
    }

    /// A session of peer `p` on `stream`, and its first part.
    async fn hold(
        sessions: &Sessions<MemoryRuntime>,
        stream: LogStream,
    ) -> Result<PodAnswer, Refusal> {
        sessions.hold("p", stream, Instant::now() + WAIT).await
    }

    /// The next part of `session` for `from`: its bytes and whether it was the last.
    async fn more(sessions: &Sessions<MemoryRuntime>, from: &str, session: u64) -> PodAnswer {
        sessions.answer(from, PodRequest::More { session }).await
    }

    /// Every part of a session on `stream`, to the last.
    async fn parts(sessions: &Sessions<MemoryRuntime>, stream: LogStream) -> Vec<Vec<u8>> {
        let mut answer = hold(sessions, stream).await.unwrap();
        let mut parts = Vec::new();
        loop {
            let PodAnswer::Log {
                session,
                bytes,
                end,
            } = answer
            else {
                panic!("a part: {answer:?}");
            };
            parts.push(bytes);
            if end {
                return parts;
            }
            answer = more(sessions, "p", session).await;
        }
    }

    #[tokio::test]
    async fn a_long_log_goes_in_parts_in_order_and_its_session_closes_after_the_last() {
        let sessions = sessions();
        let text: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
        let stream = log_of(vec![Ok(bytes::Bytes::from(text.clone()))]);
        let parts = parts(&sessions, stream).await;
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(parts.concat(), text);
        assert!(sizes.iter().all(|&n| n <= MAX_LOG_PART), "{sizes:?}");
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert_eq!(sessions.count(), 0, "the last part closes the session");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_log_answers_with_nothing_and_only_its_peer_reads_it_until_nobody_asks() {
        let sessions = sessions();
        let quiet = futures::stream::pending().boxed();
        let answer = hold(&sessions, quiet).await.unwrap();
        let PodAnswer::Log {
            session,
            bytes,
            end: false,
        } = answer
        else {
            panic!("a part that is not the last: {answer:?}");
        };
        assert!(bytes.is_empty());
        let other = more(&sessions, "q", session).await;
        assert!(
            matches!(other, PodAnswer::Refused { status: 404, .. }),
            "{other:?}"
        );
        tokio::time::sleep(IDLE / 2).await;
        let asked = more(&sessions, "p", session).await;
        assert!(
            matches!(asked, PodAnswer::Log { end: false, .. }),
            "{asked:?}"
        );
        tokio::time::sleep(IDLE / 2 + WAIT).await;
        assert_eq!(sessions.count(), 1, "asked less than IDLE ago");
        tokio::time::sleep(IDLE).await;
        assert_eq!(sessions.count(), 0, "nobody asked for IDLE");
        let gone = more(&sessions, "p", session).await;
        assert!(
            matches!(gone, PodAnswer::Refused { status: 404, .. }),
            "{gone:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_log_goes_in_parts_of_what_it_wrote_in_the_linger() {
        let sessions = sessions();
        // A line every 10 ms, 50 of them.
        let busy = futures::stream::iter(0..50)
            .then(|i| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(bytes::Bytes::from(format!("line {i}\n")))
            })
            .boxed();
        let parts = parts(&sessions, busy).await;
        let lines: Vec<usize> = parts
            .iter()
            .map(|p| p.split(|&b| b == b'\n').count() - 1)
            .collect();
        assert_eq!(lines.iter().sum::<usize>(), 50, "{lines:?}");
        assert!(lines.len() <= 7, "parts of about ten lines: {lines:?}");
        assert!(lines[0] >= 9, "{lines:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_are_bounded_and_an_engine_error_is_the_answer() {
        let sessions = sessions();
        // Each writes a line at once, then nothing: no time passes, no session goes idle.
        let talking = || {
            futures::stream::once(async { Ok(bytes::Bytes::from_static(b"up\n")) })
                .chain(futures::stream::pending())
                .boxed()
        };
        for _ in 0..MAX_SESSIONS {
            hold(&sessions, talking()).await.unwrap();
        }
        let refused = hold(&sessions, talking()).await.unwrap_err();
        assert_eq!(refused.status, 429, "{refused:?}");
        assert!(refused.message.contains("streams 64 logs"), "{refused:?}");

        let sessions = self::sessions();
        let failed = log_of(vec![Err(RuntimeError::NotFound("c1".into()))]);
        let refused = hold(&sessions, failed).await.unwrap_err();
        assert_eq!(refused.status, 500);
        assert!(refused.message.contains("c1"), "{refused:?}");
        assert_eq!(sessions.count(), 0);
        // Bytes before an error go first; the error is the next part's answer.
        let stream = log_of(vec![
            Ok(bytes::Bytes::from_static(b"one\n")),
            Err(RuntimeError::NotFound("c1".into())),
        ]);
        let first = hold(&sessions, stream).await.unwrap();
        let PodAnswer::Log {
            session,
            bytes,
            end: false,
        } = first
        else {
            panic!("{first:?}");
        };
        assert_eq!(bytes, b"one\n");
        let next = more(&sessions, "p", session).await;
        assert!(
            matches!(next, PodAnswer::Refused { status: 500, .. }),
            "{next:?}"
        );
    }
}
