//! Stream framing, shared by every driver: a reliable message is `[length: u32 big-endian]
//! [body]`. [`FrameDecoder`] splits a byte stream into bodies; the core builds frames in place.

use super::{DecodeError, FRAME_HEADER_LEN, MAX_FRAME};

/// A stream frame being built: room for the length prefix, then the envelope header; the
/// message is appended, then [`frame_finish`] writes the length.
pub(crate) fn frame_start(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + header.len() + 64);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.extend_from_slice(header);
    out
}

/// Write the length prefix of a frame from [`frame_start`].
pub(crate) fn frame_finish(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Splits a byte stream into frames (`[len: u32 BE][body]`). Drivers feed it whatever the
/// reliable channel delivered and hand each body to [`crate::Node::handle_stream`].
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that refuses bodies larger than `max` bytes (use
    /// [`crate::Config::max_stream_message`]).
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max: max.min(MAX_FRAME),
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame body, `Ok(None)` when more bytes are needed, or an error when
    /// the declared length exceeds the limit (the connection should then be closed).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let avail = &self.buf[self.start..];
        if avail.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > self.max {
            return Err(DecodeError::TooLarge { len, max: self.max });
        }
        if avail.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let body = avail[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(body))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}
