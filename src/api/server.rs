//! Serving the router on every listener, and stopping gracefully.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::listener::{Accepted, Listener};
use super::router::Router;
use super::state::AppState;

/// How long a client may take to send a request's headers, as dockerd's
/// `ReadHeaderTimeout`: a connection that stalls is closed, not kept forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running API server.
pub struct Server {
    accept_loops: JoinSet<()>,
    /// Every connection task holds a clone; `recv` ends when all are gone.
    connections_open: mpsc::Sender<()>,
    connections_done: mpsc::Receiver<()>,
}

impl Server {
    /// Starts serving on every listener. Serving stops when `shutdown`
    /// turns true; then call [`Server::drain`].
    pub fn start(
        listeners: Vec<Listener>,
        router: Arc<Router>,
        state: Arc<AppState>,
        shutdown: watch::Receiver<bool>,
    ) -> Server {
        let (connections_open, connections_done) = mpsc::channel(1);
        let mut accept_loops = JoinSet::new();
        for listener in listeners {
            accept_loops.spawn(accept_loop(
                listener,
                router.clone(),
                state.clone(),
                shutdown.clone(),
                connections_open.clone(),
            ));
        }
        Server {
            accept_loops,
            connections_open,
            connections_done,
        }
    }

    /// Waits for the accept loops to stop (their listeners are closed and
    /// unix socket files removed), then up to `grace` for in-flight requests.
    pub async fn drain(mut self, grace: Duration) {
        while self.accept_loops.join_next().await.is_some() {}
        drop(self.connections_open);
        if tokio::time::timeout(grace, self.connections_done.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "connections still open after the grace period; closing them"
            );
        }
    }
}

async fn accept_loop(
    listener: Listener,
    router: Arc<Router>,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
    connections_open: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopping(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        let conn = (
            router.clone(),
            state.clone(),
            shutdown.clone(),
            connections_open.clone(),
        );
        match accepted {
            Ok(Accepted::Unix(stream)) => {
                tokio::spawn(serve_connection(stream, conn));
            }
            Ok(Accepted::Tcp(stream, peer)) => {
                tracing::debug!(%peer, "TCP connection");
                tokio::spawn(serve_connection(stream, conn));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting an API connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

type ConnShared = (
    Arc<Router>,
    Arc<AppState>,
    watch::Receiver<bool>,
    mpsc::Sender<()>,
);

async fn serve_connection<I>(io: I, (router, state, mut shutdown, _open): ConnShared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let router = router.clone();
        let state = state.clone();
        async move { Ok::<_, Infallible>(router.dispatch(state, request).await) }
    });
    // Upgrades stay possible for attach/exec hijacking.
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopping(&mut shutdown) => {
            // Finish the request in flight, then close; idle ones close now.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}

/// Resolves once shutdown starts (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here: it must not live across
    // an await in a spawned task.
    let _ = shutdown.wait_for(|&stop| stop).await;
}
