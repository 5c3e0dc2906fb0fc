//! Serving the router over HTTP/1.1 with the slow-client limits: a deadline for each request
//! head, one for each request body, an idle timeout for keep-alive connections and a cap on
//! the connections open at once. Knows hyper and sockets; holds no business rules.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection waits for its
//! next request, which would cut every idle connection at the header timeout; so each
//! connection here has a watchdog that tells the two apart. Requests only record where the
//! connection stands; the watchdog reads that when its timer fires, so a request costs no
//! wake-up and no timer of its own.

use std::convert::Infallible;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use super::body::BodyTimedOut;
use crate::config::Config;

/// The limits that keep slow or silent clients from holding the server: the head, body
/// and idle deadlines and the connection cap.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// From a connection's start, or from the first byte of a request after an idle spell,
    /// to its complete head.
    pub header_timeout: Duration,
    /// From a request's head to the end of its body.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl ServeLimits {
    pub fn of(config: &Config) -> ServeLimits {
        ServeLimits {
            header_timeout: config.http_header_timeout,
            body_timeout: config.http_body_timeout,
            idle_timeout: config.http_idle_timeout,
            max_connections: config.max_connections as usize,
        }
    }
}

/// Accepts connections until `shutdown`, then lets open requests finish and returns once
/// every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        // Beyond the cap, connections wait in the listen backlog until a slot frees.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error, &shutdown).await;
                    continue;
                }
            },
        };
        connections.spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            shutdown.clone(),
            slot,
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Errors of one connection that died in the backlog are nothing to wait for; others
/// (out of file descriptors) get a pause so the loop does not spin.
async fn accept_failed(error: std::io::Error, shutdown: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new(limits));
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::start(&activity);
            let deadline = Instant::now() + limits.body_timeout;
            let request: Request = request.map(|body| Body::new(WithDeadline::new(body, deadline)));
            let mut router = router.clone();
            async move {
                let response = router.call(request).await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(Finishing { body, _busy: busy })))
            }
        })
    };
    let connection = http1::Builder::new()
        // The watchdog below keeps the head deadline; hyper's would also cut idle
        // keep-alive connections at it.
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut connection = pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                // A connection with no request in progress has nothing to finish; hyper
                // would keep one that has not sent its first head until that arrives.
                if !activity.busy() {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = activity.expired() => {
                tracing::debug!("closing a connection that was too slow or idle too long");
                return;
            }
        }
    }
}

/// Where a connection stands, for its watchdog.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// A request head is awaited (or arriving) until the deadline.
    Head(Instant),
    /// Between requests, until the deadline.
    Idle(Instant),
    /// Requests being answered (hyper handles one at a time; the count covers the moment a
    /// response body is dropped after the next request began).
    Busy(usize),
}

struct Activity {
    phase: Mutex<Phase>,
    /// Mirrors `Phase::Idle`, so that reads during a request cost no lock.
    idle: AtomicBool,
    limits: ServeLimits,
}

impl Activity {
    fn new(limits: ServeLimits) -> Activity {
        Activity {
            phase: Mutex::new(Phase::Head(Instant::now() + limits.header_timeout)),
            idle: AtomicBool::new(false),
            limits,
        }
    }

    fn set(&self, phase: &mut Phase, next: Phase) {
        *phase = next;
        self.idle
            .store(matches!(next, Phase::Idle(_)), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: after an idle spell they start the next request's head.
    fn read(&self) {
        if self.idle.load(Ordering::Relaxed) {
            let mut phase = self.lock();
            if let Phase::Idle(_) = *phase {
                self.set(
                    &mut phase,
                    Phase::Head(Instant::now() + self.limits.header_timeout),
                );
            }
        }
    }

    fn busy(&self) -> bool {
        matches!(*self.lock(), Phase::Busy(_))
    }

    /// Completes when the current phase's deadline has passed.
    ///
    /// Phases change without telling the watchdog, so it never sleeps longer than the
    /// shortest limit: any deadline set while it sleeps lies at least that far after the
    /// moment it went to sleep, and it wakes in time to see it.
    async fn expired(&self) {
        let step = self.limits.header_timeout.min(self.limits.idle_timeout);
        loop {
            let now = Instant::now();
            let wake = match *self.lock() {
                Phase::Head(at) | Phase::Idle(at) if at <= now => return,
                Phase::Head(at) | Phase::Idle(at) => at.min(now + step),
                Phase::Busy(_) => now + step,
            };
            sleep_until(wake).await;
        }
    }
}

/// A request in progress, from its complete head to the end (or drop) of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        let mut phase = activity.lock();
        let requests = match *phase {
            Phase::Busy(n) => n + 1,
            _ => 1,
        };
        activity.set(&mut phase, Phase::Busy(requests));
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let mut phase = activity.lock();
        let next = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now() + activity.limits.idle_timeout),
        };
        activity.set(&mut phase, next);
    }
}

/// The socket, telling the watchdog when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline has passed.
struct WithDeadline {
    body: Incoming,
    deadline: Instant,
    /// Made on the first wait only: most bodies are empty or already buffered.
    timer: Option<Pin<Box<Sleep>>>,
}

impl WithDeadline {
    fn new(body: Incoming, deadline: Instant) -> WithDeadline {
        WithDeadline {
            body,
            deadline,
            timer: None,
        }
    }
}

impl HttpBody for WithDeadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that ends its request's [`Busy`] when it is done or dropped.
struct Finishing {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Finishing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
