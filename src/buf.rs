//! Byte buffers for sockets: [`ReadBuf`] (read into, parse from the front of) and
//! [`WriteBuf`] (append to, write from the front of). Safe code only: a `ReadBuf` keeps
//! its storage initialised and tracks the filled range itself.

use std::io::{self, Read, Write};

/// Smallest free space offered to one `read` from a client.
pub const READ_CHUNK: usize = 1024;

pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn with_capacity(n: usize) -> Self {
        ReadBuf {
            data: vec![0; n],
            start: 0,
            end: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes of storage held.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads once from `r`, offering at least `min` bytes of room. `Ok(0)` is end of file.
    /// Returns the bytes read and whether the room was filled: a read that did not fill
    /// it emptied the socket, so under edge-triggered polling the next bytes will come
    /// with a new readiness event and there is no need to read again until then.
    pub fn read_from(&mut self, r: &mut impl Read, min: usize) -> io::Result<(usize, bool)> {
        if self.data.len() - self.end < min {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < min {
                let want = (self.end + min).max(self.data.len() * 2);
                self.data.resize(want, 0);
            }
        }
        let room = self.data.len() - self.end;
        let n = r.read(&mut self.data[self.end..])?;
        self.end += n;
        Ok((n, n == room))
    }

    /// Gives memory back after a large request or reply, once the buffer is empty: a
    /// buffer over `keep` bytes is replaced by one of `size`.
    pub fn shrink(&mut self, keep: usize, size: usize) {
        if self.is_empty() && self.data.len() > keep {
            self.data = vec![0; size];
        }
    }
}

#[derive(Default)]
pub struct WriteBuf {
    pub data: Vec<u8>,
    sent: usize,
}

impl WriteBuf {
    pub fn with_capacity(n: usize) -> Self {
        WriteBuf {
            data: Vec::with_capacity(n),
            sent: 0,
        }
    }

    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.data.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// Writes up to `limit` (an offset into the unsent bytes) until done or the socket
    /// would block. `Ok(true)`: everything up to the limit went out.
    pub fn write_to(&mut self, w: &mut impl Write, limit: Option<usize>) -> io::Result<bool> {
        let end = limit.map_or(self.data.len(), |l| (self.sent + l).min(self.data.len()));
        while self.sent < end {
            match w.write(&self.data[self.sent..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let done = self.sent == end;
        if self.sent == self.data.len() {
            self.data.clear();
            self.sent = 0;
        } else if limit.is_none() && self.sent >= 64 * 1024 && self.sent >= self.pending() {
            // Compacted only once the bytes sent outnumber those left, so that each byte
            // moves at most once on average: moving a large backlog after every partial
            // write to a slow client would cost time quadratic in its size.
            self.data.drain(..self.sent);
            self.sent = 0;
        }
        Ok(done)
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.sent = 0;
    }

    /// Puts `bytes` in front of the unsent bytes.
    pub fn prepend(&mut self, bytes: &[u8]) {
        self.data.drain(..self.sent);
        self.sent = 0;
        self.data.splice(0..0, bytes.iter().copied());
    }

    /// Gives memory back once empty, when the buffer grew over `keep` bytes.
    pub fn shrink(&mut self, keep: usize) {
        if self.is_empty() && self.data.capacity() > keep {
            self.data = Vec::new();
        }
    }
}
