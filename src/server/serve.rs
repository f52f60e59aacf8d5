//! The accept loop of both ports, with the limits `axum::serve` does not set, so that one
//! client cannot hold the listener:
//!
//! - at most [`Limits::max_connections`] connections at once: past it, a new connection gets
//!   a 503 in Anthropic's error shape and is closed (the others keep being served);
//! - a header read timeout ([`Limits::header_read_timeout`]): a connection that sends its
//!   request head too slowly, says nothing at all, or sits idle between requests, is closed;
//! - HTTP/1.1 only: serving clear-text HTTP/2 too (prior knowledge, which no Claude client
//!   uses over `http://` and browsers never do) would first wait, without a deadline, for the
//!   bytes that tell the two apart;
//! - graceful shutdown: when `stop` fires, nothing new is accepted, idle connections close,
//!   requests in flight finish.
//!
//! (The request body's own read timeout is the proxy's: `proxy::read_body`.)

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// How often a listener at its cap says so in the log (with the count refused since).
const FULL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `listener` until `stop`, then waits for its connections to finish. `service` makes
/// each connection's service from the peer's address.
pub async fn serve<S, F>(
    listener: TcpListener,
    limits: Limits,
    service: F,
    stop: CancellationToken,
) -> io::Result<()>
where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let name = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = Refused {
        listener: name,
        max: limits.max_connections,
        since_log: 0,
        last_log: None,
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.count();
            tokio::spawn(answer_full(stream));
            continue;
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service(peer));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is the proxy's to record, not an error here.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A router as a connection's service: the peer's address goes in as `ConnectInfo`.
#[derive(Clone)]
pub struct WithPeer<S> {
    pub inner: S,
    pub peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for WithPeer<S>
where
    S: tower_service::Service<Request<Body>, Response = Response, Error = std::convert::Infallible>
        + Clone,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = S::Future;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // Routers are always ready; the clone is a reference count.
        self.inner.clone().call(request)
    }
}

/// The answer to a connection past the cap: written before anything is read, then closed.
async fn answer_full(mut stream: TcpStream) {
    const BODY: &str = r#"{"type":"error","error":{"type":"overloaded_error","message":"too many open connections to Claude Nexus; try again shortly"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    // A client that does not read gets no more than a second of our time.
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Counts refused connections and logs them, at most every [`FULL_LOG_INTERVAL`].
struct Refused {
    listener: String,
    max: usize,
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refused {
    fn count(&mut self) {
        self.since_log += 1;
        if self
            .last_log
            .is_some_and(|at| at.elapsed() < FULL_LOG_INTERVAL)
        {
            return;
        }
        self.last_log = Some(Instant::now());
        tracing::warn!(
            listener = %self.listener,
            refused = std::mem::take(&mut self.since_log),
            "{} connections open, the most allowed: new ones get 503 (MAX_CONNECTIONS)",
            self.max
        );
    }
}

/// What `accept` failing means: a connection that went away before it was accepted is
/// nothing; anything else (out of file descriptors) is logged and retried after a second.
fn accept_failed(e: io::Error) -> impl Future<Output = ()> {
    let transient = matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    );
    async move {
        if !transient {
            tracing::error!("accept failed: {e}; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
