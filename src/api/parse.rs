//! Parsing what a client controls: percent-encoded keys, query strings, numbers and the
//! `Idempotency-Key` header. Pure functions over bytes; every failure is an `ApiError` the
//! client caused (a 4xx), never a panic.
//!
//! Invariants: a decoded key is 1..=`KEY_BYTES_MAX` bytes; a malformed `%` escape is an error,
//! never passed through; numbers are plain decimal `u64` (no sign, no spaces, no overflow).

use bytes::Bytes;

use super::error::ApiError;
use crate::node::handle::Consistency;

/// Longest key, in bytes after percent-decoding (API.md §3).
pub const KEY_BYTES_MAX: usize = 4096;
/// Longest `Idempotency-Key`, in bytes (API.md §3).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Page size of a listing when the client gives none, and the most it may ask for.
pub const LIST_LIMIT_DEFAULT: usize = 1000;
pub const LIST_LIMIT_MAX: usize = 10_000;

/// Strict percent-decoding: `%XY` with two hex digits, anything else passes as is. With
/// `plus_is_space` (query strings, as in HTML forms and Go's `url.ParseQuery`), `+` is a space.
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<Vec<u8>, ApiError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "malformed percent-encoding at byte {i}"
                        )));
                    }
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A key from the URL path: everything after `/v1/kv/`, percent-decoded.
pub fn key_from_path(raw: &str) -> Result<Bytes, ApiError> {
    let key = percent_decode(raw, false)?;
    check_key(key)
}

/// A key's length rule, for keys from the path or the query (`start_after`).
pub fn check_key(key: Vec<u8>) -> Result<Bytes, ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("empty key"));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(ApiError::key_too_long(key.len()));
    }
    Ok(Bytes::from(key))
}

/// A decoded query string: `(name, value)` pairs in order. Names are compared as UTF-8; values
/// stay bytes (a prefix may be binary).
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, Vec<u8>)>,
}

/// Fault injection for the reliability harness (tests/jepsen): with
/// `ROCINANTE_UNSAFE_LOCAL_READS=1` in its environment, a node serves linearizable reads from its
/// own applied state, exactly like `consistency=stale`. That breaks API.md §5 on purpose, so the
/// harness can show it catches a server that does; `serve` warns loudly when it is on. Read once.
pub const UNSAFE_LOCAL_READS_ENV: &str = "ROCINANTE_UNSAFE_LOCAL_READS";

/// True when `UNSAFE_LOCAL_READS_ENV` is set to `1`.
pub fn unsafe_local_reads() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(UNSAFE_LOCAL_READS_ENV).is_ok_and(|v| v == "1"))
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = String::from_utf8(percent_decode(name, true)?)
                .map_err(|_| ApiError::bad_request("query parameter name is not UTF-8"))?;
            pairs.push((name, percent_decode(value, true)?));
        }
        Ok(Query { pairs })
    }

    /// The last value given for `name` (a repeated parameter: the last one wins).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name).map(|v| parse_u64(name, v)).transpose()
    }

    /// `?redirect=true|false` (also `1|0`); absent is false.
    pub fn redirect(&self) -> Result<bool, ApiError> {
        match self.get("redirect") {
            None => Ok(false),
            Some(b"true") | Some(b"1") | Some(b"") => Ok(true),
            Some(b"false") | Some(b"0") => Ok(false),
            Some(_) => Err(ApiError::bad_request("redirect must be true or false")),
        }
    }

    /// `?consistency=linearizable|lease|stale`; absent is linearizable (API.md §3), unless the
    /// deliberately broken test mode `UNSAFE_LOCAL_READS_ENV` is on.
    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.get("consistency") {
            None | Some(b"linearizable") if unsafe_local_reads() => Ok(Consistency::Stale),
            None | Some(b"linearizable") => Ok(Consistency::Linearizable),
            Some(b"lease") => Ok(Consistency::Lease),
            Some(b"stale") => Ok(Consistency::Stale),
            Some(_) => Err(ApiError::bad_request(
                "consistency must be linearizable, lease or stale",
            )),
        }
    }

    /// `?ttl=`: TTLs are the next issue, so any ttl is refused rather than silently ignored
    /// (a key the client expects to expire must not live forever). `ttl=0` and bad numbers get
    /// their own messages so the contract's 400s already hold.
    pub fn reject_ttl(&self) -> Result<(), ApiError> {
        match self.u64("ttl")? {
            None => Ok(()),
            Some(0) => Err(ApiError::bad_request("ttl must be at least 1 second")),
            Some(_) => Err(ApiError::bad_request("ttl not supported yet")),
        }
    }

    /// `?limit=N`: 1..; larger than `LIST_LIMIT_MAX` is capped to it.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.u64("limit")? {
            None => Ok(LIST_LIMIT_DEFAULT),
            Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => Ok(usize::try_from(n).map_or(LIST_LIMIT_MAX, |n| n.min(LIST_LIMIT_MAX))),
        }
    }
}

/// A plain decimal u64: no sign, no whitespace, at most u64::MAX.
pub fn parse_u64(name: &str, value: &[u8]) -> Result<u64, ApiError> {
    let bad = || ApiError::bad_request(format!("{name} must be a whole number 0..=2^64-1"));
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    text.parse::<u64>().map_err(|_| bad())
}

/// The `Idempotency-Key` header, if any: exactly one, 1..=128 bytes.
pub fn idempotency_key(headers: &hyper::HeaderMap) -> Result<Option<Bytes>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "more than one Idempotency-Key header",
        ));
    }
    let len = first.as_bytes().len();
    if len == 0 || len > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1..={IDEMPOTENCY_KEY_BYTES_MAX} bytes, got {len}"
        )));
    }
    Ok(Some(Bytes::copy_from_slice(first.as_bytes())))
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The request fingerprint kept with an Idempotency-Key: FNV-1a 64 over method, path, query
/// and body, each followed by a 0xff byte (which cannot occur in a method, path or query, so
/// the parts cannot run into each other). Stable across versions and machines: it is stored in
/// the replicated state.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for part in [method.as_bytes(), path.as_bytes(), query.as_bytes(), body] {
        for &b in part.iter().chain(std::iter::once(&0xffu8)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb", false).unwrap(), b"a/b");
        assert_eq!(percent_decode("a+b", false).unwrap(), b"a+b");
        assert_eq!(percent_decode("a+b", true).unwrap(), b"a b");
        assert_eq!(percent_decode("%ff%00", false).unwrap(), vec![0xff, 0]);
        for bad in ["%", "%4", "%zz", "a%g1", "%%"] {
            assert!(percent_decode(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_have_length_limits() {
        assert!(key_from_path("").is_err());
        assert_eq!(key_from_path("a/b").unwrap(), Bytes::from_static(b"a/b"));
        assert!(key_from_path(&"k".repeat(KEY_BYTES_MAX)).is_ok());
        let e = key_from_path(&"k".repeat(KEY_BYTES_MAX + 1)).unwrap_err();
        assert_eq!(e.code, "key_too_long");
    }

    #[test]
    fn numbers_are_plain_u64() {
        assert_eq!(parse_u64("n", b"0").unwrap(), 0);
        assert_eq!(parse_u64("n", b"18446744073709551615").unwrap(), u64::MAX);
        for bad in [
            &b"-1"[..],
            b"",
            b"1.5",
            b"abc",
            b"18446744073709551616",
            b" 1",
            b"+1",
        ] {
            assert!(parse_u64("n", bad).is_err());
        }
    }

    #[test]
    fn query_values_and_limits() {
        let q = Query::parse(Some("prefix=a%2Fb&limit=99999999999&redirect=true")).unwrap();
        assert_eq!(q.get("prefix"), Some(&b"a/b"[..]));
        assert_eq!(q.limit().unwrap(), LIST_LIMIT_MAX);
        assert!(q.redirect().unwrap());
        assert!(Query::parse(Some("limit=0")).unwrap().limit().is_err());
        assert!(Query::parse(Some("limit=-3")).unwrap().limit().is_err());
        assert!(
            Query::parse(Some("consistency=weird"))
                .unwrap()
                .consistency()
                .is_err()
        );
        assert!(Query::parse(Some("x=%zz")).is_err());
    }

    #[test]
    fn fingerprint_is_fnv1a_and_separates_parts() {
        // FNV-1a 64 of the empty input is the offset basis; ours adds the separators.
        assert_ne!(
            fingerprint("PUT", "/a", "", b"b"),
            fingerprint("PUT", "/ab", "", b"")
        );
        assert_eq!(
            fingerprint("PUT", "/a", "x=1", b"v"),
            fingerprint("PUT", "/a", "x=1", b"v")
        );
    }
}
