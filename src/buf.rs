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

    /// Reads once from `r` into room for exactly `n` more bytes (`n` > 0), growing the
    /// buffer to just what it needs: for the rest of a large payload whose length is
    /// known, so that nothing after it lands in the buffer (the buffer then empties
    /// when the payload is consumed, and is never compacted with part of it). Returns
    /// what [`ReadBuf::read_from`] returns.
    pub fn read_exact_room(&mut self, r: &mut impl Read, n: usize) -> io::Result<(usize, bool)> {
        if self.data.len() - self.end < n {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < n {
                self.data.resize(self.end + n, 0);
            }
        }
        let got = r.read(&mut self.data[self.end..self.end + n])?;
        self.end += got;
        Ok((got, got == n))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_room_reads_no_further_and_compacts_first() {
        let mut b = ReadBuf::with_capacity(8);
        let mut src: &[u8] = b"headpayload-next";
        assert_eq!(b.read_from(&mut src, 4).unwrap(), (8, true));
        b.consume(4);
        // 7 more bytes of "payload" and nothing of what follows.
        assert_eq!(b.read_exact_room(&mut src, 3).unwrap(), (3, true));
        assert_eq!(b.bytes(), b"payload");
        assert_eq!(b.capacity(), 8, "compacted rather than grown");
        assert_eq!(src, b"-next");
        // A short read is reported as such.
        let mut short: &[u8] = b"ab";
        assert_eq!(b.read_exact_room(&mut short, 5).unwrap(), (2, false));
        assert_eq!(b.bytes(), b"payloadab");
    }

    #[test]
    fn compaction_waits_for_half_sent() {
        struct Takes(usize, Vec<u8>);
        impl Write for Takes {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(self.0);
                self.0 -= n;
                self.1.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = WriteBuf::default();
        w.data.resize(200 * 1024, 7);
        let mut sock = Takes(70 * 1024, Vec::new());
        assert!(!w.write_to(&mut sock, None).unwrap());
        assert_eq!(w.pending(), 130 * 1024, "70 KiB sent of 200: not moved yet");
        assert_eq!(w.data.len(), 200 * 1024);
        sock.0 = 40 * 1024;
        assert!(!w.write_to(&mut sock, None).unwrap());
        assert_eq!(w.data.len(), 90 * 1024, "110 KiB sent, 90 left: compacted");
        assert_eq!(w.pending(), 90 * 1024);
    }
}
