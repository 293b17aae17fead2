//! The byte format of fuzz inputs: a plain little-endian reader and its mirror writer, so the
//! corpus generator can write inputs the targets parse. Reading past the end yields zeros (and
//! empty slices), as libFuzzer inputs end anywhere.

/// Reads fields from the front of a fuzz input.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.fixed())
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }

    /// A byte string with a `u16` length prefix.
    pub fn blob16(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }

    /// A byte string with a `u8` length prefix.
    pub fn blob8(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.bytes(n)
    }
}

/// Writes fields in the order a [`Reader`] reads them.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub out: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend(v.to_le_bytes());
        self
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend(v.to_le_bytes());
        self
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend(v.to_le_bytes());
        self
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    /// A byte string with a `u16` length prefix (truncated to 65,535 bytes).
    pub fn blob16(&mut self, b: &[u8]) -> &mut Self {
        let b = &b[..b.len().min(u16::MAX as usize)];
        self.u16(b.len() as u16).bytes(b)
    }

    /// A byte string with a `u8` length prefix (truncated to 255 bytes).
    pub fn blob8(&mut self, b: &[u8]) -> &mut Self {
        let b = &b[..b.len().min(u8::MAX as usize)];
        self.u8(b.len() as u8).bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree() {
        let mut w = Writer::default();
        w.u8(7)
            .u16(300)
            .u32(70_000)
            .u64(1 << 40)
            .blob16(b"abc")
            .blob8(b"xy");
        let mut r = Reader::new(&w.out);
        assert_eq!(
            (r.u8(), r.u16(), r.u32(), r.u64()),
            (7, 300, 70_000, 1 << 40)
        );
        assert_eq!(r.blob16(), b"abc");
        assert_eq!(r.blob8(), b"xy");
        assert!(r.is_empty());
        assert_eq!((r.u32(), r.blob16()), (0, &b""[..]));
    }
}
