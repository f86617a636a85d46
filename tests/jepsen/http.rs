//! A minimal blocking HTTP/1.1 client for the harness, over std `TcpStream` with hard
//! timeouts, that classifies every answer the way API.md §3 promises:
//!
//! - could not connect (refused, unreachable, connect timeout): the request never left, so a
//!   write is known NOT applied (`Fate::NotSent`);
//! - sent, then no whole answer in time (timeout, reset, EOF): unknown (`Fate::NoAnswer`);
//! - an answer: status, headers, body.
//!
//! One connection per request (`Connection: close`): simple, and a request can never be
//! answered on a connection another request opened. Answers are bounded by
//! `ANSWER_BYTES_MAX`; longer ones count as no answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest answer read, head and body together: 4 MiB (the final listing of the set workload
/// is the biggest answer, a few hundred KiB).
const ANSWER_BYTES_MAX: usize = 4 << 20;

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Debug)]
pub enum Fate {
    NotSent,
    NoAnswer,
    Answered(Answer),
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// For the whole exchange after connecting.
    pub answer: Duration,
}

/// Send one request; `headers` are extra lines without the final CRLF.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeouts: Timeouts,
) -> Fate {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeouts.connect) else {
        return Fate::NotSent;
    };
    let _ = stream.set_read_timeout(Some(timeouts.answer));
    let _ = stream.set_write_timeout(Some(timeouts.answer));
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    if stream.write_all(&bytes).is_err() {
        // Some bytes may have left: the server may have acted on them.
        return Fate::NoAnswer;
    }
    match read_answer(&mut stream) {
        Some(answer) => Fate::Answered(answer),
        None => Fate::NoAnswer,
    }
}

/// Read until the server closes (we asked it to), then parse. `None` on timeout, reset, an
/// answer over the limit, or bytes that are not an HTTP/1.1 answer.
fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > ANSWER_BYTES_MAX {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().ok()?;
        if body.len() < len {
            return None; // cut off: not a whole answer
        }
        body.truncate(len);
    }
    Some(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if bytes.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}
