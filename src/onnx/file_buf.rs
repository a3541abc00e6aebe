//! Encodes a protobuf straight into a file through a small buffer, so saving
//! a model never holds a second, encoded copy of it in memory.

use bytes::buf::UninitSlice;
use bytes::BufMut;
use std::io::Write;

const CHUNK: usize = 1 << 20;

pub(super) struct FileBuf<W: Write> {
    out: W,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

impl<W: Write> FileBuf<W> {
    pub fn new(out: W) -> Self {
        FileBuf { out, buf: Vec::with_capacity(CHUNK), error: None }
    }

    fn flush_buf(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    /// Writes what is left; the first write error, if any.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_buf();
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }
}

// SAFETY: `chunk_mut` hands out only the vector's spare capacity, and
// `advance_mut` only claims bytes the caller has written there.
unsafe impl<W: Write> BufMut for FileBuf<W> {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len() + cnt;
        assert!(len <= self.buf.capacity(), "advanced past the chunk");
        self.buf.set_len(len);
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        UninitSlice::uninit(self.buf.spare_capacity_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn encodes_the_same_bytes_as_encode_to_vec() {
        let t = crate::proto::TensorProto {
            name: Some("w".into()),
            raw_data: Some(vec![7u8; 3 * CHUNK + 5].into()),
            ..Default::default()
        };
        let mut sink = FileBuf::new(Vec::new());
        t.encode(&mut sink).unwrap();
        assert_eq!(sink.finish().unwrap(), t.encode_to_vec());
    }
}
