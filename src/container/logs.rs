//! Container output, as dockerd's json-file log driver keeps it.
//!
//! [`LogCapture`] makes the FIFOs a task writes its stdout/stderr to, reads
//! them and appends one JSON object per line to `<id>-json.log`
//! (`{"log":"…\n","stream":"stdout","time":"<RFC3339Nano>"}`).
//! [`LogReader`] reads that file back with docker's options (streams, tail,
//! since/until, follow) and [`encode_frame`] puts an entry in docker's
//! multiplexed stream format for `GET /containers/{id}/logs`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use netcontroller::error::{ErrorKind, Kind};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::runtime::TaskIo;

/// Longest line kept in one entry; longer ones are split into partial
/// entries without a trailing newline, like dockerd's 16 KiB copier buffer.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making fifo {}: {source}", path.display())]
    Fifo {
        path: PathBuf,
        source: nix::errno::Errno,
    },
}

impl Kind for LogError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::System
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line (or piece of an over-long line) of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: LogStream,
    pub time: DateTime<Utc>,
    /// The bytes as written, with the trailing newline when the line had one.
    pub line: Vec<u8>,
}

impl LogEntry {
    /// The prefix `docker logs -t` puts before a line (Go's RFC3339NanoFixed).
    pub fn timestamp_fixed(&self) -> String {
        self.time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    }
}

/// A line of the json-file log, in dockerd's field order.
#[derive(Serialize, Deserialize)]
struct JsonLine {
    log: String,
    stream: LogStream,
    time: String,
}

/// Go's RFC3339Nano: UTC, fraction without trailing zeros (none if zero).
fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let fraction = format!("{:09}", t.timestamp_subsec_nanos());
    let fraction = fraction.trim_end_matches('0');
    let dot = if fraction.is_empty() { "" } else { "." };
    format!("{}{dot}{fraction}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

fn encode_line(entry: &LogEntry) -> Vec<u8> {
    let json = JsonLine {
        log: String::from_utf8_lossy(&entry.line).into_owned(),
        stream: entry.stream,
        time: rfc3339_nano(&entry.time),
    };
    // Serializing a struct of strings cannot fail.
    let mut out = serde_json::to_vec(&json).unwrap_or_default();
    out.push(b'\n');
    out
}

fn decode_line(raw: &[u8]) -> Option<LogEntry> {
    let json: JsonLine = serde_json::from_slice(raw).ok()?;
    let time = DateTime::parse_from_rfc3339(&json.time)
        .ok()?
        .with_timezone(&Utc);
    Some(LogEntry {
        stream: json.stream,
        time,
        line: json.log.into_bytes(),
    })
}

/// Reads a task's stdout and stderr FIFOs into the container's json log.
///
/// Order of use: [`LogCapture::start`], create the task with
/// [`LogCapture::task_io`], then [`LogCapture::attached`] (whether creating
/// the task worked or not), and [`LogCapture::finish`] once the task is gone.
pub struct LogCapture {
    stdout: PathBuf,
    stderr: PathBuf,
    /// Our own write ends, so the readers see no end-of-file before the
    /// task's process has opened the FIFOs.
    keepalive: Vec<pipe::Sender>,
    written: watch::Receiver<u64>,
    copier: JoinHandle<Result<(), LogError>>,
}

impl LogCapture {
    /// Creates `init-stdout` and `init-stderr` FIFOs in `fifo_dir` and starts
    /// copying what arrives on them to `log_path` (appending).
    pub async fn start(fifo_dir: &Path, log_path: &Path) -> Result<LogCapture, LogError> {
        tokio::fs::create_dir_all(fifo_dir)
            .await
            .map_err(io_err(fifo_dir))?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .await
            .map_err(io_err(log_path))?;
        let stdout = fifo_dir.join("init-stdout");
        let stderr = fifo_dir.join("init-stderr");
        let mut keepalive = Vec::new();
        let mut receivers = Vec::new();
        for path in [&stdout, &stderr] {
            let (rx, tx) = open_fifo(path)?;
            receivers.push(rx);
            keepalive.push(tx);
        }
        let (written_tx, written) = watch::channel(0u64);
        let (lines_tx, lines_rx) = mpsc::channel(256);
        let stderr_rx = receivers.pop().expect("two fifos");
        let stdout_rx = receivers.pop().expect("two fifos");
        let readers = [
            tokio::spawn(read_stream(stdout_rx, LogStream::Stdout, lines_tx.clone())),
            tokio::spawn(read_stream(stderr_rx, LogStream::Stderr, lines_tx)),
        ];
        let log_path = log_path.to_path_buf();
        let copier = tokio::spawn(async move {
            let written = write_entries(file, &log_path, lines_rx, written_tx).await;
            for reader in readers {
                let _ = reader.await;
            }
            written
        });
        Ok(LogCapture {
            stdout,
            stderr,
            keepalive,
            written,
            copier,
        })
    }

    /// The stdio to create the task with.
    pub fn task_io(&self) -> TaskIo {
        TaskIo {
            stdin: None,
            stdout: Some(self.stdout.clone()),
            stderr: Some(self.stderr.clone()),
        }
    }

    /// Call once containerd holds the FIFOs (the task is created) or will
    /// never open them: from then on the copy ends when the task's output
    /// is closed.
    pub fn attached(&mut self) {
        self.keepalive.clear();
    }

    /// Changes whenever entries were appended; closes when the capture ends.
    /// Feed it to [`LogReader::open`] to follow the log.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.written.clone()
    }

    /// Waits until the task's output has ended and everything is in the log,
    /// then removes the FIFOs.
    pub async fn finish(mut self) -> Result<(), LogError> {
        self.attached();
        let result = match self.copier.await {
            Ok(result) => result,
            Err(e) => Err(LogError::Io {
                path: self.stdout.clone(),
                source: std::io::Error::other(e),
            }),
        };
        for path in [&self.stdout, &self.stderr] {
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }
}

fn open_fifo(path: &Path) -> Result<(pipe::Receiver, pipe::Sender), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
        |source| LogError::Fifo {
            path: path.to_path_buf(),
            source,
        },
    )?;
    let rx = pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(io_err(path))?;
    let tx = pipe::OpenOptions::new()
        .open_sender(path)
        .map_err(io_err(path))?;
    Ok((rx, tx))
}

/// Splits one stream into entries (lines, or pieces of at most `MAX_LINE`).
async fn read_stream(mut rx: pipe::Receiver, stream: LogStream, out: mpsc::Sender<LogEntry>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(?stream, error = %e, "reading container output");
                break;
            }
        };
        let time = Utc::now();
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos + 1;
            for piece in pending[start..end].chunks(MAX_LINE) {
                send(&out, stream, time, piece).await;
            }
            start = end;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            send(&out, stream, time, &pending).await;
            pending = rest;
        }
    }
    if !pending.is_empty() {
        send(&out, stream, Utc::now(), &pending).await;
    }
}

async fn send(out: &mpsc::Sender<LogEntry>, stream: LogStream, time: DateTime<Utc>, line: &[u8]) {
    let entry = LogEntry {
        stream,
        time,
        line: line.to_vec(),
    };
    // The writer outlives the readers; a closed channel means it failed
    // and has reported why.
    let _ = out.send(entry).await;
}

async fn write_entries(
    mut file: tokio::fs::File,
    path: &Path,
    mut rx: mpsc::Receiver<LogEntry>,
    written: watch::Sender<u64>,
) -> Result<(), LogError> {
    let mut total = 0u64;
    let mut batch = Vec::new();
    while let Some(entry) = rx.recv().await {
        batch.extend(encode_line(&entry));
        while let Ok(entry) = rx.try_recv() {
            batch.extend(encode_line(&entry));
        }
        file.write_all(&batch).await.map_err(io_err(path))?;
        // tokio's File writes in the background; readers must see it now.
        file.flush().await.map_err(io_err(path))?;
        total += batch.len() as u64;
        batch.clear();
        written.send_replace(total);
    }
    Ok(())
}

/// What to read from a container's log (the query of `docker logs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    /// Entries before this time are skipped.
    pub since: Option<DateTime<Utc>>,
    /// Reading stops at the first entry after this time.
    pub until: Option<DateTime<Utc>>,
    /// Only the last N entries of the log (counted over both streams before
    /// the stream selection, as dockerd does); `None` for all.
    pub tail: Option<usize>,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            stdout: true,
            stderr: true,
            since: None,
            until: None,
            tail: None,
        }
    }
}

/// Reads a json-file log, and with `follow` keeps yielding new entries until
/// the capture writing it ends.
pub struct LogReader {
    opts: LogOptions,
    file: Option<BufReader<tokio::fs::File>>,
    backlog: VecDeque<LogEntry>,
    follow: Option<watch::Receiver<u64>>,
    /// Bytes of a line whose end is not written yet.
    partial: Vec<u8>,
    done: bool,
}

impl LogReader {
    /// Opens the log at `path`. A log that does not exist yet reads as empty.
    pub async fn open(
        path: &Path,
        opts: LogOptions,
        follow: Option<watch::Receiver<u64>>,
    ) -> Result<LogReader, LogError> {
        let mut follow = follow;
        if let Some(rx) = follow.as_mut() {
            // Everything written from here on will wake us.
            rx.borrow_and_update();
        }
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => Some(BufReader::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut reader = LogReader {
            opts,
            file,
            backlog: VecDeque::new(),
            follow,
            partial: Vec::new(),
            done: false,
        };
        if let Some(n) = reader.opts.tail {
            while let Some(entry) = reader.read_entry(path).await? {
                if reader.backlog.len() == n {
                    reader.backlog.pop_front();
                }
                if n > 0 {
                    reader.backlog.push_back(entry);
                }
            }
        }
        Ok(reader)
    }

    /// The next entry that passes the options, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<LogEntry>, LogError> {
        while !self.done {
            let entry = match self.backlog.pop_front() {
                Some(entry) => Some(entry),
                None => self.read_entry(Path::new("json log")).await?,
            };
            let Some(entry) = entry else {
                if !self.wait_for_more().await {
                    self.done = true;
                }
                continue;
            };
            if self.opts.until.is_some_and(|until| entry.time > until) {
                self.done = true;
                break;
            }
            if self.opts.since.is_some_and(|since| entry.time < since) {
                continue;
            }
            let wanted = match entry.stream {
                LogStream::Stdout => self.opts.stdout,
                LogStream::Stderr => self.opts.stderr,
            };
            if wanted {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Reads the next complete, well-formed line from the file; `None` at
    /// its current end.
    async fn read_entry(&mut self, path: &Path) -> Result<Option<LogEntry>, LogError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        loop {
            let n = file
                .read_until(b'\n', &mut self.partial)
                .await
                .map_err(io_err(path))?;
            if n == 0 || self.partial.last() != Some(&b'\n') {
                // Nothing more, or a line still being written.
                return Ok(None);
            }
            let line = std::mem::take(&mut self.partial);
            match decode_line(&line) {
                Some(entry) => return Ok(Some(entry)),
                None => tracing::debug!("skipping malformed json log line"),
            }
        }
    }

    /// With follow, waits for the writer to add entries; false when it is
    /// done (after which whatever it wrote last is still read).
    async fn wait_for_more(&mut self) -> bool {
        let Some(rx) = self.follow.as_mut() else {
            return false;
        };
        if rx.changed().await.is_err() {
            self.follow = None;
        }
        true
    }
}

/// Docker's multiplexed stream framing (`application/vnd.docker.raw-stream`
/// without a TTY): one byte stream type (1 stdout, 2 stderr), three zero
/// bytes, the payload length as big-endian u32, then the payload.
pub fn encode_frame(stream: LogStream, payload: &[u8]) -> Vec<u8> {
    let kind = match stream {
        LogStream::Stdout => 1u8,
        LogStream::Stderr => 2u8,
    };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn json_line_shape() {
        let entry = LogEntry {
            stream: LogStream::Stderr,
            time: at("2024-05-01T10:00:00.123400Z"),
            line: b"he said \"hi\"\n".to_vec(),
        };
        assert_eq!(
            String::from_utf8(encode_line(&entry)).unwrap(),
            "{\"log\":\"he said \\\"hi\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2024-05-01T10:00:00.1234Z\"}\n"
        );
        let whole = LogEntry {
            time: at("2024-05-01T10:00:00Z"),
            ..entry.clone()
        };
        assert!(String::from_utf8(encode_line(&whole))
            .unwrap()
            .contains("\"time\":\"2024-05-01T10:00:00Z\""));
        assert_eq!(decode_line(&encode_line(&entry)).unwrap(), entry);
        assert_eq!(entry.timestamp_fixed(), "2024-05-01T10:00:00.123400000Z");
    }

    #[test]
    fn frame_header() {
        assert_eq!(
            encode_frame(LogStream::Stdout, b"hello\n"),
            [&[1u8, 0, 0, 0, 0, 0, 0, 6][..], b"hello\n"].concat()
        );
        let big = vec![b'x'; 300];
        let frame = encode_frame(LogStream::Stderr, &big);
        assert_eq!(&frame[..8], &[2, 0, 0, 0, 0, 0, 1, 44]);
        assert_eq!(frame.len(), 308);
    }

    async fn write_log(path: &Path, entries: &[(LogStream, &str, &str)]) {
        let mut out = Vec::new();
        for (stream, time, line) in entries {
            out.extend(encode_line(&LogEntry {
                stream: *stream,
                time: at(time),
                line: line.as_bytes().to_vec(),
            }));
        }
        tokio::fs::write(path, out).await.unwrap();
    }

    async fn collect(path: &Path, opts: LogOptions) -> Vec<String> {
        let mut reader = LogReader::open(path, opts, None).await.unwrap();
        let mut lines = Vec::new();
        while let Some(e) = reader.next().await.unwrap() {
            lines.push(String::from_utf8(e.line).unwrap());
        }
        lines
    }

    #[tokio::test]
    async fn reader_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        write_log(
            &path,
            &[
                (LogStream::Stdout, "2024-01-01T00:00:01Z", "a\n"),
                (LogStream::Stderr, "2024-01-01T00:00:02Z", "b\n"),
                (LogStream::Stdout, "2024-01-01T00:00:03Z", "c\n"),
                (LogStream::Stdout, "2024-01-01T00:00:04Z", "d\n"),
            ],
        )
        .await;
        let all = LogOptions::default();
        assert_eq!(
            collect(&path, all.clone()).await,
            ["a\n", "b\n", "c\n", "d\n"]
        );
        let stderr_only = LogOptions {
            stdout: false,
            ..all.clone()
        };
        assert_eq!(collect(&path, stderr_only).await, ["b\n"]);
        let tail = LogOptions {
            tail: Some(2),
            ..all.clone()
        };
        assert_eq!(collect(&path, tail).await, ["c\n", "d\n"]);
        let tail0 = LogOptions {
            tail: Some(0),
            ..all.clone()
        };
        assert!(collect(&path, tail0).await.is_empty());
        let window = LogOptions {
            since: Some(at("2024-01-01T00:00:02Z")),
            until: Some(at("2024-01-01T00:00:03Z")),
            ..all.clone()
        };
        assert_eq!(collect(&path, window).await, ["b\n", "c\n"]);
        assert!(collect(&dir.path().join("missing"), all).await.is_empty());
    }

    #[tokio::test]
    async fn capture_splits_lines_and_follow_ends_with_capture() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c-json.log");
        let mut capture = LogCapture::start(dir.path(), &log).await.unwrap();
        let io = capture.task_io();
        let mut follower = LogReader::open(&log, LogOptions::default(), Some(capture.subscribe()))
            .await
            .unwrap();

        // Stand in for the task: open the write ends, write, close.
        let mut out = pipe::OpenOptions::new()
            .open_sender(io.stdout.as_ref().unwrap())
            .unwrap();
        let mut err = pipe::OpenOptions::new()
            .open_sender(io.stderr.as_ref().unwrap())
            .unwrap();
        capture.attached();
        out.write_all(b"one\ntw").await.unwrap();
        let first = follower.next().await.unwrap().unwrap();
        assert_eq!(
            (first.stream, first.line.as_slice()),
            (LogStream::Stdout, &b"one\n"[..])
        );
        out.write_all(b"o\n").await.unwrap();
        err.write_all(b"oops").await.unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        out.write_all(&long).await.unwrap();
        drop(out);
        drop(err);
        capture.finish().await.unwrap();

        let mut rest = Vec::new();
        while let Some(e) = follower.next().await.unwrap() {
            rest.push((e.stream, e.line.len(), e.line.ends_with(b"\n")));
        }
        let mut stdout: Vec<_> = rest.iter().filter(|e| e.0 == LogStream::Stdout).collect();
        let stderr: Vec<_> = rest.iter().filter(|e| e.0 == LogStream::Stderr).collect();
        assert_eq!(stderr, [&(LogStream::Stderr, 4, false)]);
        assert_eq!(stdout.remove(0), &(LogStream::Stdout, 4, true));
        assert_eq!(
            stdout,
            [
                &(LogStream::Stdout, MAX_LINE, false),
                &(LogStream::Stdout, 10, false)
            ]
        );
        assert!(!dir.path().join("init-stdout").exists());
    }
}
