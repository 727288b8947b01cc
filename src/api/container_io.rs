//! A container's output: `GET /containers/{id}/logs` and the hijacked
//! `POST /containers/{id}/attach` that `docker run` (without `-d`) reads.
//! Both send docker's multiplexed frames (berthd gives containers no TTY).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::ApiError;
use super::request::Ctx;
use super::response::{byte_stream, empty, ApiResult, BoxError};
use super::router::Router;
use super::time::parse_time_filter;
use super::version::ApiVersion;
use crate::container::logs::{encode_frame, LogEntry, LogOptions, LogReader};
use crate::container::store::Entry;

pub(super) fn routes(router: Router) -> Router {
    router
        .get("/containers/{id}/logs", logs)
        .post("/containers/{id}/attach", attach)
}

/// The stream's media type: API 1.42 named it for what it is.
fn stream_type(version: ApiVersion) -> &'static str {
    if version >= ApiVersion::new(1, 42) {
        "application/vnd.docker.multiplexed-stream"
    } else {
        "application/vnd.docker.raw-stream"
    }
}

fn time_param(value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match value {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => {
            let nanos = parse_time_filter(v).map_err(ApiError::invalid)?;
            Ok(Some(DateTime::from_timestamp_nanos(nanos)))
        }
    }
}

fn frame(entry: &LogEntry, timestamps: bool) -> Bytes {
    let mut payload = Vec::with_capacity(entry.line.len() + 32);
    if timestamps {
        payload.extend_from_slice(entry.timestamp_fixed().as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&entry.line);
    Bytes::from(encode_frame(entry.stream, &payload))
}

async fn logs(ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let entry = state.containers()?.get(ctx.param("id"))?;
    let q = ctx.query();
    let (stdout, stderr) = (q.bool("stdout"), q.bool("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::invalid(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::invalid(format!("invalid value for tail: {n:?}")))?,
        ),
    };
    let opts = LogOptions {
        stdout,
        stderr,
        since: time_param(q.get("since"))?,
        until: time_param(q.get("until"))?,
        tail,
    };
    let timestamps = q.bool("timestamps");
    let follow = if q.bool("follow") {
        entry.log_writes()
    } else {
        None
    };
    let reader = LogReader::open(&entry.log_path(), opts, follow).await?;
    let frames = futures::stream::unfold(reader, move |mut reader| async move {
        match reader.next().await {
            Ok(Some(e)) => Some((Ok::<_, BoxError>(frame(&e, timestamps)), reader)),
            Ok(None) => None,
            Err(e) => Some((Err(BoxError::from(e.to_string())), reader)),
        }
    });
    let shutdown = Box::pin(async move { state.shutting_down().await });
    let frames = futures::StreamExt::take_until(frames, shutdown);
    Ok(byte_stream(stream_type(ctx.version()), frames))
}

/// Hijacks the connection and streams the container's output from now on
/// (with `logs=1`, what it wrote before too), through its next run when it
/// is not running yet, until its output ends or the client goes away.
/// Input (`stdin=1`) is not supported: berthd gives containers no stdin.
async fn attach(ctx: Ctx) -> ApiResult {
    let state = ctx.state().clone();
    let entry = state.containers()?.get(ctx.param("id"))?;
    let q = ctx.query();
    if !q.bool("stream") && !q.bool("logs") {
        return Err(ApiError::invalid(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let opts = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        since: if q.bool("logs") {
            None
        } else {
            Some(Utc::now())
        },
        until: None,
        tail: None,
    };
    let stream = q.bool("stream");
    let content_type = stream_type(ctx.version());
    let upgrade = ctx.headers().contains_key(UPGRADE);
    let request = ctx.into_request();
    let phase = entry.phase();
    let shutdown_state = state.clone();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "attach: upgrade failed");
                return;
            }
        };
        let io = TokioIo::new(upgraded);
        tokio::select! {
            _ = stream_output(io, entry, phase, opts, stream) => {}
            _ = shutdown_state.shutting_down() => {}
        }
    });
    let mut resp = empty(if upgrade {
        StatusCode::SWITCHING_PROTOCOLS
    } else {
        StatusCode::OK
    });
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if upgrade {
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    }
    Ok(resp)
}

async fn stream_output<IO>(
    io: IO,
    entry: Arc<Entry>,
    mut phase: tokio::sync::watch::Receiver<crate::container::store::Phase>,
    opts: LogOptions,
    stream: bool,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut rx, mut tx) = tokio::io::split(io);
    // Input is discarded. The CLI half-closes its side at once when it
    // sends no input, so end-of-file is not the client going away; a
    // broken connection is (a gone client is otherwise seen on write).
    let client_gone = async move {
        let mut buf = [0u8; 4096];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) => std::future::pending::<()>().await,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let output = async move {
        let follow = if stream {
            let at_attach = *phase.borrow_and_update();
            if !at_attach.running {
                // Wait for the next run (the CLI attaches before it starts).
                if phase
                    .wait_for(|p| p.starts > at_attach.starts || p.removed)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            entry.log_writes()
        } else {
            None
        };
        let Ok(mut reader) = LogReader::open(&entry.log_path(), opts, follow).await else {
            return;
        };
        while let Ok(Some(e)) = reader.next().await {
            if tx.write_all(&frame(&e, false)).await.is_err() {
                return;
            }
        }
        let _ = tx.flush().await;
        let _ = tx.shutdown().await;
    };
    tokio::select! {
        _ = output => {}
        _ = client_gone => {}
    }
}
