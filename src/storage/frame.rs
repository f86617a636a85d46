//! The frame codec: how one record is laid out in a segment file, and how a byte slice is
//! judged to hold a whole record, a torn tail or corruption. Pure: no I/O, no allocation on
//! decode.
//!
//! Invariant: `decode` never guesses. It returns `Record` only when the CRC over the length,
//! the kind and the payload matches; `Incomplete` only when the bytes end before the record the
//! header describes does (what a crash in the middle of a write leaves); `Corrupt` otherwise.
//!
//! ## Frame layout (all integers little-endian)
//!
//! ```text
//! offset  size  field
//! 0       4     crc           u32, CRC-32 (IEEE, crc32fast) over bytes 4..9+n: the length, the
//!                             kind and the payload (placed first so the covered bytes are
//!                             contiguous and checked in one pass)
//! 4       4     payload_len   u32, number of payload bytes n (at most PAYLOAD_BYTES_MAX)
//! 8       1     kind          u8, see `record.rs` (0 is never valid, so zeroed disk is never
//!                             a record)
//! 9       n     payload       the record's bytes (see `record.rs`)
//! ```
//!
//! What the frame does NOT protect against: a whole record (or a whole file) that is lost,
//! duplicated, reordered or replaced by an older valid copy (a stale or misdirected write); a
//! corruption that happens to keep the CRC-32 valid (about 1 in 2^32 for random damage);
//! records cut off exactly at a record boundary (indistinguishable from never written, which is
//! why only acknowledged, fsynced batches are promised). Ordering and gaps are checked one level
//! up, by `recovery.rs` (entry indexes must be contiguous, segment headers must match names).

/// Bytes before the payload: crc (4) + payload_len (4) + kind (1).
pub const HEADER_BYTES: usize = 9;

/// Largest payload a frame may carry: 256 MiB. A header claiming more is corruption, not a
/// torn tail, so a damaged length field cannot make the decoder wait for bytes forever.
pub const PAYLOAD_BYTES_MAX: u32 = 256 << 20;

/// What `decode` found at the start of a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checksummed record; `len` is the number of bytes it occupies (header included).
    Record {
        kind: u8,
        payload: &'a [u8],
        len: usize,
    },
    /// The slice ends before the record does: a torn tail, or an empty slice.
    Incomplete,
    /// The bytes cannot be a record (bad CRC, length over the maximum, kind 0). `offset` is
    /// relative to the start of the slice given to `decode` (always 0 today; kept so callers
    /// add their own base and report a file offset).
    Corrupt { offset: usize, reason: &'static str },
}

/// Append one frame to `buf`. The payload is written by `write_payload` straight into `buf`, so
/// a whole batch is encoded into one reused buffer with no per-record allocation.
pub fn encode(buf: &mut Vec<u8>, kind: u8, write_payload: impl FnOnce(&mut Vec<u8>)) {
    assert!(
        kind != 0,
        "kind 0 is reserved so that zeroed bytes never decode"
    );
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_BYTES]);
    write_payload(buf);
    let payload_len = buf.len() - start - HEADER_BYTES;
    assert!(
        payload_len <= PAYLOAD_BYTES_MAX as usize,
        "record payload too large"
    );
    buf[start + 4..start + 8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    buf[start + 8] = kind;
    let crc = crc32fast::hash(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Judge the bytes at the start of `bytes`: a record, a torn tail, or corruption.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < HEADER_BYTES {
        return Decoded::Incomplete;
    }
    let crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let payload_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let kind = bytes[8];
    if payload_len > PAYLOAD_BYTES_MAX {
        return Decoded::Corrupt {
            offset: 0,
            reason: "record length over the maximum",
        };
    }
    let len = HEADER_BYTES + payload_len as usize;
    if bytes.len() < len {
        return Decoded::Incomplete;
    }
    if crc32fast::hash(&bytes[4..len]) != crc {
        return Decoded::Corrupt {
            offset: 0,
            reason: "checksum mismatch",
        };
    }
    if kind == 0 {
        return Decoded::Corrupt {
            offset: 0,
            reason: "record kind 0",
        };
    }
    Decoded::Record {
        kind,
        payload: &bytes[HEADER_BYTES..len],
        len,
    }
}

/// True if a whole valid record starts anywhere in `bytes` at or after offset `from`. Recovery
/// uses it to tell a torn tail (nothing valid after the damage) from damage in the middle of
/// the log (acknowledged records after it, which must never be cut off).
///
/// Cost: each offset is rejected after reading 9 bytes unless its length field fits in the
/// remaining bytes, in which case the CRC is computed; on real tails (zeros or a partial
/// record) this is linear.
pub fn any_record_from(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| matches!(decode(&bytes[at..]), Decoded::Record { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, kind, |b| b.extend_from_slice(payload));
        buf
    }

    #[test]
    fn round_trip() {
        let buf = frame(3, b"hello");
        assert_eq!(buf.len(), HEADER_BYTES + 5);
        assert_eq!(
            decode(&buf),
            Decoded::Record {
                kind: 3,
                payload: b"hello",
                len: 14
            }
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = frame(1, b"some payload");
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let buf = frame(2, b"payload bytes");
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            // A flip in the length field may make the record look longer (Incomplete) or
            // shorter (Corrupt); it must never decode as a record.
            assert!(
                !matches!(decode(&damaged), Decoded::Record { .. }),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn zeros_are_never_a_record() {
        assert!(matches!(decode(&[0u8; 64]), Decoded::Corrupt { .. }));
        assert_eq!(any_record_from(&[0u8; 64], 0), None);
    }

    #[test]
    fn oversized_length_is_corrupt() {
        let mut buf = frame(1, b"x");
        buf[4..8].copy_from_slice(&(PAYLOAD_BYTES_MAX + 1).to_le_bytes());
        assert!(matches!(decode(&buf), Decoded::Corrupt { .. }));
    }

    #[test]
    fn finds_a_record_after_garbage() {
        let mut buf = vec![0xffu8; 7];
        buf.extend(frame(1, b"abc"));
        assert_eq!(any_record_from(&buf, 0), Some(7));
    }
}
