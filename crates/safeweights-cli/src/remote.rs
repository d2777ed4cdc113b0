//! Reading a safetensors file over HTTP(S) with Range requests.
//!
//! Opening costs at most two requests: the first asks for the first
//! [`INITIAL_RANGE`] bytes, which hold the whole header of most files; only
//! a larger header needs a second request for the rest. Tensor data is
//! then fetched by byte range, only what a command needs. A server that
//! answers a Range request with the whole file (status 200) is reported as
//! an error rather than silently downloading everything.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use safeweights::{Header, HeaderLimits};

use crate::exit::CliError;

/// Bytes asked for by the first request.
pub const INITIAL_RANGE: u64 = 64 * 1024;

/// A remote safetensors file whose header has been fetched and validated.
#[derive(Debug)]
pub struct RemoteFile {
    http: Http,
    header: Header,
}

/// The HTTP side of a remote file: where it is, and what fetching it cost.
#[derive(Debug)]
struct Http {
    url: String,
    agent: ureq::Agent,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl RemoteFile {
    /// Fetches and validates the header of the file at `url`. `timeout`
    /// bounds connecting and each read, so a silent server fails instead
    /// of hanging.
    pub fn open(url: &str, timeout: Duration, limits: &HeaderLimits) -> Result<Self, CliError> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .build();
        let http = Http {
            url: url.to_owned(),
            agent,
            requests: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        let (first, file_len) = http.fetch(0, INITIAL_RANGE)?;
        let len = Header::read_header_len(&first, file_len, limits)
            .map_err(|e| CliError::from(e).at(url))?;
        let header_end = 8 + len;
        let json = if header_end <= first.len() as u64 {
            first[8..header_end as usize].to_vec()
        } else {
            let (rest, _) = http.fetch(first.len() as u64, header_end - first.len() as u64)?;
            let mut json = first[8..].to_vec();
            json.extend_from_slice(&rest);
            json
        };
        let header = Header::parse_owned(json, file_len - header_end)
            .map_err(|e| CliError::from(e).at(url))?;
        Ok(RemoteFile { http, header })
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.http.url
    }

    /// Number of HTTP requests made so far.
    pub fn requests(&self) -> u64 {
        self.http.requests.load(Ordering::Relaxed)
    }

    /// Body bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.http.bytes.load(Ordering::Relaxed)
    }

    /// Reads `len` bytes at `offset` from the start of the data section.
    pub fn read_data(&self, offset: u64, len: u64) -> Result<Vec<u8>, CliError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let (bytes, _) = self.http.fetch(self.header.data_start() + offset, len)?;
        if (bytes.len() as u64) < len {
            return Err(CliError::invalid(format!(
                "the server sent {} bytes where {len} were expected; the file changed or is truncated",
                bytes.len()
            ))
            .at(&self.http.url));
        }
        Ok(bytes)
    }
}

impl Http {
    /// One Range request for `len` bytes at absolute `offset`; returns the
    /// body (shorter at the end of the file) and the total file length.
    fn fetch(&self, offset: u64, len: u64) -> Result<(Vec<u8>, u64), CliError> {
        let range = format!("bytes={offset}-{}", offset + len - 1);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match self.agent.get(&self.url).set("Range", &range).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(416, _)) if offset == 0 => {
                return Err(
                    CliError::from(safeweights::Error::FileTooSmall { len: 0 }).at(&self.url)
                )
            }
            Err(ureq::Error::Status(code, response)) => {
                return Err(CliError::input(format!(
                    "the server answered {code} {}",
                    response.status_text()
                ))
                .at(&self.url))
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(transport_error(&self.url, &transport))
            }
        };
        if response.status() != 206 {
            return Err(CliError::input(format!(
                "the server does not support HTTP Range requests (it answered {} instead of 206 Partial Content); \
                 download the file and run the command on the local copy",
                response.status()
            ))
            .at(&self.url));
        }
        let total = content_range(&response, offset).ok_or_else(|| {
            CliError::input(format!(
                "the server sent a Content-Range that does not match the request for {range}"
            ))
            .at(&self.url)
        })?;
        let mut body = Vec::with_capacity(len.min(INITIAL_RANGE * 16) as usize);
        response
            .into_reader()
            .take(len)
            .read_to_end(&mut body)
            .map_err(|e| CliError::from(e).at(&self.url))?;
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok((body, total))
    }
}

/// Parses `Content-Range: bytes START-END/TOTAL`, checking START.
fn content_range(response: &ureq::Response, offset: u64) -> Option<u64> {
    let value = response.header("Content-Range")?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, _) = span.split_once('-')?;
    (start.trim().parse::<u64>().ok()? == offset).then_some(())?;
    total.trim().parse().ok()
}

fn transport_error(url: &str, error: &ureq::Transport) -> CliError {
    // A read timeout is an I/O error of kind TimedOut (or WouldBlock,
    // which is how some platforms report an expired socket timeout).
    let timed_out = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        });
    let message = if timed_out {
        "timed out waiting for the server (raise the limit with --timeout SECONDS)".to_owned()
    } else {
        error.to_string()
    };
    CliError::input(message).at(url)
}
