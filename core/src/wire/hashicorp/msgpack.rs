//! msgpack as HashiCorp's `go-msgpack` 0.5 writes and reads it with the default
//! `codec.MsgpackHandle{}` that memberlist and Serf use: what this module owns is that byte
//! level, below any message.
//!
//! The handle's settings, as they show on the wire:
//! - structs are maps keyed by the Go field names, the fields **sorted by name** (byte order:
//!   `LTime` before `LeftMembers`), fields tagged `omitempty` left out when empty;
//! - `string` and `[]byte` are both written as the old spec's raw type: fixstr (`0xa0..0xbf`)
//!   below 32 bytes, else `0xda` (16-bit length) or `0xdb` (32-bit) — never `str8` (`0xd9`) or
//!   `bin*`, which need `WriteExt`; the reader accepts every str and bin form;
//! - a nil slice or map is `nil` (`0xc0`), an empty one a zero-length raw/array/map;
//! - unsigned integers in the smallest form (`0x00..0x7f`, then `0xcc`, `0xcd`, `0xce`, `0xcf`);
//!   signed ones the same when not negative, else `0xe0..0xff`, `0xd0..0xd3`;
//!   `time.Duration` is an `int64` (nanoseconds);
//! - `net.IP` is a `[]byte` (4 or 16 bytes), a `net.UDPAddr` a struct `{IP, Port, Zone}`;
//! - Go maps (tags, Serf's status times) are written in Go's random iteration order.
//!
//! The reader is bounded and total: every length is checked against the bytes left before
//! anything is sliced or allocated, nesting is limited when skipping unknown values, and every
//! failure is an [`HcError`].

use rmp::Marker;

use super::HcError;

/// Deepest nesting skipped inside an unknown field.
const MAX_SKIP_DEPTH: usize = 32;

/// A bounded msgpack reader over a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes not yet consumed.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Take the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], HcError> {
        let end = self.pos.checked_add(n).ok_or(HcError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(HcError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, HcError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Result<u8, HcError> {
        self.buf.get(self.pos).copied().ok_or(HcError::Truncated)
    }

    fn be(&mut self, n: usize) -> Result<u64, HcError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// The next value is `nil` (consumed if so).
    pub(crate) fn nil(&mut self) -> Result<bool, HcError> {
        if Marker::from_u8(self.peek()?) == Marker::Null {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// An integer of any msgpack width, as `i128` (fits every form).
    fn integer(&mut self, field: &'static str) -> Result<i128, HcError> {
        let m = Marker::from_u8(self.byte()?);
        Ok(match m {
            Marker::FixPos(v) => i128::from(v),
            Marker::FixNeg(v) => i128::from(v),
            Marker::U8 => i128::from(self.be(1)?),
            Marker::U16 => i128::from(self.be(2)?),
            Marker::U32 => i128::from(self.be(4)?),
            Marker::U64 => i128::from(self.be(8)?),
            Marker::I8 => i128::from(self.be(1)? as u8 as i8),
            Marker::I16 => i128::from(self.be(2)? as u16 as i16),
            Marker::I32 => i128::from(self.be(4)? as u32 as i32),
            Marker::I64 => i128::from(self.be(8)? as i64),
            _ => return Err(HcError::WrongType(field)),
        })
    }

    /// An unsigned integer no larger than `max` (Go decodes any integer form into a uint field;
    /// a value that does not fit is an error).
    pub(crate) fn uint(&mut self, field: &'static str, max: u64) -> Result<u64, HcError> {
        let v = self.integer(field)?;
        if v < 0 || v > i128::from(max) {
            return Err(HcError::OutOfRange(field));
        }
        Ok(v as u64)
    }

    /// A signed 64-bit integer.
    pub(crate) fn int(&mut self, field: &'static str) -> Result<i64, HcError> {
        i64::try_from(self.integer(field)?).map_err(|_| HcError::OutOfRange(field))
    }

    /// A boolean.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, HcError> {
        match Marker::from_u8(self.byte()?) {
            Marker::True => Ok(true),
            Marker::False => Ok(false),
            _ => Err(HcError::WrongType(field)),
        }
    }

    /// A raw byte string (any str or bin form) of at most `max` bytes; `None` for `nil`.
    pub(crate) fn raw(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<&'a [u8]>, HcError> {
        if self.nil()? {
            return Ok(None);
        }
        let len = match Marker::from_u8(self.byte()?) {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => self.be(1)? as usize,
            Marker::Str16 | Marker::Bin16 => self.be(2)? as usize,
            Marker::Str32 | Marker::Bin32 => self.be(4)? as usize,
            _ => return Err(HcError::WrongType(field)),
        };
        if len > max {
            return Err(HcError::TooLong { field, len, max });
        }
        if len > self.remaining() {
            return Err(HcError::Truncated);
        }
        self.take(len).map(Some)
    }

    /// A raw byte string as an owned vector (`None` for `nil`).
    pub(crate) fn bytes(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, HcError> {
        Ok(self.raw(field, max)?.map(<[u8]>::to_vec))
    }

    /// A UTF-8 string of at most `max` bytes (`nil` reads as empty, as Go decodes it).
    pub(crate) fn string(&mut self, field: &'static str, max: usize) -> Result<String, HcError> {
        let raw = self.raw(field, max)?.unwrap_or(&[]);
        core::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| HcError::BadUtf8(field))
    }

    fn container_len(&mut self, field: &'static str, map: bool) -> Result<usize, HcError> {
        let m = Marker::from_u8(self.byte()?);
        let len = match (m, map) {
            (Marker::FixMap(n), true) | (Marker::FixArray(n), false) => usize::from(n),
            (Marker::Map16, true) | (Marker::Array16, false) => self.be(2)? as usize,
            (Marker::Map32, true) | (Marker::Array32, false) => self.be(4)? as usize,
            _ => return Err(HcError::WrongType(field)),
        };
        // Every entry takes at least one byte (two for a map's key and value): a count the
        // bytes left cannot hold is refused before anything is allocated for it.
        let per = if map { 2 } else { 1 };
        if len.saturating_mul(per) > self.remaining() {
            return Err(HcError::Truncated);
        }
        Ok(len)
    }

    /// A map header of at most `max` entries; `None` for `nil`.
    pub(crate) fn map_len(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<usize>, HcError> {
        if self.nil()? {
            return Ok(None);
        }
        let len = self.container_len(field, true)?;
        if len > max {
            return Err(HcError::TooMany { field, len, max });
        }
        Ok(Some(len))
    }

    /// An array header of at most `max` entries; `None` for `nil`.
    pub(crate) fn array_len(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Option<usize>, HcError> {
        if self.nil()? {
            return Ok(None);
        }
        let len = self.container_len(field, false)?;
        if len > max {
            return Err(HcError::TooMany { field, len, max });
        }
        Ok(Some(len))
    }

    /// Skip one value of any type (an unknown struct field, which Go ignores too).
    pub(crate) fn skip(&mut self) -> Result<(), HcError> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: usize) -> Result<(), HcError> {
        if depth > MAX_SKIP_DEPTH {
            return Err(HcError::TooDeep);
        }
        let m = Marker::from_u8(self.byte()?);
        let (data, items) = match m {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::Reserved => return Err(HcError::WrongType("value")),
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (usize::from(n), 0),
            Marker::Str8 | Marker::Bin8 => (self.be(1)? as usize, 0),
            Marker::Str16 | Marker::Bin16 => (self.be(2)? as usize, 0),
            Marker::Str32 | Marker::Bin32 => (self.be(4)? as usize, 0),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (self.be(1)? as usize + 1, 0),
            Marker::Ext16 => (self.be(2)? as usize + 1, 0),
            Marker::Ext32 => (self.be(4)? as usize + 1, 0),
            Marker::FixArray(n) => (0, usize::from(n)),
            Marker::Array16 => (0, self.be(2)? as usize),
            Marker::Array32 => (0, self.be(4)? as usize),
            Marker::FixMap(n) => (0, 2 * usize::from(n)),
            Marker::Map16 => (0, 2 * self.be(2)? as usize),
            Marker::Map32 => (0, 2 * self.be(4)? as usize),
        };
        self.take(data)?;
        if items > self.remaining() {
            return Err(HcError::Truncated);
        }
        for _ in 0..items {
            self.skip_depth(depth + 1)?;
        }
        Ok(())
    }

    /// Read a struct written as a map: `field` is called with each key and the reader at its
    /// value, and returns whether it consumed the value (unknown keys are skipped, as Go
    /// does). A `nil` struct has no fields. At most `max_fields` entries.
    pub(crate) fn fields(
        &mut self,
        what: &'static str,
        max_fields: usize,
        mut field: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, HcError>,
    ) -> Result<(), HcError> {
        let n = self.map_len(what, max_fields)?.unwrap_or(0);
        for _ in 0..n {
            // A key of any length is read (Go skips unknown keys whatever their length).
            let key = self.raw(what, super::MAX_STRING)?.unwrap_or(&[]);
            if !field(key, self)? {
                self.skip()?;
            }
        }
        Ok(())
    }
}

/// A msgpack writer producing go-msgpack's default encoding.
#[derive(Clone, Debug, Default)]
pub(crate) struct Writer {
    /// The bytes written.
    pub out: Vec<u8>,
}

impl Writer {
    /// A writer appending to `out`.
    pub(crate) fn new(out: Vec<u8>) -> Writer {
        Writer { out }
    }

    fn marker(&mut self, m: Marker) {
        self.out.push(m.to_u8());
    }

    /// An unsigned integer in its smallest form.
    pub(crate) fn uint(&mut self, v: u64) {
        if v <= 0x7f {
            self.marker(Marker::FixPos(v as u8));
        } else if v <= u64::from(u8::MAX) {
            self.marker(Marker::U8);
            self.out.push(v as u8);
        } else if v <= u64::from(u16::MAX) {
            self.marker(Marker::U16);
            self.out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= u64::from(u32::MAX) {
            self.marker(Marker::U32);
            self.out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.marker(Marker::U64);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A signed integer: as unsigned when not negative, else its smallest signed form.
    pub(crate) fn int(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.marker(Marker::FixNeg(v as i8));
        } else if v >= i64::from(i8::MIN) {
            self.marker(Marker::I8);
            self.out.push(v as i8 as u8);
        } else if v >= i64::from(i16::MIN) {
            self.marker(Marker::I16);
            self.out.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            self.marker(Marker::I32);
            self.out.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.marker(Marker::I64);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A boolean.
    pub(crate) fn bool(&mut self, v: bool) {
        self.marker(if v { Marker::True } else { Marker::False });
    }

    /// `nil`.
    pub(crate) fn nil(&mut self) {
        self.marker(Marker::Null);
    }

    /// A raw string (a Go `string` or `[]byte`): fixstr, else 16- or 32-bit length.
    pub(crate) fn raw(&mut self, v: &[u8]) {
        let n = v.len();
        if n < 32 {
            self.marker(Marker::FixStr(n as u8));
        } else if n <= usize::from(u16::MAX) {
            self.marker(Marker::Str16);
            self.out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.marker(Marker::Str32);
            self.out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        self.out.extend_from_slice(v);
    }

    /// A Go `[]byte` that may be nil.
    pub(crate) fn opt_raw(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.raw(v),
            None => self.nil(),
        }
    }

    /// A string.
    pub(crate) fn str(&mut self, v: &str) {
        self.raw(v.as_bytes());
    }

    fn container(&mut self, n: usize, fix: Marker, m16: Marker, m32: Marker) {
        if n < 16 {
            self.out.push(fix.to_u8() | n as u8);
        } else if n <= usize::from(u16::MAX) {
            self.marker(m16);
            self.out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.marker(m32);
            self.out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    /// A map header of `n` entries.
    pub(crate) fn map(&mut self, n: usize) {
        self.container(n, Marker::FixMap(0), Marker::Map16, Marker::Map32);
    }

    /// An array header of `n` entries.
    pub(crate) fn array(&mut self, n: usize) {
        self.container(n, Marker::FixArray(0), Marker::Array16, Marker::Array32);
    }

    /// A struct field's key.
    pub(crate) fn key(&mut self, name: &str) {
        self.str(name);
    }
}
