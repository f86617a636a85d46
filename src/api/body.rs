//! Reading a request body with a hard limit and a deadline, so no client can make the node
//! buffer more than `max_value_bytes` or hold a handler forever.
//!
//! At the limit: the request is answered `413 value_too_large`. Before answering, up to
//! `DISCARD_BYTES_MAX` more bytes of the oversized body are read and dropped (not kept), so
//! the client is not reset mid-upload and actually sees the 413; past that the connection is
//! simply closed after the answer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Body as _, Incoming};

use super::error::ApiError;

/// Most bytes of an oversized body read and dropped before answering 413.
pub const DISCARD_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Read the whole body, at most `max_bytes`, within `timeout`. With `expects_continue` (the
/// client sent `Expect: 100-continue` and waits for our go-ahead), a body declared too large
/// is refused before a byte of it is sent.
pub async fn read_limited(
    body: Incoming,
    max_bytes: usize,
    timeout: Duration,
    expects_continue: bool,
) -> Result<Bytes, ApiError> {
    let declared = body.size_hint().lower();
    let too_large_declared = declared > max_bytes as u64;
    if too_large_declared && expects_continue {
        return Err(ApiError::value_too_large(max_bytes));
    }
    match tokio::time::timeout(timeout, collect(body, max_bytes, too_large_declared)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

async fn collect(
    mut body: Incoming,
    max_bytes: usize,
    mut too_large: bool,
) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    let mut discarded = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if too_large {
                ApiError::value_too_large(max_bytes)
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no value bytes
        };
        if too_large || buf.len() + data.len() > max_bytes {
            too_large = true;
            buf.clear();
            discarded += data.len();
            if discarded > DISCARD_BYTES_MAX {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if too_large {
        return Err(ApiError::value_too_large(max_bytes));
    }
    Ok(buf.freeze())
}
