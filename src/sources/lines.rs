//! Lines of a JSONL input: read in place from a memory-mapped local file, or copied out
//! of any byte stream.
//!
//! Reading a local file through `read` copied every byte out of the page cache (~8 % of
//! a run's CPU, docs/PERFORMANCE-HISTORY.md); a mapped file is parsed where it lies.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufRead;
use std::sync::{Arc, OnceLock};

use memmap2::{Advice, Mmap, UncheckedAdvice};

use crate::parked::ParkedQueue;

/// Mapped pages already read are released every this many bytes, so an open file holds
/// at most about this much of the job's resident memory (the page cache keeps them).
/// Each release flushes the TLB of every core running the job (an interrupt per core):
/// every 1 MiB that was ~3.8 % of a run's samples, every 8 MiB ~0.7 %, for up to
/// ~100 MiB more peak RSS with the bench's 12 inputs open (docs/PERFORMANCE-HISTORY.md).
const RELEASE_EVERY: usize = 8 << 20;

/// Bytes requested from the device per request: the kernel reads at most the device's
/// readahead window per `POSIX_FADV_WILLNEED` (often 128 KiB-8 MiB), so larger ranges go
/// in pieces of this.
const WILL_NEED_PIECE: usize = 1 << 20;

/// The lines of one input, one at a time.
pub enum Lines {
    /// A local file, mapped.
    Mapped(MappedLines),
    /// Any byte stream (S3 objects, gzip, Kinesis records), copied line by line.
    Buffered {
        /// The stream.
        read: Box<dyn BufRead>,
        /// The current line, with its line end.
        line: Vec<u8>,
        /// The current line is UTF-8.
        valid: bool,
    },
}

/// A mapped file and where reading is in it.
pub struct MappedLines {
    map: Mmap,
    /// Start of the next line.
    next: usize,
    /// The current line, without its `\n`.
    line: (usize, usize),
    /// The current line is UTF-8.
    valid: bool,
    /// Pages before this offset have been released.
    released: usize,
    /// The file, for read-ahead requests.
    file: Arc<File>,
}

impl Lines {
    /// Lines of `read`, copied out through a 64 KiB buffer.
    pub fn buffered(read: Box<dyn BufRead>) -> Lines {
        Lines::Buffered {
            read,
            line: Vec::new(),
            valid: true,
        }
    }

    /// Lines of a local file read in place; `None` if it is empty or cannot be mapped
    /// (then read it as a stream).
    pub fn mapped(file: &std::fs::File) -> Option<Lines> {
        if file.metadata().ok()?.len() == 0 {
            return None;
        }
        // Safety: the job only reads the map, and its inputs are files it replays, not
        // files still being written: a file rewritten in place while mapped would change
        // text already checked as UTF-8, and one truncated would stop the job (SIGBUS),
        // as with any mapped reader (ripgrep's). README.md says so.
        let map = unsafe { Mmap::map(file) }.ok()?;
        let _ = map.advise(Advice::Sequential);
        let file = Arc::new(file.try_clone().ok()?);
        will_need(&file, 0, 2 * RELEASE_EVERY);
        Some(Lines::Mapped(MappedLines {
            map,
            next: 0,
            line: (0, 0),
            valid: true,
            released: 0,
            file,
        }))
    }

    /// Moves to the next line: `None` at the end, an error if it cannot be read (it is
    /// then skipped; [`Lines::text`] has what could be read of it).
    pub fn advance(&mut self) -> Option<Result<(), String>> {
        match self {
            Lines::Mapped(m) => m.advance(),
            Lines::Buffered { read, line, valid } => {
                line.clear();
                match read.read_until(b'\n', line) {
                    Ok(0) => None,
                    Ok(_) => {
                        *valid = true;
                        check_utf8(line, valid)
                    }
                    Err(e) => {
                        *valid = false;
                        Some(Err(format!("read error: {e}")))
                    }
                }
            }
        }
    }

    /// The current line without its line end; empty if it is not UTF-8.
    pub fn line(&self) -> &str {
        let (bytes, valid) = self.bytes();
        if !valid {
            return "";
        }
        // Safety: checked by `str::from_utf8` when the line was read.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The current line as text for the dead-letter and late files (bytes that are not
    /// UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        match self.bytes() {
            (_, true) => Cow::Borrowed(self.line()),
            (bytes, false) => String::from_utf8_lossy(bytes),
        }
    }

    /// The current line's bytes without its line end, and whether they are UTF-8.
    fn bytes(&self) -> (&[u8], bool) {
        let (bytes, valid) = match self {
            Lines::Mapped(m) => (&m.map[m.line.0..m.line.1], m.valid),
            Lines::Buffered { line, valid, .. } => (&line[..], *valid),
        };
        let end = bytes
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        (&bytes[..end], valid)
    }
}

/// `Ok` if `bytes` are UTF-8, else an error naming the first bad byte (and `valid` unset).
fn check_utf8(bytes: &[u8], valid: &mut bool) -> Option<Result<(), String>> {
    if bytes.is_ascii() {
        return Some(Ok(())); // nearly every line: whole words checked, no decoding
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => Some(Ok(())),
        Err(e) => {
            *valid = false;
            Some(Err(format!(
                "read error: not UTF-8 (byte {} of the line)",
                e.valid_up_to() + 1
            )))
        }
    }
}

impl MappedLines {
    fn advance(&mut self) -> Option<Result<(), String>> {
        let bytes = &self.map[..];
        if self.next >= bytes.len() {
            return None;
        }
        let start = self.next;
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        self.next = end + 1;
        self.line = (start, end);
        self.valid = true;
        if self.next - self.released >= RELEASE_EVERY {
            self.release();
        }
        check_utf8(&self.map[start..end], &mut self.valid)
    }

    /// Releases the pages read before the current line (`MADV_DONTNEED`: they leave the
    /// job's resident memory and stay in the page cache).
    fn release(&mut self) {
        let upto = self.line.0 & !(page_size() - 1);
        if upto > self.released {
            // Safety: a read-only shared file mapping: dropped pages read back as the file.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    self.released,
                    upto - self.released,
                )
            };
            self.released = upto;
        }
        // Ask for the window after the next one now, so it is read while this one is
        // parsed: a fault on a page the page cache lacks waits for the device (0.25-1.6 s
        // of the workers' time in a bench run with the files mostly cached).
        let start = (self.next & !(page_size() - 1)) + RELEASE_EVERY;
        if start < self.map.len() {
            will_need(&self.file, start, RELEASE_EVERY);
        }
    }
}

/// Asks for `len` bytes of `file` from `start` to be read into the page cache, by the
/// read-ahead thread: the request itself waits whenever the device's queue is full
/// (~1.5 s of the workers' time in a bench run when they made it themselves).
fn will_need(file: &Arc<File>, start: usize, len: usize) {
    static READ_AHEAD: OnceLock<ParkedQueue<(Arc<File>, usize, usize)>> = OnceLock::new();
    let queue = READ_AHEAD.get_or_init(|| {
        ParkedQueue::start(
            "read-ahead",
            |(file, start, len): (Arc<File>, usize, usize)| {
                for at in (start..start + len).step_by(WILL_NEED_PIECE) {
                    let _ = fadvise_will_need(&file, at, WILL_NEED_PIECE);
                }
            },
        )
    });
    queue.send((file.clone(), start, len));
}

/// `posix_fadvise(POSIX_FADV_WILLNEED)` on a byte range (ranges past the end are ignored).
fn fadvise_will_need(file: &File, at: usize, len: usize) -> i32 {
    use std::os::fd::AsRawFd;
    // Safety: an advisory call on an open descriptor, with no memory passed.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            at as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_WILLNEED,
        )
    }
}

fn page_size() -> usize {
    // Safety: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Lines read in place across several page releases (a file over twice
    /// [`RELEASE_EVERY`]) are the same lines a stream gives, and the pages behind them
    /// were released as reading went on.
    #[test]
    fn mapped_lines_survive_page_releases_and_read_like_a_stream() {
        let mut file = tempfile::tempfile().unwrap();
        let mut bytes = Vec::new();
        let mut i = 0;
        while bytes.len() < 2 * RELEASE_EVERY + 100_000 {
            // Lengths that do not divide a page, so lines straddle every release point.
            writeln!(
                bytes,
                "{{\"id\":\"e{i}\",\"pad\":\"{}\"}}",
                "x".repeat(i % 97)
            )
            .unwrap();
            i += 1;
        }
        file.write_all(&bytes).unwrap();
        let mut mapped = Lines::mapped(&file).expect("a non-empty local file maps");
        let mut streamed = Lines::buffered(Box::new(std::io::Cursor::new(bytes.clone())));
        let mut n = 0;
        while let Some(m) = mapped.advance() {
            assert_eq!(m, Ok(()));
            assert_eq!(streamed.advance(), Some(Ok(())));
            assert_eq!(mapped.line(), streamed.line(), "line {n}");
            n += 1;
        }
        assert_eq!(streamed.advance(), None);
        assert_eq!(n, i);
        let Lines::Mapped(m) = &mapped else {
            unreachable!()
        };
        // Past one release's reach: at least two releases happened.
        assert!(m.released > RELEASE_EVERY, "released {}", m.released);
    }
}
