//! The few filesystem calls whose durability rules every storage file shares: directory fsync
//! after every create, rename and delete, and attaching the path to every I/O error.
//!
//! Invariant: an fsync failure is returned, never retried. After a failed fsync the kernel may
//! have dropped the dirty pages and cleared the error, so a retry could "succeed" over lost
//! data; the only safe reaction is to stop the node and recover from what is on disk.

use std::fs::File;
use std::path::Path;

use super::StorageError;

/// Wrap an `io::Error` with the path it concerns.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// fsync a directory, so that a file created, renamed or deleted in it stays so after a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = File::open(dir).map_err(io_err(dir))?;
    handle.sync_all().map_err(io_err(dir))
}

/// Delete a file and make the deletion durable.
pub fn remove_durably(dir: &Path, path: &Path) -> Result<(), StorageError> {
    std::fs::remove_file(path).map_err(io_err(path))?;
    sync_dir(dir)
}
