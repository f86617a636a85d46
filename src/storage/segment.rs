//! Segment files: their names, how a new one is created, and the scan that walks one segment's
//! bytes record by record and says where (if anywhere) they stop being valid.
//!
//! Invariants:
//! - A segment is named `<first_index>.wal`, the index zero-padded to 20 digits (u64::MAX has
//!   20), so sorting names sorts segments by the first index they were created for, which is
//!   also the order they were written in (`wal.rs` never creates a segment whose name is not
//!   above every existing one).
//! - Every segment starts with a SegmentHeader record (carrying the same first index as its
//!   name) followed by a HardState record with the hard state current at its creation, so
//!   deleting older segments never loses the hard state.
//! - A new segment is complete (header, hard state, fdatasync, directory fsync) before any
//!   entry is written into it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::StorageError;
use super::frame::{self, Decoded};
use super::fsio::{io_err, sync_dir};
use super::record::{self, Record};
use crate::raft::{HardState, Index};

/// Extension of segment files.
pub const SEGMENT_EXT: &str = "wal";
/// Suffix given to the bytes cut off a torn tail, kept beside the segment for operators.
pub const BROKEN_SUFFIX: &str = ".broken";

/// `00000000000000000001.wal` for index 1.
pub fn file_name(first_index: Index) -> String {
    format!("{:020}.{SEGMENT_EXT}", first_index.0)
}

/// The first index encoded in a segment file name, or `None` if the name is not a segment's.
pub fn parse_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Index)
}

/// The segments in `dir`, sorted by first index (their log order).
pub fn list(dir: &Path) -> Result<Vec<(Index, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    for dirent in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let dirent = dirent.map_err(io_err(dir))?;
        if let Some(first) = dirent.file_name().to_str().and_then(parse_name) {
            segments.push((first, dirent.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Create segment `first_index` holding its header and `hard_state`, durably (fdatasync, then
/// directory fsync). Returns the file opened for appending and its length.
pub fn create(
    dir: &Path,
    first_index: Index,
    hard_state: &HardState,
    buf: &mut Vec<u8>,
) -> Result<(File, PathBuf, u64), StorageError> {
    let path = dir.join(file_name(first_index));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    buf.clear();
    write_preamble(buf, first_index, hard_state);
    file.write_all(buf).map_err(io_err(&path))?;
    file.sync_data().map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok((file, path, buf.len() as u64))
}

/// Encode the two records every segment starts with.
pub fn write_preamble(buf: &mut Vec<u8>, first_index: Index, hard_state: &HardState) {
    record::encode_segment_header(buf, first_index);
    record::encode_hard_state(buf, hard_state);
}

/// Where a segment's bytes stopped being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// File offset of the first byte that is not part of a valid record.
    pub offset: u64,
    pub reason: String,
    /// Offset of a valid record somewhere after the damage, if there is one. Its presence means
    /// the damage is not a torn tail: records were written (and maybe acknowledged) after it.
    pub valid_record_after: Option<u64>,
    /// The frame was valid but its payload did not parse, or the header was wrong: never a
    /// torn write, always corruption.
    pub malformed: bool,
}

impl Damage {
    /// A torn tail may be cut off only if nothing valid follows it and it is not malformed.
    pub fn is_torn_tail(&self) -> bool {
        !self.malformed && self.valid_record_after.is_none()
    }
}

/// Walk `file` (the whole segment named `first_index`), handing each record and its offset to
/// `on_record`. Returns `Ok(None)` if every byte belongs to a valid record, `Ok(Some(damage))`
/// if they stop being valid, and `Err` only if `on_record` fails (a replay inconsistency).
pub fn scan(
    first_index: Index,
    file: &Bytes,
    mut on_record: impl FnMut(u64, Record) -> Result<(), (String, bool)>,
) -> Result<Option<Damage>, Damage> {
    let mut at = 0usize;
    while at < file.len() {
        let damage = |reason: String, malformed: bool| Damage {
            offset: at as u64,
            reason,
            valid_record_after: frame::any_record_from(file, at + 1).map(|o| o as u64),
            malformed,
        };
        let (kind, payload, len) = match frame::decode(&file[at..]) {
            Decoded::Record { kind, payload, len } => (kind, payload, len),
            Decoded::Incomplete => return Ok(Some(damage("incomplete record".into(), false))),
            Decoded::Corrupt { reason, .. } => return Ok(Some(damage(reason.into(), false))),
        };
        let parsed = match record::parse(kind, file, payload) {
            Ok(parsed) => parsed,
            Err(reason) => return Ok(Some(damage(reason.into(), true))),
        };
        let is_header = matches!(parsed, Record::SegmentHeader { .. });
        if (at == 0) != is_header {
            let reason = if at == 0 {
                "missing segment header"
            } else {
                "header inside segment"
            };
            return Ok(Some(damage(reason.into(), true)));
        }
        if let Record::SegmentHeader { first_index: named } = parsed {
            if named != first_index {
                let reason = format!("header says first index {named}, name says {first_index}");
                return Ok(Some(damage(reason, true)));
            }
        } else if let Err((reason, malformed)) = on_record(at as u64, parsed) {
            return Err(damage(reason, malformed));
        }
        at += len;
    }
    Ok(None)
}

/// Cut a torn tail off the last segment: copy the bytes from `offset` on to
/// `<segment>.broken` (fsynced), then shorten the segment to `offset` (fsynced), then fsync the
/// directory. The broken file is written first, so a crash in between loses nothing.
pub fn cut_tail(
    dir: &Path,
    path: &Path,
    file: &[u8],
    offset: u64,
) -> Result<PathBuf, StorageError> {
    // An earlier repair's bytes are never overwritten: `.broken`, then `.broken.1`, ...
    let broken = (0u32..)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            name.push(BROKEN_SUFFIX);
            if n > 0 {
                name.push(format!(".{n}"));
            }
            PathBuf::from(name)
        })
        .find(|candidate| !candidate.exists())
        .unwrap_or_else(|| path.with_extension("broken"));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&broken)
        .map_err(io_err(&broken))?;
    out.write_all(&file[offset as usize..])
        .map_err(io_err(&broken))?;
    out.sync_all().map_err(io_err(&broken))?;
    sync_dir(dir)?;
    let segment = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    segment.set_len(offset).map_err(io_err(path))?;
    segment.sync_all().map_err(io_err(path))?;
    sync_dir(dir)?;
    Ok(broken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_first_index() {
        assert_eq!(file_name(Index(1)), "00000000000000000001.wal");
        assert_eq!(file_name(Index(u64::MAX)).len(), 24);
        assert_eq!(parse_name("00000000000000000042.wal"), Some(Index(42)));
        assert_eq!(parse_name("42.wal"), None);
        assert_eq!(parse_name("00000000000000000042.wal.broken"), None);
        assert_eq!(parse_name("0000000000000000004x.wal"), None);
        let mut names: Vec<String> = [9u64, 100, 11, 1].map(|i| file_name(Index(i))).to_vec();
        names.sort();
        let parsed: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_name(n))
            .map(|i| i.0)
            .collect();
        assert_eq!(parsed, vec![1, 9, 11, 100]);
    }

    #[test]
    fn scan_reports_torn_tail_and_mid_damage() {
        let mut buf = Vec::new();
        write_preamble(&mut buf, Index(1), &HardState::default());
        let whole = buf.len();
        record::encode_truncate(&mut buf, Index(0));
        let file = Bytes::from(buf[..buf.len() - 1].to_vec());
        let damage = scan(Index(1), &file, |_, _| Ok(())).expect("no replay error");
        let damage = damage.expect("damaged");
        assert_eq!(damage.offset, whole as u64);
        assert!(damage.is_torn_tail());

        let mut mid = buf.clone();
        mid[whole - 1] ^= 0x10; // inside the hard state record, with a valid record after it
        let damage = scan(Index(1), &Bytes::from(mid), |_, _| Ok(())).expect("no replay error");
        assert!(!damage.expect("damaged").is_torn_tail());

        let wrong_name = scan(Index(2), &Bytes::from(buf), |_, _| Ok(())).expect("no error");
        assert!(wrong_name.expect("damaged").malformed);
    }
}
