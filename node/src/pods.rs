//! A pod's logs and its removal, done on the node that runs it: for this node's API, and for a
//! peer's. A client may ask any node, with its token, and be answered there: the node it
//! asked forwards the request over the cluster's own connections ([`PodRequest`]) and streams
//! the answer back, so no client has to follow a redirect to another host (Python's client
//! drops its token there) or reach the pod's node at all.
//!
//! A log goes to a peer a part at a time ([`Sessions`]): the first answer opens a session, the
//! asking node asks for the next part by its number until the last ([`rest`]), and for the
//! same part again if its answer did not come (the pod's node keeps its last part), so no byte
//! is lost or sent twice. A part waits at most [`WAIT`] for the container to write (a
//! followed log that is quiet answers with no bytes), well within the transport's 5 s request
//! timeout, and [`LINGER`] for more once it did (a busy log goes ten parts a second, not a
//! part a line). Sessions are bounded ([`MAX_SESSIONS`], [`MAX_SESSIONS_PER_PEER`]) and one
//! nobody asks for in [`IDLE`] (its client went away) is closed.

use crate::runtime::{
    ContainerRuntime, LABEL_CONTAINER, LABEL_DEPLOYMENT, LABEL_POD, LogOptions, LogStream,
    Observed, RuntimeError,
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

/// The log sessions one peer may be reading at once.
pub const MAX_SESSIONS_PER_PEER: usize = 32;

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
    let since_seconds = log.since_seconds.filter(|&s| s > 0);
    let options = LogOptions {
        tail: log.tail_lines,
        follow: log.follow,
        since_s: since_seconds
            .map(|s| (crate::clock::now_ms() / 1000).saturating_sub(s))
            .or(log.since_time),
        timestamps: log.timestamps,
    };
    let stream = joined(runtime.logs(&chosen.id, &options));
    Ok(match log.limit_bytes {
        Some(limit) => limited(stream, limit),
        None => stream,
    })
}

/// How long a log's bytes wait for more before they go to the client (at most [`PIECE`] of
/// them): Docker gives a line a chunk, each after the last, and a client sent a write a line
/// reads 20,000 lines in twice the time (bench/logs.py).
const JOIN: Duration = Duration::from_millis(5);

/// `stream` in pieces of what came within [`JOIN`] of their first bytes.
fn joined(stream: LogStream) -> LogStream {
    futures::stream::unfold(Some(in_parts(stream)), |parts| async move {
        let mut parts = parts?;
        let forever = Instant::now() + Duration::from_secs(365 * 86_400);
        match read(&mut parts, forever, JOIN, PIECE).await {
            Ok((bytes, true)) if bytes.is_empty() => None,
            Ok((bytes, end)) => Some((Ok(bytes::Bytes::from(bytes)), (!end).then_some(parts))),
            Err(failed) => Some((Err(failed), None)),
        }
    })
    .boxed()
}

/// The first `limit` bytes of `stream`.
fn limited(stream: LogStream, limit: u64) -> LogStream {
    stream
        .scan(limit, |left, chunk| {
            let chunk = chunk.map(|mut bytes| {
                bytes.truncate(bytes.len().min(*left as usize));
                *left -= bytes.len() as u64;
                bytes
            });
            let more = chunk.as_ref().map_or(true, |b| !b.is_empty());
            futures::future::ready(more.then_some(chunk))
        })
        .boxed()
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
    open: Arc<Mutex<BTreeMap<u64, Session>>>,
}

struct Session {
    /// The peer that opened it: no other may read it.
    peer: String,
    reader: Arc<tokio::sync::Mutex<Reader>>,
    asked: Instant,
    /// Its last part was read: it is kept only to answer that part again.
    ended: bool,
}

/// A session's log, and the last part it gave (its number, bytes, whether it was the last).
struct Reader {
    parts: Parts,
    last: Option<(u64, Vec<u8>, bool)>,
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
            PodRequest::More { session, part } => self.part(from, session, part, until).await,
            PodRequest::Delete { pod } => self.delete(from, pod, until).await,
        };
        answer.unwrap_or_else(PodAnswer::from)
    }

    async fn delete(&self, from: &str, pod: PodRef, until: Instant) -> Result<PodAnswer, Refusal> {
        let (runtime, node, from) = (self.runtime.clone(), self.node.clone(), from.to_owned());
        let removal = tokio::spawn(async move {
            let deleted = delete(&runtime, &node, &pod).await;
            match &deleted {
                Ok(()) => debug!(peer = %from, pod = %pod.name, "pod deleted for a peer's client"),
                Err(r) => warn!(
                    peer = %from, pod = %pod.name, why = %r.message,
                    "a pod's deletion for a peer's client failed"
                ),
            }
            deleted
        });
        match tokio::time::timeout_at(until, removal).await {
            Ok(Ok(deleted)) => deleted.map(|()| PodAnswer::Deleted),
            Ok(Err(failed)) => Err(Refusal::runtime(failed)),
            Err(_) => Ok(PodAnswer::Deleted),
        }
    }

    /// Opens a session on the log asked for, and answers with its first part.
    async fn open(
        &self,
        from: &str,
        pod: &PodRef,
        asked: &PodLog,
        until: Instant,
    ) -> Result<PodAnswer, Refusal> {
        let stream = log(&self.runtime, &self.node, pod, asked).await?;
        self.hold(from, stream, until).await
    }

    /// Keeps `stream` for peer `from` in a new session, and answers with its first part.
    async fn hold(
        &self,
        from: &str,
        stream: LogStream,
        until: Instant,
    ) -> Result<PodAnswer, Refusal> {
        let id = self.insert(from, stream)?;
        self.close_when_idle(id);
        self.part(from, id, 0, until).await
    }

    /// A new session on `stream` for peer `from`: room is made by closing the ended session
    /// asked for longest ago; refused if [`MAX_SESSIONS`] are open, or
    /// [`MAX_SESSIONS_PER_PEER`] of `from`'s are still reading.
    fn insert(&self, from: &str, stream: LogStream) -> Result<u64, Refusal> {
        let mut open = self.open.lock().expect("sessions");
        if open.len() >= MAX_SESSIONS {
            let ended = open.iter().filter(|(_, s)| s.ended);
            if let Some(id) = ended.min_by_key(|(_, s)| s.asked).map(|(id, _)| *id) {
                open.remove(&id);
            }
        }
        let reading = open.values().filter(|s| s.peer == from && !s.ended).count();
        if open.len() >= MAX_SESSIONS || reading >= MAX_SESSIONS_PER_PEER {
            warn!(peer = %from, open = open.len(), reading, "a peer's log session refused: too many");
            return Err(Refusal::new(
                429,
                format!(
                    "node {} streams as many logs to other nodes' clients as it may \
                     ({MAX_SESSIONS}, {MAX_SESSIONS_PER_PEER} for one node): try again later",
                    self.node
                ),
            ));
        }
        // Random, so that a node started again gives no old number to another log.
        let id = std::iter::repeat_with(rand::random::<u64>)
            .find(|id| !open.contains_key(id))
            .expect("a free number");
        let reader = Reader {
            parts: in_parts(stream),
            last: None,
        };
        let session = Session {
            peer: from.to_owned(),
            reader: Arc::new(tokio::sync::Mutex::new(reader)),
            asked: Instant::now(),
            ended: false,
        };
        open.insert(id, session);
        Ok(id)
    }

    /// Part `number` of session `id`, for the peer that opened it: the one after the last
    /// (what came by `until`), or the last again.
    async fn part(
        &self,
        from: &str,
        id: u64,
        number: u64,
        until: Instant,
    ) -> Result<PodAnswer, Refusal> {
        let reader = {
            let mut open = self.open.lock().expect("sessions");
            let session = open.get_mut(&id).filter(|s| s.peer == from);
            let session = session.ok_or_else(|| {
                Refusal::new(
                    404,
                    format!("log session {id} is not open on node {}", self.node),
                )
            })?;
            session.asked = Instant::now();
            session.reader.clone()
        };
        let Ok(mut reader) = tokio::time::timeout_at(until, reader.lock()).await else {
            // An earlier request for it still reads (one the asking node gave up on).
            return Err(Refusal::new(
                503,
                format!("log session {id} is busy: ask again"),
            ));
        };
        let answer = |bytes: Vec<u8>, end| PodAnswer::Log {
            session: id,
            bytes,
            end,
        };
        if let Some((n, bytes, end)) = &reader.last
            && *n == number
        {
            return Ok(answer(bytes.clone(), *end));
        }
        let next = reader.last.as_ref().map_or(0, |(n, ..)| n + 1);
        let ended = reader.last.as_ref().is_some_and(|(.., end)| *end);
        if number != next || ended {
            return Err(Refusal::new(
                409,
                format!("log session {id}: part {number} asked, part {next} is next"),
            ));
        }
        match read(&mut reader.parts, until, LINGER, MAX_LOG_PART).await {
            Ok((bytes, end)) => {
                reader.last = Some((number, bytes.clone(), end));
                if end && let Some(session) = self.open.lock().expect("sessions").get_mut(&id) {
                    session.ended = true;
                }
                Ok(answer(bytes, end))
            }
            Err(failed) => {
                self.open.lock().expect("sessions").remove(&id);
                Err(Refusal::runtime(failed))
            }
        }
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
                let Some(session) = open.get(&id) else {
                    return;
                };
                if session.asked.elapsed() >= IDLE {
                    debug!(session = id, "a log session nobody asks for is closed");
                    open.remove(&id);
                    return;
                }
                at = session.asked + IDLE;
            }
        });
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.open.lock().expect("sessions").len()
    }
}

/// How many times the node asked asks again for a part whose answer did not come (lost, late,
/// or refused for now: 429, 503), [`RETRY_AFTER`] apart, before its client's log ends in an
/// error.
pub const MORE_TRIES: u32 = 20;

/// How long the node asked waits before it asks for a part again.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// The rest of a log whose first part came with `session` (`end`: that was the last), as
/// the node asked streams it to its client: part by part, through `ask`; a part whose answer
/// does not come is asked for again by its number, so no byte is lost or sent twice.
pub fn rest<A, F>(
    ask: A,
    session: u64,
    end: bool,
) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>
where
    A: FnMut(PodRequest) -> F + Send + 'static,
    F: std::future::Future<Output = Result<PodAnswer, String>> + Send + 'static,
{
    futures::stream::unfold((ask, 1, end), move |(mut ask, part, end)| async move {
        if end {
            return None;
        }
        let mut why = String::new();
        for _ in 0..MORE_TRIES {
            match ask(PodRequest::More { session, part }).await {
                Ok(PodAnswer::Log { bytes, end, .. }) => {
                    return Some((Ok(bytes::Bytes::from(bytes)), (ask, part + 1, end)));
                }
                Ok(PodAnswer::Refused {
                    status: 429 | 503,
                    message,
                })
                | Err(message) => why = message,
                Ok(PodAnswer::Refused { message, .. }) => {
                    why = message;
                    break;
                }
                Ok(other) => {
                    why = format!("an unexpected answer {other:?}");
                    break;
                }
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
        warn!(session, part, %why, "a log streamed from the pod's node ended early");
        Some((Err(std::io::Error::other(why)), (ask, part, true)))
    })
    .boxed()
}

/// A log in pieces of [`PIECE`] at most, whose next piece can be looked at.
type Parts = futures::stream::Peekable<LogStream>;

/// The most bytes of one piece a part is made of.
const PIECE: usize = 64 * 1024;

/// `stream` in pieces of [`PIECE`] at most.
fn in_parts(stream: LogStream) -> Parts {
    stream
        .flat_map(|chunk| {
            let pieces = match chunk {
                Ok(bytes) => (0..bytes.len())
                    .step_by(PIECE)
                    .map(|at| Ok(bytes.slice(at..bytes.len().min(at + PIECE))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        })
        .boxed()
        .peekable()
}

/// What `stream` has by `until` (it waits no longer for its first bytes) and in the `linger`
/// after its first bytes, up to `max` bytes; and whether it ended. The engine's error is the
/// answer when no bytes come before it (else the next read's).
async fn read(
    stream: &mut Parts,
    until: Instant,
    linger: Duration,
    max: usize,
) -> Result<(Vec<u8>, bool), RuntimeError> {
    /// What comes next.
    enum Next {
        Bytes(usize),
        Error,
        End,
    }
    let mut bytes = Vec::new();
    let deadline = tokio::time::sleep_until(until);
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            next = std::pin::Pin::new(&mut *stream).peek() => match next {
                Some(Ok(piece)) => Next::Bytes(piece.len()),
                Some(Err(_)) => Next::Error,
                None => Next::End,
            },
            _ = &mut deadline => return Ok((bytes, false)),
        };
        match next {
            Next::End => return Ok((bytes, true)),
            Next::Bytes(n) if bytes.len() + n > max => return Ok((bytes, false)),
            Next::Error if !bytes.is_empty() => return Ok((bytes, false)),
            Next::Bytes(_) | Next::Error => match stream.next().await.expect("a piece peeked at") {
                Ok(piece) => {
                    if bytes.is_empty() {
                        deadline.as_mut().reset(until.min(Instant::now() + linger));
                    }
                    bytes.extend_from_slice(&piece);
                }
                Err(e) => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeError;
    use crate::runtime::memory::MemoryRuntime;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// Part `part` of `session`, asked by `from`.
    async fn more(
        sessions: &Sessions<MemoryRuntime>,
        from: &str,
        session: u64,
        part: u64,
    ) -> PodAnswer {
        let request = PodRequest::More { session, part };
        sessions.answer(from, request).await
    }

    /// The session and the first part's bytes of an answer that opened one.
    fn opened(answer: PodAnswer) -> (u64, Vec<u8>, bool) {
        match answer {
            PodAnswer::Log {
                session,
                bytes,
                end,
            } => (session, bytes, end),
            other => panic!("a part: {other:?}"),
        }
    }

    /// Every part of a session on `stream` as the asking node reads them ([`rest`]); every
    /// `lose`-th answer (if any) is lost on the way back, after the pod's node gave it.
    async fn parts(
        sessions: &Sessions<MemoryRuntime>,
        stream: LogStream,
        lose: Option<usize>,
    ) -> Vec<Vec<u8>> {
        let (session, first, end) = opened(hold(sessions, stream).await.unwrap());
        let (sessions, asked) = (sessions.clone(), Arc::new(AtomicUsize::new(0)));
        let ask = move |request| {
            let (sessions, asked) = (sessions.clone(), asked.clone());
            async move {
                let answer = sessions.answer("p", request).await;
                let n = asked.fetch_add(1, Ordering::Relaxed) + 1;
                match lose {
                    Some(every) if n % every == 0 => Err("lost".to_string()),
                    _ => Ok(answer),
                }
            }
        };
        let rest: Vec<_> = rest(ask, session, end).collect().await;
        let rest = rest.into_iter().map(|part| part.unwrap().to_vec());
        std::iter::once(first).chain(rest).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_log_goes_in_parts_in_order_and_none_is_lost_or_repeated_when_answers_are() {
        let sessions = sessions();
        let text: Vec<u8> = (0..900 * 1024).map(|i| (i % 251) as u8).collect();
        let chunks = text
            .chunks(200 * 1024)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let parts = parts(&sessions, log_of(chunks), None).await;
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(parts.concat(), text);
        assert!(sizes.iter().all(|&n| n <= MAX_LOG_PART), "{sizes:?}");
        assert!(sizes.len() >= 4, "{sizes:?}");
        // Every other answer lost on its way: each part is asked again, and comes once.
        let again = log_of(vec![Ok(bytes::Bytes::from(text.clone()))]);
        let parts = self::parts(&sessions, again, Some(2)).await;
        assert_eq!(parts.concat(), text);
        let ended = sessions.open.lock().unwrap().values().all(|s| s.ended);
        assert!(
            ended,
            "the last part ends a session; it is kept to answer it again"
        );
        tokio::time::sleep(IDLE * 2).await;
        assert_eq!(sessions.count(), 0, "and closed when nobody asks");
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_asked_out_of_order_is_refused() {
        let sessions = sessions();
        let stream = log_of(vec![Ok(bytes::Bytes::from(vec![b'x'; MAX_LOG_PART * 2]))]);
        let (session, ..) = opened(hold(&sessions, stream).await.unwrap());
        let skipped = more(&sessions, "p", session, 2).await;
        assert!(
            matches!(&skipped, PodAnswer::Refused { status: 409, message } if message.contains("part 1 is next")),
            "{skipped:?}"
        );
        let (_, first_again, _) = opened(more(&sessions, "p", session, 0).await);
        assert_eq!(first_again.len(), MAX_LOG_PART, "the last part, again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_log_answers_with_nothing_and_only_its_peer_reads_it_until_nobody_asks() {
        let sessions = sessions();
        let quiet = futures::stream::pending().boxed();
        let (session, bytes, end) = opened(hold(&sessions, quiet).await.unwrap());
        assert!(bytes.is_empty() && !end);
        let other = more(&sessions, "q", session, 1).await;
        assert!(
            matches!(other, PodAnswer::Refused { status: 404, .. }),
            "{other:?}"
        );
        tokio::time::sleep(IDLE / 2).await;
        let asked = more(&sessions, "p", session, 1).await;
        assert!(
            matches!(asked, PodAnswer::Log { end: false, .. }),
            "{asked:?}"
        );
        tokio::time::sleep(IDLE / 2 + WAIT).await;
        assert_eq!(sessions.count(), 1, "asked less than IDLE ago");
        tokio::time::sleep(IDLE).await;
        assert_eq!(sessions.count(), 0, "nobody asked for IDLE");
        let gone = more(&sessions, "p", session, 2).await;
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
        let parts = parts(&sessions, busy, None).await;
        let lines: Vec<usize> = parts
            .iter()
            .map(|p| p.split(|&b| b == b'\n').count() - 1)
            .collect();
        assert_eq!(lines.iter().sum::<usize>(), 50, "{lines:?}");
        assert!(lines.len() <= 7, "parts of about ten lines: {lines:?}");
        assert!(lines[0] >= 9, "{lines:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_are_bounded_per_peer_and_in_all_ended_ones_giving_way() {
        let sessions = sessions();
        // Each writes a line at once, then nothing: no time passes, no session goes idle.
        let talking = || {
            futures::stream::once(async { Ok(bytes::Bytes::from_static(b"up\n")) })
                .chain(futures::stream::pending())
                .boxed()
        };
        let now = || Instant::now() + WAIT;
        for _ in 0..MAX_SESSIONS_PER_PEER {
            sessions.hold("p", talking(), now()).await.unwrap();
        }
        let refused = sessions.hold("p", talking(), now()).await.unwrap_err();
        assert_eq!(refused.status, 429, "{refused:?}");
        for _ in MAX_SESSIONS_PER_PEER..MAX_SESSIONS {
            sessions.hold("q", talking(), now()).await.unwrap();
        }
        let refused = sessions.hold("r", talking(), now()).await.unwrap_err();
        assert!(
            refused.message.contains("(64, 32 for one node)"),
            "{refused:?}"
        );
        // One that ended gives way to a new one.
        let (_, _, end) = opened(hold(&self::sessions(), log_of(vec![])).await.unwrap());
        assert!(end);
        sessions
            .open
            .lock()
            .unwrap()
            .values_mut()
            .next()
            .unwrap()
            .ended = true;
        sessions.hold("r", talking(), now()).await.unwrap();
        assert_eq!(sessions.count(), MAX_SESSIONS);
    }

    #[tokio::test(start_paused = true)]
    async fn an_engine_error_is_the_answer_after_the_bytes_before_it() {
        let sessions = sessions();
        let failed = log_of(vec![Err(RuntimeError::NotFound("c1".into()))]);
        let refused = hold(&sessions, failed).await.unwrap_err();
        assert_eq!(refused.status, 500);
        assert!(refused.message.contains("c1"), "{refused:?}");
        assert_eq!(sessions.count(), 0);
        let stream = log_of(vec![
            Ok(bytes::Bytes::from_static(b"one\n")),
            Err(RuntimeError::NotFound("c1".into())),
        ]);
        let (session, bytes, end) = opened(hold(&sessions, stream).await.unwrap());
        assert_eq!((bytes.as_slice(), end), (&b"one\n"[..], false));
        let next = more(&sessions, "p", session, 1).await;
        assert!(
            matches!(next, PodAnswer::Refused { status: 500, .. }),
            "{next:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_comes_within_a_few_ms_goes_as_one_and_an_error_after_bytes_follows_them() {
        let stream = log_of(vec![
            Ok(bytes::Bytes::from_static(b"a\n")),
            Ok(bytes::Bytes::from_static(b"b\n")),
            Err(RuntimeError::NotFound("c1".into())),
        ]);
        let read: Vec<_> = joined(stream).collect().await;
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!(read[0].as_ref().unwrap().as_ref(), b"a\nb\n");
        assert!(
            read[1]
                .as_ref()
                .is_err_and(|e| e.to_string().contains("c1"))
        );
        // A line every 2 ms goes in twos or threes; one 10 ms later alone.
        let paced = futures::stream::iter([2u64, 2, 2, 10])
            .then(|ms| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(bytes::Bytes::from_static(b"x\n"))
            })
            .boxed();
        let sizes: Vec<usize> = joined(paced).map(|c| c.unwrap().len()).collect().await;
        assert_eq!(sizes, [6, 2], "{sizes:?}");
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_log() {
        let stream = log_of(vec![
            Ok(bytes::Bytes::from_static(b"abc\n")),
            Ok(bytes::Bytes::from_static(b"defg\n")),
            Ok(bytes::Bytes::from_static(b"never\n")),
        ]);
        let read: Vec<_> = limited(stream, 6).collect().await;
        let read: Vec<u8> = read.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(read, b"abc\nde");
    }
}
