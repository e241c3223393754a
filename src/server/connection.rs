//! Per-connection bounds once a connection has made its first request: how long a keep-alive
//! connection may sit idle, and how long the head of a later HTTP/1.1 request may take to arrive.
//!
//! Why not hyper's timers: hyper's `header_read_timeout` starts as soon as an HTTP/1.1
//! connection goes idle, so one number is both the slow-header bound and the idle bound. Set to
//! 10 s it closed idle connections long before the API server's client gives them up (Go's
//! `IdleConnTimeout`, 90 s in client-go's transport defaults), and a request written as the
//! server closes fails: with `failurePolicy: Ignore` that pod is admitted without hooks. hyper has
//! no idle bound for HTTP/2 at all: a connection that made one request could stay open forever,
//! and so could one that trickles a HEADERS frame.
//!
//! So the server keeps idle connections longer than any well-behaved client does ([`Limits::idle`],
//! then a graceful close: GOAWAY on HTTP/2), and bounds the time from the first byte of a later
//! HTTP/1.1 request to its complete head ([`Limits::header_read`], then an abrupt close). An
//! HTTP/2 connection with no request in flight is idle whatever frames it sends (PINGs, SETTINGS,
//! a HEADERS block that never ends), because bytes are not requests there.
//!
//! The first request of a connection is bounded by axum-server's `first_request_timeout`; the
//! time a dispatched request may take by the server's request deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, Version};
use axum_server::ConnectionShutdown;
use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The bounds applied to every connection after its first request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection with no request in flight stays open.
    pub idle: Duration,
    /// How long an HTTP/1.1 request head may take from its first byte to its last.
    pub header_read: Duration,
}

/// An acceptor that wraps another (the TLS one) and puts every connection it accepts under
/// [`Limits`].
#[derive(Clone, Debug)]
pub struct GuardAcceptor<A> {
    inner: A,
    limits: Limits,
}

impl<A> GuardAcceptor<A> {
    /// Guards the connections `inner` accepts.
    pub fn new(inner: A, limits: Limits) -> Self {
        Self { inner, limits }
    }
}

impl<A, I, S> Accept<I, S> for GuardAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = GuardedIo<A::Stream>;
    type Service = GuardedService<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let limits = self.limits;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            let activity = Arc::new(Activity::new(limits));
            Ok((
                GuardedIo {
                    inner: stream,
                    activity: Arc::clone(&activity),
                },
                GuardedService {
                    inner: service,
                    activity,
                },
            ))
        })
    }
}

/// No first byte of a request head is pending.
const NONE: u64 = u64::MAX;

/// What the IO side, the service side and the watchdog of one connection share.
#[derive(Debug)]
struct Activity {
    limits: Limits,
    epoch: Instant,
    /// Requests dispatched and not yet answered.
    in_flight: AtomicUsize,
    /// When `in_flight` last dropped to zero (ms since `epoch`).
    idle_since: AtomicU64,
    /// When the first byte of the next HTTP/1.1 request head was read (ms since `epoch`), or NONE.
    head_started: AtomicU64,
    /// The watchdog runs (from the first request on, which hands over the shutdown handle).
    watched: AtomicBool,
    http2: AtomicBool,
    closed: AtomicBool,
    /// When the watchdog will next look (ms since `epoch`), so reads wake it only when the
    /// head deadline they start is earlier: once per 10 s, not once per request, under load.
    next_check: AtomicU64,
    /// Wakes the watchdog when a deadline moves earlier or the connection ends.
    wake: Notify,
}

impl Activity {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            watched: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            next_check: AtomicU64::new(NONE),
            wake: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Bytes were read: on an idle HTTP/1.1 connection they start the next request's head.
    fn on_read(&self) {
        if self.watched.load(Ordering::Relaxed)
            && !self.http2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NONE
        {
            let now = self.now_ms();
            self.head_started.store(now, Ordering::SeqCst);
            let deadline = now.saturating_add(self.limits.header_read.as_millis() as u64);
            if deadline < self.next_check.load(Ordering::SeqCst) {
                self.wake.notify_one();
            }
        }
    }

    fn on_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
    }

    fn on_answered(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// What the watchdog should do now.
    fn verdict(&self, now_ms: u64) -> Verdict {
        let limits = self.limits;
        let ms = |d: Duration| d.as_millis() as u64;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::WaitUntil(now_ms.saturating_add(ms(limits.idle)));
        }
        let head = self.head_started.load(Ordering::SeqCst);
        if head != NONE {
            let deadline = head.saturating_add(ms(limits.header_read));
            return if now_ms >= deadline {
                Verdict::SlowHead
            } else {
                Verdict::WaitUntil(deadline)
            };
        }
        let deadline = self
            .idle_since
            .load(Ordering::Relaxed)
            .saturating_add(ms(limits.idle));
        if now_ms >= deadline {
            Verdict::Idle
        } else {
            Verdict::WaitUntil(deadline)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    WaitUntil(u64),
    Idle,
    SlowHead,
}

/// Closes the connection when it breaks a limit; ends with the connection.
async fn watchdog(activity: Arc<Activity>, shutdown: ConnectionShutdown) {
    loop {
        if activity.closed.load(Ordering::Relaxed) {
            return;
        }
        match activity.verdict(activity.now_ms()) {
            Verdict::WaitUntil(ms) => {
                activity.next_check.store(ms, Ordering::SeqCst);
                // A head that started while the verdict was computed saw the old next_check and
                // may not have woken us: look again before sleeping.
                match activity.verdict(activity.now_ms()) {
                    Verdict::WaitUntil(again) if again >= ms => {}
                    _ => continue,
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(activity.at(ms)) => {}
                    _ = activity.wake.notified() => {}
                }
            }
            Verdict::SlowHead => {
                tracing::debug!("closing connection: request head not complete in time");
                shutdown.shutdown();
                return;
            }
            Verdict::Idle => {
                tracing::debug!("closing idle connection");
                // HTTP/2: GOAWAY, so a request the client is writing right now is retried on a
                // new connection instead of failing. A peer that keeps the connection open
                // after that is cut off.
                shutdown.graceful_shutdown();
                let cut_off = Instant::now() + activity.limits.header_read;
                // Woken by reads too: only the end of the connection stops the cut-off.
                while !activity.closed.load(Ordering::Relaxed) {
                    tokio::select! {
                        _ = tokio::time::sleep_until(cut_off) => {
                            shutdown.shutdown();
                            return;
                        }
                        _ = activity.wake.notified() => {}
                    }
                }
                return;
            }
        }
    }
}

/// The connection's byte stream, watched for the first byte of each HTTP/1.1 request head.
#[derive(Debug)]
pub struct GuardedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Drop for GuardedIo<T> {
    fn drop(&mut self) {
        self.activity.closed.store(true, Ordering::Relaxed);
        self.activity.wake.notify_one();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection's service, counting requests in flight.
#[derive(Clone, Debug)]
pub struct GuardedService<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> tower_service::Service<Request<B>> for GuardedService<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let activity = &self.activity;
        if !activity.watched.load(Ordering::Relaxed) {
            // axum-server puts the connection's shutdown handle on every request; the first one
            // starts the watchdog (before it, `first_request_timeout` bounds the connection).
            if let Some(shutdown) = req.extensions().get::<ConnectionShutdown>() {
                activity
                    .http2
                    .store(req.version() == Version::HTTP_2, Ordering::Relaxed);
                activity.watched.store(true, Ordering::Relaxed);
                tokio::spawn(watchdog(Arc::clone(activity), shutdown.clone()));
            }
        }
        activity.on_request();
        Answering {
            inner: self.inner.call(req),
            _answered: AnsweredOnDrop(Arc::clone(activity)),
        }
    }
}

/// Marks a request answered when its future completes or is dropped unfinished.
#[derive(Debug)]
struct AnsweredOnDrop(Arc<Activity>);

impl Drop for AnsweredOnDrop {
    fn drop(&mut self) {
        self.0.on_answered();
    }
}

pin_project_lite::pin_project! {
    /// A request being answered.
    #[derive(Debug)]
    pub struct Answering<F> {
        #[pin]
        inner: F,
        _answered: AnsweredOnDrop,
    }
}

impl<F: Future> Future for Answering<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        idle: Duration::from_secs(120),
        header_read: Duration::from_secs(10),
    };

    fn watched(http2: bool) -> Activity {
        let a = Activity::new(LIMITS);
        a.watched.store(true, Ordering::Relaxed);
        a.http2.store(http2, Ordering::Relaxed);
        a
    }

    #[test]
    fn an_idle_connection_closes_after_the_idle_limit_from_its_last_answer() {
        let a = watched(false);
        a.on_request();
        assert_eq!(a.verdict(50_000), Verdict::WaitUntil(170_000));
        a.on_answered();
        let idle_since = a.idle_since.load(Ordering::Relaxed);
        assert_eq!(
            a.verdict(idle_since),
            Verdict::WaitUntil(idle_since + 120_000)
        );
        assert_eq!(a.verdict(idle_since + 120_000), Verdict::Idle);
    }

    #[test]
    fn a_request_in_flight_keeps_the_connection_open() {
        let a = watched(true);
        a.on_request();
        assert!(matches!(a.verdict(1_000_000), Verdict::WaitUntil(_)));
        a.on_request();
        a.on_answered();
        assert!(matches!(a.verdict(1_000_000), Verdict::WaitUntil(_)));
        a.on_answered();
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_first_byte_of_an_http1_head_starts_the_header_bound() {
        let a = watched(false);
        a.on_read();
        let started = a.head_started.load(Ordering::Relaxed);
        assert_ne!(started, NONE);
        assert_eq!(a.verdict(started), Verdict::WaitUntil(started + 10_000));
        assert_eq!(a.verdict(started + 10_000), Verdict::SlowHead);
        // The head completing (a request) cancels it.
        a.on_request();
        assert_eq!(a.head_started.load(Ordering::Relaxed), NONE);
    }

    #[tokio::test]
    async fn a_head_wakes_the_watchdog_only_when_it_moves_the_next_check_earlier() {
        let a = watched(false);
        a.next_check.store(120_000, Ordering::SeqCst);
        a.on_read();
        // A permit is stored for the watchdog: the head deadline (~10 s) is before 120 s.
        tokio::time::timeout(Duration::from_millis(10), a.wake.notified())
            .await
            .expect("woken");
        a.on_request();
        a.on_answered();
        a.next_check.store(a.now_ms() + 5_000, Ordering::SeqCst);
        a.on_read();
        assert!(
            tokio::time::timeout(Duration::from_millis(10), a.wake.notified())
                .await
                .is_err(),
            "woken although the watchdog already looks sooner"
        );
    }

    #[test]
    fn bytes_on_http2_or_during_a_request_are_not_a_request_head() {
        let h2 = watched(true);
        h2.on_read();
        assert_eq!(h2.head_started.load(Ordering::Relaxed), NONE);
        let busy = watched(false);
        busy.on_request();
        busy.on_read();
        assert_eq!(busy.head_started.load(Ordering::Relaxed), NONE);
        // Before the first request axum-server's first_request_timeout is in charge.
        let fresh = Activity::new(LIMITS);
        fresh.on_read();
        assert_eq!(fresh.head_started.load(Ordering::Relaxed), NONE);
    }
}
