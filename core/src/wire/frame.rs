//! Stream framing, shared by every driver: a reliable message is `[length: u32 big-endian]
//! [body]`. [`FrameDecoder`] splits a byte stream into bodies; the core builds frames in place.
//! Under [`WireProfile::HashiCorp`] stream messages carry no length: the decoder measures
//! each message by its own structure and hands out the whole message as the body.

use super::{DecodeError, FRAME_HEADER_LEN, MAX_FRAME};
use crate::config::WireProfile;

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

/// A buffer holding at most this many bytes of capacity is kept between frames for reuse;
/// a larger one is released once its frame is out.
const KEEP_BETWEEN_FRAMES: usize = 16 * 1024;

/// Splits a byte stream into frames (`[len: u32 BE][body]`). Drivers feed it whatever the
/// reliable channel delivered and hand each body to [`crate::Node::handle_stream`].
///
/// Memory follows the bytes received, never a declared length: the buffer grows geometrically
/// with what [`FrameDecoder::push`] appends, capped at the end of the frame being received (so
/// a frame of `n` bytes never holds much more than `n`), a declared length above the limit is
/// refused by [`FrameDecoder::next_frame`] as soon as its four bytes are in, a large frame is
/// handed out in its own buffer rather than copied, and a buffer grown past 16 KiB is released
/// as soon as no partial frame remains.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max: usize,
    profile: WireProfile,
}

impl FrameDecoder {
    /// A decoder that refuses bodies larger than `max` bytes (use
    /// [`crate::Config::max_stream_message`]).
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder::for_profile(max, WireProfile::Native)
    }

    /// A decoder for the stream messages of `profile` ([`crate::Config::wire`]) that refuses
    /// messages larger than `max` bytes.
    pub fn for_profile(max: usize, profile: WireProfile) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max: max.min(MAX_FRAME),
            profile,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        if let Some(target) = self.grow_target(data.len()) {
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }

    /// The capacity the buffer grows to when `n` more bytes are pushed, or `None` when they
    /// fit (called after the consumed prefix is dropped).
    fn grow_target(&self, n: usize) -> Option<usize> {
        let need = self.buf.len() + n;
        if need <= self.buf.capacity() {
            return None;
        }
        // Double with the bytes received, but not past the end of the frame being received
        // (when its length is known and acceptable).
        let mut target = need.max(self.buf.capacity().saturating_mul(2)).max(256);
        if let Some(end) = self.frame_end() {
            target = target.min(end.max(need));
        }
        Some(target)
    }

    /// The bytes of memory the decoder will hold ([`FrameDecoder::capacity`]) after
    /// [`FrameDecoder::push`] of `n` more bytes, computed before anything is allocated (for
    /// drivers that keep a budget of buffered bytes).
    pub fn capacity_after(&self, n: usize) -> usize {
        if self.start > 0 && self.start == self.buf.len() {
            // `push` starts over on an emptied buffer (capacity kept).
            let fresh = FrameDecoder::for_profile(self.max, self.profile);
            return fresh
                .grow_target(n)
                .map_or(self.buf.capacity(), |t| t.max(self.buf.capacity()));
        }
        self.grow_target(n).unwrap_or(self.buf.capacity())
    }

    /// Where the frame at `start` ends in `buf`, when its header is in and its length within
    /// the limit.
    fn frame_end(&self) -> Option<usize> {
        if self.profile != WireProfile::Native {
            return None;
        }
        let avail = &self.buf[self.start..];
        let header: [u8; FRAME_HEADER_LEN] = avail.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        let len = u32::from_be_bytes(header) as usize;
        (len <= self.max).then_some(self.start + FRAME_HEADER_LEN + len)
    }

    /// The next complete frame body, `Ok(None)` when more bytes are needed, or an error when
    /// the declared length exceeds the limit (the connection should then be closed).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        if self.profile.is_hashicorp() {
            return self.next_hashicorp();
        }
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
        if self.start == 0
            && FRAME_HEADER_LEN + len == self.buf.len()
            && self.buf.capacity() > KEEP_BETWEEN_FRAMES
        {
            // The buffer is this frame: hand it out rather than copy it.
            let mut body = std::mem::take(&mut self.buf);
            body.drain(..FRAME_HEADER_LEN);
            return Ok(Some(body));
        }
        let body = avail[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        self.consume(FRAME_HEADER_LEN + len);
        Ok(Some(body))
    }

    /// Drop the first `n` bytes not yet returned: an emptied buffer starts over (released
    /// when it grew past [`KEEP_BETWEEN_FRAMES`]), a long consumed prefix is dropped.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            if self.buf.capacity() > KEEP_BETWEEN_FRAMES {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// The next whole HashiCorp stream message (measured by its structure: it has no length
    /// prefix), or an error when it does not decode or exceeds the limit.
    fn next_hashicorp(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let avail = &self.buf[self.start..];
        let len = match super::hashicorp::stream_message_len(avail) {
            Ok(Some(len)) => len,
            Ok(None) if avail.len() > self.max => {
                return Err(DecodeError::TooLarge {
                    len: avail.len(),
                    max: self.max,
                })
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if len > self.max {
            return Err(DecodeError::TooLarge { len, max: self.max });
        }
        let body = avail[..len].to_vec();
        self.consume(len);
        Ok(Some(body))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes of memory the decoder holds (its buffer's capacity).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}
