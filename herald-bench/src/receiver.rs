//! The benchmark's own webhook receiver: a lean HTTP/1.1 server (hyper, no router) on
//! 127.0.0.1:0 that answers 200, 500 or nothing at all, counts requests per `/hook/{n}` path
//! and records when each event arrived. It measures; it never verifies signatures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// 200 to every request.
    Healthy,
    /// 500 with probability `failure_ratio`, but never more than `max_failures` times to one
    /// event, so that every event is delivered within its retry schedule.
    Flaky {
        failure_ratio: f64,
        max_failures: u32,
    },
    /// Accepts connections, reads what is sent and never answers.
    BlackHole,
}

/// One request as the receiver saw it: the event (`webhook-id`), when its body had arrived,
/// and whether it was answered 200.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub event: u128,
    pub at: Instant,
    pub succeeded: bool,
}

#[derive(Default)]
struct PathLog {
    requests: AtomicU64,
    succeeded: AtomicU64,
    arrivals: Mutex<Vec<Arrival>>,
}

struct Shared {
    mode: Mode,
    record: bool,
    paths: Vec<PathLog>,
    connections: AtomicU64,
    failures: Mutex<HashMap<u128, u32>>,
}

/// A running receiver; cheap to clone, it stops when the last clone is dropped.
#[derive(Clone)]
pub struct Receiver {
    address: SocketAddr,
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Receiver {
    /// Starts a receiver serving paths `/hook/0` to `/hook/{paths - 1}`. With `record`, every
    /// request's [`Arrival`] is kept (for latencies); without it, only counts.
    pub async fn start(mode: Mode, paths: usize, record: bool) -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode,
            record,
            paths: (0..paths).map(|_| PathLog::default()).collect(),
            connections: AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, shared.clone(), stop.clone()));
        Ok(Receiver {
            address,
            shared,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// The URL of path `/hook/{index}`.
    pub fn url(&self, index: usize) -> String {
        format!("http://{}/hook/{index}", self.address)
    }

    /// Requests received on one path (answered or not).
    pub fn requests(&self, index: usize) -> u64 {
        self.shared.paths[index].requests.load(Ordering::Relaxed)
    }

    /// Requests answered 200 on one path.
    pub fn succeeded(&self, index: usize) -> u64 {
        self.shared.paths[index].succeeded.load(Ordering::Relaxed)
    }

    /// Requests answered 200 on these paths.
    pub fn succeeded_on(&self, paths: &[usize]) -> u64 {
        paths.iter().map(|i| self.succeeded(*i)).sum()
    }

    /// Requests received on these paths.
    pub fn requests_on(&self, paths: &[usize]) -> u64 {
        paths.iter().map(|i| self.requests(*i)).sum()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// The arrivals recorded on one path, in the order they were recorded.
    pub fn arrivals(&self, index: usize) -> Vec<Arrival> {
        self.shared.paths[index]
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve(stream, shared) => {}
            }
        });
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    if let Mode::BlackHole = shared.mode {
        // Read (so the sender's writes complete) until the peer gives up, never answering.
        let mut buffer = vec![0u8; 16 * 1024];
        while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        return;
    }
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, hyper::Error>(answer(&shared, request).await) }
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let index = request
        .uri()
        .path()
        .strip_prefix("/hook/")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < shared.paths.len());
    let event = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .map_or(0, |id| id.as_u128());
    // The whole body is read, so the connection stays reusable and "received" means received.
    let _ = request.into_body().collect().await;
    let at = Instant::now();
    let Some(index) = index else {
        return reply(StatusCode::NOT_FOUND);
    };
    let succeeded = match shared.mode {
        Mode::Healthy => true,
        Mode::BlackHole => false,
        Mode::Flaky {
            failure_ratio,
            max_failures,
        } => {
            let mut failures = shared.failures.lock().unwrap_or_else(|e| e.into_inner());
            let count = failures.entry(event).or_insert(0);
            if *count < max_failures && rand::random::<f64>() < failure_ratio {
                *count += 1;
                false
            } else {
                true
            }
        }
    };
    let path = &shared.paths[index];
    path.requests.fetch_add(1, Ordering::Relaxed);
    if succeeded {
        path.succeeded.fetch_add(1, Ordering::Relaxed);
    }
    if shared.record {
        path.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arrival {
                event,
                at,
                succeeded,
            });
    }
    reply(if succeeded {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    })
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = status;
    response
}
