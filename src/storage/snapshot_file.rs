//! Snapshot files: one state machine image plus the `SnapshotMeta` it ends at (§7), written so
//! that a crash at any moment leaves either the old snapshot or the new one, both whole.
//!
//! Invariants:
//! - A snapshot is written to `<name>.tmp`, fsynced, renamed to `<name>`, and the directory is
//!   fsynced; only then are older snapshots (and stale temp files) deleted, each deletion
//!   followed by a directory fsync. So a valid snapshot exists at every instant after the first.
//! - A temp file is never loaded. A named snapshot whose checksum fails is corruption: the node
//!   refuses to start rather than fall back silently to an older state.
//!
//! ## File layout (all integers little-endian)
//!
//! ```text
//! offset  size  field
//! 0       8     magic "ROCISNP\0"
//! 8       4     version u32 (=1)
//! 12      8     last_included_index u64 (also the number in the file name)
//! 20      8     last_included_term u64
//! 28      4     voter count v u32, then v x u64 node ids
//! ..      4     learner count l u32, then l x u64 node ids
//! ..      8     data_len u64
//! ..      n     data: the state machine's bytes, opaque here
//! end-4   4     crc u32, CRC-32 (crc32fast) over every byte before it
//! ```
//!
//! Not protected: a whole snapshot file replaced by an older valid one, or a CRC-32 collision.
//! The file is read whole into memory; its size is bounded by the state machine's.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StorageError;
use super::fsio::{io_err, remove_durably, sync_dir};
use crate::raft::{Index, NodeId, SnapshotMeta, Term};

const MAGIC: &[u8; 8] = b"ROCISNP\0";
const VERSION: u32 = 1;
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// `00000000000000000042.snap` for a snapshot ending at index 42.
pub fn file_name(last_included_index: Index) -> String {
    format!("{:020}{SUFFIX}", last_included_index.0)
}

fn parse_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Index)
}

/// A snapshot file and the index in its name.
pub type Named = (Index, PathBuf);

/// Snapshot files in `dir` sorted by index, and leftover temp files from interrupted saves.
pub fn list(dir: &Path) -> Result<(Vec<Named>, Vec<PathBuf>), StorageError> {
    let (mut snapshots, mut temps) = (Vec::new(), Vec::new());
    for dirent in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let dirent = dirent.map_err(io_err(dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = parse_name(name) {
            snapshots.push((index, dirent.path()));
        } else if name.ends_with(TMP_SUFFIX) {
            temps.push(dirent.path());
        }
    }
    snapshots.sort();
    Ok((snapshots, temps))
}

/// Everything but the data and the trailing CRC.
fn encode_header(meta: &SnapshotMeta, data_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + 8 * (meta.voters.len() + meta.learners.len()));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&meta.last_included_index.0.to_le_bytes());
    out.extend_from_slice(&meta.last_included_term.0.to_le_bytes());
    for ids in [&meta.voters, &meta.learners] {
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }
    out.extend_from_slice(&(data_len as u64).to_le_bytes());
    out
}

/// Durably write a snapshot, then delete every other snapshot and temp file.
pub fn save(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<PathBuf, StorageError> {
    let name = file_name(meta.last_included_index);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let header = encode_header(meta, data.len());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    hasher.update(data);
    let crc = hasher.finalize();
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(&header).map_err(io_err(&tmp))?;
    file.write_all(data).map_err(io_err(&tmp))?;
    file.write_all(&crc.to_le_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    sync_dir(dir)?;
    std::fs::rename(&tmp, &path).map_err(io_err(&tmp))?;
    sync_dir(dir)?;
    // The new snapshot is durable: only now may older ones go.
    let (snapshots, temps) = list(dir)?;
    for old in snapshots
        .into_iter()
        .map(|(_, p)| p)
        .chain(temps)
        .filter(|p| *p != path)
    {
        remove_durably(dir, &old)?;
    }
    Ok(path)
}

/// A little cursor that turns "ran out of bytes" into a corruption reason.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], &'static str> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("snapshot shorter than its header says")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }
    fn ids(&mut self) -> Result<Vec<NodeId>, &'static str> {
        let count = self.u32()? as usize;
        if count > self.bytes.len() / 8 {
            return Err("snapshot member count larger than the file");
        }
        (0..count).map(|_| self.u64().map(NodeId)).collect()
    }
}

fn parse_header(r: &mut Reader) -> Result<(SnapshotMeta, usize), &'static str> {
    if r.take(8)? != MAGIC {
        return Err("not a Rocinante snapshot");
    }
    if r.u32()? != VERSION {
        return Err("unsupported snapshot version");
    }
    let last_included_index = Index(r.u64()?);
    let last_included_term = Term(r.u64()?);
    let voters = r.ids()?;
    let learners = r.ids()?;
    let data_len = r.u64()? as usize;
    Ok((
        SnapshotMeta {
            last_included_index,
            last_included_term,
            voters,
            learners,
        },
        data_len,
    ))
}

/// Parse and verify a snapshot file's bytes. The error is (offset, reason).
pub fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, Vec<u8>), (u64, &'static str)> {
    if bytes.len() < 4 {
        return Err((0, "snapshot file too short"));
    }
    let body = &bytes[..bytes.len() - 4];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[bytes.len() - 4..]);
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(((bytes.len() - 4) as u64, "snapshot checksum mismatch"));
    }
    let mut r = Reader { bytes: body, at: 0 };
    let (meta, data_len) = parse_header(&mut r).map_err(|reason| (r.at as u64, reason))?;
    if body.len() - r.at != data_len {
        return Err((r.at as u64, "snapshot data length does not match the file"));
    }
    Ok((meta, body[r.at..].to_vec()))
}

/// Load and verify the snapshot at `path`, named for `index`.
pub fn load(path: &Path, index: Index) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let corrupt = |(offset, reason): (u64, &str)| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    };
    let (meta, data) = decode(&bytes).map_err(corrupt)?;
    if meta.last_included_index != index {
        return Err(corrupt((12, "snapshot index does not match its file name")));
    }
    Ok((meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
        let mut out = encode_header(meta, data.len());
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn round_trip_and_every_bit_flip_detected() {
        let meta = SnapshotMeta {
            last_included_index: Index(10),
            last_included_term: Term(2),
            voters: vec![NodeId(1), NodeId(2)],
            learners: vec![NodeId(3)],
        };
        let bytes = encode(&meta, b"state");
        assert_eq!(decode(&bytes), Ok((meta, b"state".to_vec())));
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }
}
