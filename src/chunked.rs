//! Rows of equal length, appended in fixed-size chunks: growing never moves a row.
//!
//! A `Vec` that doubles copies every element into fresh memory, and the kernel zeroes
//! both the old and the new pages once: for a table of millions of keys, that was ~3 %
//! of a replay's CPU samples (docs/PERFORMANCE-HISTORY.md). Here only the first chunk grows like a
//! `Vec` (small tables stay small); every later chunk is allocated at its full size once.

/// Rows per chunk.
const CHUNK_ROWS: usize = 1 << 16;

/// Append-only rows of `stride` elements each, numbered from 0.
pub struct ChunkedRows<T> {
    chunks: Vec<Vec<T>>,
    stride: usize,
    rows: usize,
}

impl<T> ChunkedRows<T> {
    /// No rows yet; each row will hold `stride` elements.
    pub fn new(stride: usize) -> Self {
        ChunkedRows {
            chunks: Vec::new(),
            stride,
            rows: 0,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a row: `fill` pushes exactly `stride` elements onto the vector it is given.
    pub fn push_row(&mut self, fill: impl FnOnce(&mut Vec<T>)) {
        if self.rows.is_multiple_of(CHUNK_ROWS) {
            let capacity = if self.chunks.is_empty() {
                0
            } else {
                CHUNK_ROWS * self.stride
            };
            self.chunks.push(Vec::with_capacity(capacity));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        let before = chunk.len();
        fill(chunk);
        assert_eq!(
            chunk.len(),
            before + self.stride,
            "one row of stride elements"
        );
        self.rows += 1;
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        let at = (i % CHUNK_ROWS) * self.stride;
        &self.chunks[i / CHUNK_ROWS][at..at + self.stride]
    }

    /// Row `i`, to change.
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        let at = (i % CHUNK_ROWS) * self.stride;
        &mut self.chunks[i / CHUNK_ROWS][at..at + self.stride]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_numbers_and_contents_across_chunks() {
        let mut rows = ChunkedRows::new(3);
        let n = 2 * CHUNK_ROWS + 5;
        for i in 0..n {
            rows.push_row(|v| v.extend([i, i + 1, i + 2]));
        }
        assert_eq!(rows.len(), n);
        for i in [0, 1, CHUNK_ROWS - 1, CHUNK_ROWS, 2 * CHUNK_ROWS + 4] {
            assert_eq!(rows.row(i), &[i, i + 1, i + 2]);
        }
        rows.row_mut(CHUNK_ROWS)[1] = 7;
        assert_eq!(rows.row(CHUNK_ROWS), &[CHUNK_ROWS, 7, CHUNK_ROWS + 2]);
        assert_eq!(
            rows.chunks[1].capacity(),
            CHUNK_ROWS * 3,
            "later chunks never grow"
        );
    }

    #[test]
    #[should_panic(expected = "one row of stride elements")]
    fn a_row_of_the_wrong_length_is_refused() {
        let mut rows = ChunkedRows::new(2);
        rows.push_row(|v| v.push(1));
    }
}
