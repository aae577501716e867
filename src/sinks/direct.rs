//! A part file written around the page cache (`O_DIRECT`), in large aligned blocks, by a
//! writer thread.
//!
//! The job never reads its part files back, so buffered writes only copied every byte
//! into fresh page-cache pages for the kernel's writeback to copy out again. On the bench
//! VM, where a fresh page is slow to touch, that copy was ~9 % of a run's CPU samples with
//! the state; direct writes of 1 MiB blocks cost a fraction of it (docs/PERFORMANCE-HISTORY.md).
//! A direct write waits for the device, so full blocks go to one writer thread shared by
//! every file: the workers sleeping in those writes had been ~4 % of their time.
//! Where the file system refuses `O_DIRECT` (tmpfs before Linux 6.6, some network mounts)
//! the file is written through the page cache.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use crate::parked::ParkedQueue;

/// Bytes written per direct write: large enough that the device, not the call, sets
/// the pace.
const BLOCK: usize = 1 << 20;
/// Alignment of direct writes' memory, length and file offset (the logical block size
/// of every common device is this or smaller).
const ALIGN: usize = 4096;
/// Full blocks of one file with the writer thread at a time: one is written while the
/// next fills (filling a block takes far longer than writing it).
const IN_FLIGHT: usize = 2;

/// [`BLOCK`] bytes of aligned memory (inside a slightly larger allocation).
struct Block {
    memory: Vec<u8>,
    start: usize,
}

impl Block {
    /// A block from the shared free list, or a new one. Blocks are never freed: a new
    /// block is fresh pages for the kernel to zero.
    fn take() -> Block {
        let reused = FREE_BLOCKS.lock().expect("free blocks").pop();
        reused.unwrap_or_else(|| {
            let memory = vec![0u8; BLOCK + ALIGN];
            let start = memory.as_ptr().align_offset(ALIGN);
            Block { memory, start }
        })
    }

    /// Returns the block to the free list.
    fn give_back(self) {
        FREE_BLOCKS.lock().expect("free blocks").push(self);
    }

    fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.memory[self.start + range.start..self.start + range.end]
    }

    fn bytes_mut(&mut self, range: std::ops::Range<usize>) -> &mut [u8] {
        &mut self.memory[self.start + range.start..self.start + range.end]
    }
}

static FREE_BLOCKS: Mutex<Vec<Block>> = Mutex::new(Vec::new());

/// A full block for the writer thread to write at `at`.
struct Job {
    file: Arc<File>,
    at: u64,
    block: Block,
    done: Sender<Done>,
}

/// A written (or refused) block, back to its file.
struct Done {
    at: u64,
    block: Block,
    result: io::Result<()>,
}

/// The writer thread's queue, started on first use. One thread for every file: it only
/// waits on the device, and it writes each file's blocks in the order given.
fn writer() -> &'static ParkedQueue<Job> {
    static WRITER: OnceLock<ParkedQueue<Job>> = OnceLock::new();
    WRITER.get_or_init(|| {
        ParkedQueue::start("part-writer", |job: Job| {
            let result = job.file.write_all_at(job.block.bytes(0..BLOCK), job.at);
            // The file may be gone (its worker panicked): nothing waits for it.
            let _ = job.done.send(Done {
                at: job.at,
                block: job.block,
                result,
            });
        })
    })
}

/// Whether a direct write failed because the file system refuses direct I/O for it.
fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// A new file written in [`BLOCK`]s; [`DirectFile::finish`] writes the tail and syncs.
pub struct DirectFile {
    file: Arc<File>,
    path: PathBuf,
    /// Whether `file` was opened with `O_DIRECT`.
    direct: bool,
    /// The block being filled and the bytes of it in use.
    block: Block,
    len: usize,
    /// Bytes handed out so far: the file offset of `block` (a multiple of [`BLOCK`]).
    written: u64,
    /// Blocks with the writer thread; they come back on `done`.
    in_flight: usize,
    done_sender: Sender<Done>,
    done: Receiver<Done>,
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
            Err(e) if refused(&e) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        let (done_sender, done) = channel();
        Ok(DirectFile {
            file: Arc::new(file),
            path: path.to_owned(),
            direct,
            block: Block::take(),
            len: 0,
            written: 0,
            in_flight: 0,
            done_sender,
            done,
        })
    }

    /// Hands the full block to the writer thread (while direct; else writes it here).
    fn submit(&mut self) -> io::Result<()> {
        if !self.direct {
            return self.write_block(0..BLOCK);
        }
        while self.in_flight >= IN_FLIGHT {
            self.complete_one()?;
        }
        let job = Job {
            file: self.file.clone(),
            at: self.written,
            block: std::mem::replace(&mut self.block, Block::take()),
            done: self.done_sender.clone(),
        };
        writer().send(job);
        self.in_flight += 1;
        self.written += BLOCK as u64;
        Ok(())
    }

    /// Waits for the oldest block with the writer thread. A block the file system
    /// refused to write directly is written here through the page cache, as is every
    /// later one.
    fn complete_one(&mut self) -> io::Result<()> {
        let done = self
            .done
            .recv()
            .expect("the writer thread answers every block");
        self.in_flight -= 1;
        match done.result {
            Err(e) if refused(&e) => {
                if self.direct {
                    self.stop_direct()?;
                }
                self.file
                    .write_all_at(done.block.bytes(0..BLOCK), done.at)?;
            }
            result => result?,
        }
        done.block.give_back();
        Ok(())
    }

    /// Writes bytes `range` of the block being filled at the end of the file, here
    /// (whole [`ALIGN`]s while direct). A file system that took `O_DIRECT` at open but
    /// refuses the write gets this and every later write through the page cache.
    fn write_block(&mut self, range: std::ops::Range<usize>) -> io::Result<()> {
        let len = range.len();
        match self
            .file
            .write_all_at(self.block.bytes(range.clone()), self.written)
        {
            Err(e) if self.direct && refused(&e) => {
                self.stop_direct()?;
                self.file
                    .write_all_at(self.block.bytes(range), self.written)?;
            }
            result => result?,
        }
        self.written += len as u64;
        Ok(())
    }

    /// Writes through the page cache from here on.
    fn stop_direct(&mut self) -> io::Result<()> {
        self.file = Arc::new(OpenOptions::new().write(true).open(&self.path)?);
        self.direct = false;
        Ok(())
    }

    /// Waits for the writer thread, writes what is buffered and syncs the file's data.
    pub fn finish(mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.complete_one()?;
        }
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
        self.file.sync_data()?;
        self.block.give_back();
        Ok(())
    }
}

impl Write for DirectFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(BLOCK - self.len);
        self.block
            .bytes_mut(self.len..self.len + n)
            .copy_from_slice(&bytes[..n]);
        self.len += n;
        if self.len == BLOCK {
            self.submit()?;
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
    fn files_written_side_by_side_share_the_writer_thread_and_keep_their_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("{i}.csv")))
            .collect();
        let mut files: Vec<_> = paths
            .iter()
            .map(|p| DirectFile::create(p).unwrap())
            .collect();
        let mut want = vec![Vec::new(); 3];
        for round in 0..40 {
            for (i, f) in files.iter_mut().enumerate() {
                let piece = vec![(round * 3 + i) as u8; 100_000 + i];
                f.write_all(&piece).unwrap();
                want[i].extend_from_slice(&piece);
            }
        }
        for f in files {
            f.finish().unwrap();
        }
        for (p, w) in paths.iter().zip(want) {
            assert!(std::fs::read(p).unwrap() == w);
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
