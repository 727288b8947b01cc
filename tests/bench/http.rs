//! A small blocking HTTP/1.1 client over a unix socket: one connection per
//! request (`Connection: close`), as the `docker` CLI does per command. Enough
//! for the Engine API and adequate for timing it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// A request body and its media type.
pub struct Body<'a> {
    pub content_type: &'a str,
    pub bytes: &'a [u8],
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole answer, all within `timeout`.
pub fn request(
    sock: &Path,
    method: &str,
    target: &str,
    body: Option<Body<'_>>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(sock).map_err(|source| HttpError::Connect {
        path: sock.to_path_buf(),
        source,
    })?;
    stream.set_write_timeout(Some(timeout))?;

    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    match &body {
        Some(b) => head.push_str(&format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
            b.content_type,
            b.bytes.len()
        )),
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| match &body {
            Some(b) => stream.write_all(b.bytes),
            None => Ok(()),
        });
    if let Err(e) = sent {
        // A server may answer (say 404) and close before reading a large
        // body: its answer is then more telling than our broken pipe.
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return Err(e.into());
        }
    }

    let head_only = method == "HEAD";
    let mut raw = Vec::with_capacity(4096);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout(timeout));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout(timeout))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return parse(&raw, head_only, true)?
                .ok_or_else(|| HttpError::Malformed("connection closed mid-answer".into()));
        }
        raw.extend_from_slice(&buf[..n]);
        // Stop as soon as the answer is complete: a server may keep the
        // connection open despite `Connection: close`.
        if let Some(resp) = parse(&raw, head_only, false)? {
            return Ok(resp);
        }
    }
}

/// Parses a raw answer. `Ok(None)` means "not complete yet"; at EOF a body
/// without length runs to the end.
pub fn parse(raw: &[u8], head_only: bool, eof: bool) -> Result<Option<Response>, HttpError> {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| HttpError::Malformed("header is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;

    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| HttpError::Malformed(format!("content-length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    let rest = &raw[end + 4..];
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if chunked {
        // A complete chunked body ends with an empty line (after the last
        // chunk or its trailers): decoding only then keeps reading a large
        // answer linear instead of decoding it again after every read.
        if !eof && !rest.ends_with(b"\r\n\r\n") {
            return Ok(None);
        }
        match dechunk(rest)? {
            Some(body) => body,
            None if eof => return Err(HttpError::Malformed("truncated chunked body".into())),
            None => return Ok(None),
        }
    } else if let Some(len) = length {
        if rest.len() < len {
            return if eof {
                Err(HttpError::Malformed("truncated body".into()))
            } else {
                Ok(None)
            };
        }
        rest[..len].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, body }))
}

/// Decodes a chunked body; `Ok(None)` until the last chunk has arrived.
pub fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..eol])
            .map_err(|_| HttpError::Malformed("chunk size is not UTF-8".into()))?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            // The last chunk is followed by optional trailers and an empty line.
            let done = data.starts_with(b"\r\n") || find(data, b"\r\n\r\n").is_some();
            return Ok(done.then_some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
