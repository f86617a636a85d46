//! The primitives every kv byte format is built from: unsigned LEB128 varints, length-prefixed
//! byte strings and fixed little-endian u64s, with a bounds-checked reader.
//!
//! Invariants: the reader never panics and never allocates more than the input it was given
//! (a length is checked against the remaining bytes before anything is copied); varints are
//! canonical (no redundant continuation bytes, at most 10 bytes, no bits beyond 64), so every
//! value has exactly one encoding and `encode(decode(b)) == b` for every accepted `b`.

/// Why bytes could not be decoded. Decoding is total: any input gives a value or one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown {what} format version {version}")]
    UnknownVersion { what: &'static str, version: u8 },
    #[error("truncated while reading {0}")]
    Truncated(&'static str),
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("varint for {0} is longer than 64 bits or not canonical")]
    BadVarint(&'static str),
    #[error("{0} trailing bytes after the end of the value")]
    TrailingBytes(usize),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Append `v` as an unsigned LEB128 varint: 7 bits per byte, least significant group first,
/// high bit set on every byte but the last. 1 byte for < 128, at most 10 bytes.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a byte string as `varint(len) ++ bytes`.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Append a u64 as 8 little-endian bytes (used for hashes, whose varint would be ~10 bytes).
pub fn put_u64_le(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A cursor over untrusted bytes. Every method checks bounds and names what it was reading.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated(what))?;
        self.buf = rest;
        Ok(b)
    }

    /// A 0/1 flag byte; anything else is rejected so that every flag has one encoding.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(what)),
        }
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let group = u64::from(b & 0x7f);
            // The 10th byte may carry only the single remaining bit (bit 63).
            if i == 9 && group > 1 {
                return Err(DecodeError::BadVarint(what));
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                // A last byte of 0 after other bytes is a redundant (non-canonical) encoding.
                if i > 0 && b == 0 {
                    return Err(DecodeError::BadVarint(what));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint(what))
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let raw = self.take(8, what)?;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(raw);
        Ok(u64::from_le_bytes(arr))
    }

    /// `n` raw bytes, borrowed from the input.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A `varint(len) ++ bytes` string. The length is checked against the remaining input
    /// first, so a hostile length cannot make us allocate.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(what))?;
        self.take(len, what)
    }

    /// A count of items that each take at least `min_item_bytes`: rejected at once if the
    /// input cannot possibly hold that many (so a hostile count cannot drive an allocation).
    pub fn count(
        &mut self,
        what: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.varint(what)?;
        let fits = (self.buf.len() / min_item_bytes.max(1)) as u64;
        if n > fits {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n as usize)
    }

    /// The value must end exactly here.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("v"), Ok(v));
            r.finish().unwrap();
        }
    }

    #[test]
    fn varint_rejects_overlong_and_overflow() {
        assert!(Reader::new(&[0x80, 0x00]).varint("v").is_err());
        assert!(Reader::new(&[0xff; 10]).varint("v").is_err());
        let mut eleven = vec![0xff; 9];
        eleven.push(0x02);
        assert!(Reader::new(&eleven).varint("v").is_err());
        assert!(Reader::new(&[0x80]).varint("v").is_err());
    }
}
