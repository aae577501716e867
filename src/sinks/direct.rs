//! A part file written around the page cache (`O_DIRECT`), in large aligned blocks.
//!
//! The job never reads its part files back, so buffered writes only copied every byte
//! into fresh page-cache pages for the kernel's writeback to copy out again. On the bench
//! VM, where a fresh page is slow to touch, that copy was ~9 % of a run's CPU samples with
//! the state; direct writes of 1 MiB blocks cost a fraction of it (docs/PERFORMANCE.md).
//! Where the file system refuses `O_DIRECT` (tmpfs before Linux 6.6, some network mounts)
//! the file is written through the page cache.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes written per direct write: large enough that the device, not the call, sets
/// the pace.
const BLOCK: usize = 1 << 20;
/// Alignment of direct writes' memory, length and file offset (the logical block size
/// of every common device is this or smaller).
const ALIGN: usize = 4096;

/// A new file written in [`BLOCK`]s; [`DirectFile::finish`] writes the tail and syncs.
pub struct DirectFile {
    file: File,
    path: PathBuf,
    /// Whether `file` was opened with `O_DIRECT`.
    direct: bool,
    /// `BLOCK + ALIGN` bytes; the block starts at `start` (aligned).
    memory: Vec<u8>,
    start: usize,
    /// Bytes of the block in use.
    len: usize,
    /// Bytes written to the file so far (a multiple of [`BLOCK`] until the end).
    written: u64,
}

impl DirectFile {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(file) => (file, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        let memory = vec![0u8; BLOCK + ALIGN];
        let start = memory.as_ptr().align_offset(ALIGN);
        Ok(DirectFile {
            file,
            path: path.to_owned(),
            direct,
            memory,
            start,
            len: 0,
            written: 0,
        })
    }

    /// Writes bytes `range` of the block at the end of the file (whole [`ALIGN`]s while
    /// direct). A file system that took `O_DIRECT` at open but refuses the write gets this
    /// and every later write through the page cache.
    fn write_block(&mut self, range: std::ops::Range<usize>) -> io::Result<()> {
        let len = range.len();
        let at = self.start + range.start;
        match self
            .file
            .write_all_at(&self.memory[at..at + len], self.written)
        {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.stop_direct()?;
                self.file
                    .write_all_at(&self.memory[at..at + len], self.written)?;
            }
            result => result?,
        }
        self.written += len as u64;
        Ok(())
    }

    /// Writes through the page cache from here on.
    fn stop_direct(&mut self) -> io::Result<()> {
        self.file = OpenOptions::new().write(true).open(&self.path)?;
        self.direct = false;
        Ok(())
    }

    /// Writes what is buffered and syncs the file's data.
    pub fn finish(mut self) -> io::Result<()> {
        let aligned = if self.direct {
            self.len - self.len % ALIGN
        } else {
            self.len
        };
        self.write_block(0..aligned)?;
        if aligned < self.len {
            // The last partial block through the page cache: direct writes need whole
            // blocks, and the file must end where its bytes end.
            self.stop_direct()?;
            self.write_block(aligned..self.len)?;
        }
        self.file.sync_data()
    }
}

impl Write for DirectFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(BLOCK - self.len);
        let at = self.start + self.len;
        self.memory[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        if self.len == BLOCK {
            self.write_block(0..BLOCK)?;
            self.len = 0;
        }
        Ok(n)
    }

    /// Nothing to do: blocks go out when full, the rest at [`DirectFile::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the pieces, the file holds exactly their bytes, in order, at any
        /// length around the block and alignment boundaries.
        #[test]
        fn a_direct_file_holds_exactly_the_bytes_written(
            pieces in prop::collection::vec((0usize..300_000, any::<u8>()), 0..12),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("part.csv");
            let mut f = DirectFile::create(&path).unwrap();
            let mut want = Vec::new();
            for (len, byte) in pieces {
                let piece: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                f.write_all(&piece).unwrap();
                want.extend_from_slice(&piece);
            }
            f.finish().unwrap();
            prop_assert!(std::fs::read(&path).unwrap() == want);
        }
    }

    #[test]
    fn a_file_of_exactly_whole_blocks_has_no_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.csv");
        let mut f = DirectFile::create(&path).unwrap();
        let want: Vec<u8> = (0..2 * BLOCK).map(|i| (i % 251) as u8).collect();
        f.write_all(&want).unwrap();
        f.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
