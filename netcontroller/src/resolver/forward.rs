//! Asking the upstream servers, from inside the sandbox.
//!
//! Upstreams are tried in order, as dockerd does: UDP first, TCP again when
//! the UDP answer is truncated, each attempt bounded by the configured
//! timeout; SERVFAIL and REFUSED move on to the next upstream. Each forward
//! uses a fresh socket and a fresh random id, and only an answer to exactly
//! the question asked is accepted.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::answer::{self, UDP_MAX};
use super::netns::SocketOpener;
use crate::error::{ErrorKind, Kind};

/// Why one attempt at one upstream gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub(super) enum ForwardError {
    #[error("{proto} to {upstream}: {source}")]
    Io {
        proto: &'static str,
        upstream: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{proto} to {upstream}: no answer within {timeout:?}")]
    Timeout {
        proto: &'static str,
        upstream: SocketAddr,
        timeout: Duration,
    },
    #[error("tcp to {upstream}: answer does not match the query")]
    Mismatch { upstream: SocketAddr },
    #[error("query cannot be encoded: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
}

impl Kind for ForwardError {
    fn kind(&self) -> ErrorKind {
        match self {
            ForwardError::Timeout { .. } => ErrorKind::Unavailable,
            ForwardError::Encode(_) => ErrorKind::InvalidArgument,
            ForwardError::Io { .. } | ForwardError::Mismatch { .. } => ErrorKind::System,
        }
    }
}

/// Forwards queries for one sandbox.
pub(super) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    opener: SocketOpener,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, opener: SocketOpener) -> Self {
        Forwarder {
            upstreams,
            timeout,
            opener,
        }
    }

    /// The upstreams' answer to `query`, under the client's id; SERVFAIL when
    /// none of them gives a usable one.
    pub async fn resolve(&self, query: &Message) -> Message {
        let mut outgoing = query.clone();
        outgoing.metadata.id = rand::random();
        for &upstream in &self.upstreams {
            match self.ask(upstream, &outgoing).await {
                Ok(reply)
                    if matches!(
                        reply.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    tracing::debug!(%upstream, code = %reply.metadata.response_code, "upstream failed; trying the next");
                }
                Ok(mut reply) => {
                    reply.metadata.id = query.metadata.id;
                    return reply;
                }
                Err(e) => tracing::debug!(error = %e, "upstream attempt failed"),
            }
        }
        answer::failure(query, ResponseCode::ServFail)
    }

    /// One upstream: UDP, then TCP if the UDP answer was truncated. A failed
    /// TCP retry still leaves the truncated answer, which tells the client
    /// to come back over TCP.
    async fn ask(&self, upstream: SocketAddr, outgoing: &Message) -> Result<Message, ForwardError> {
        let bytes = outgoing.to_vec()?;
        let reply = self
            .bounded("udp", upstream, self.udp(upstream, outgoing, &bytes))
            .await?;
        if !reply.metadata.truncation {
            return Ok(reply);
        }
        match self
            .bounded("tcp", upstream, self.tcp(upstream, outgoing, &bytes))
            .await
        {
            Ok(full) => Ok(full),
            Err(e) => {
                tracing::debug!(error = %e, "tcp retry failed; passing the truncated answer on");
                Ok(reply)
            }
        }
    }

    async fn bounded(
        &self,
        proto: &'static str,
        upstream: SocketAddr,
        attempt: impl std::future::Future<Output = std::io::Result<Option<Message>>>,
    ) -> Result<Message, ForwardError> {
        match timeout(self.timeout, attempt).await {
            Err(_) => Err(ForwardError::Timeout {
                proto,
                upstream,
                timeout: self.timeout,
            }),
            Ok(Err(source)) => Err(ForwardError::Io {
                proto,
                upstream,
                source,
            }),
            Ok(Ok(None)) => Err(ForwardError::Mismatch { upstream }),
            Ok(Ok(Some(reply))) => Ok(reply),
        }
    }

    /// Waits for the datagram that answers `outgoing`; strays are ignored
    /// (the caller's timeout bounds the wait).
    async fn udp(
        &self,
        upstream: SocketAddr,
        outgoing: &Message,
        bytes: &[u8],
    ) -> std::io::Result<Option<Message>> {
        let socket = self.opener.udp(upstream).await?;
        socket.send(bytes).await?;
        // Upstreams keep within the size the query advertises (RFC 6891);
        // room for a bit more tolerates those that do not.
        let mut buf = vec![0u8; usize::from(outgoing.max_payload()).max(UDP_MAX)];
        loop {
            let n = socket.recv(&mut buf).await?;
            if let Some(reply) = answers(outgoing, &buf[..n]) {
                return Ok(Some(reply));
            }
            tracing::debug!(%upstream, "ignoring a datagram that does not answer the query");
        }
    }

    /// One length-prefixed exchange over a new connection.
    async fn tcp(
        &self,
        upstream: SocketAddr,
        outgoing: &Message,
        bytes: &[u8],
    ) -> std::io::Result<Option<Message>> {
        let mut stream = self.opener.tcp(upstream).await?;
        stream.write_all(&framed(bytes)).await?;
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        Ok(answers(outgoing, &buf))
    }
}

/// `bytes` with the two-byte length prefix of DNS over TCP (RFC 1035 4.2.2).
pub(super) fn framed(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

/// `packet` decoded, if it is a response to `outgoing`: same id, same question.
fn answers(outgoing: &Message, packet: &[u8]) -> Option<Message> {
    let reply = Message::from_vec(packet).ok()?;
    (reply.metadata.message_type == MessageType::Response
        && reply.metadata.id == outgoing.metadata.id
        && reply.queries == outgoing.queries)
        .then_some(reply)
}
