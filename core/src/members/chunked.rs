//! [`Chunked`]: a growable sequence kept in fixed-size chunks of up to 8 KiB. Growing never
//! moves an element and never leaves a doubled buffer half empty: at most the last chunk has
//! spare room. The member table keeps its records here — a thousand tables growing one member
//! at a time would otherwise copy themselves over and over and leave the allocator a trail of
//! freed buffers of every size.

use std::ops::{Index, IndexMut};

use rand::seq::SliceRandom;
use rand::Rng;

/// A sequence in chunks of [`Chunked::PER_CHUNK`] elements; every chunk but the last is full
/// and none is empty.
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    /// Elements per chunk: the largest power of two (so indexing is a shift and a mask) whose
    /// chunk fits in 8 KiB, at least one.
    pub(crate) const PER_CHUNK: usize = {
        let size = std::mem::size_of::<T>();
        if size == 0 || size >= 8192 {
            1
        } else {
            let fit = 8192 / size;
            1 << (usize::BITS - 1 - fit.leading_zeros())
        }
    };

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The element at `i`, if there is one.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks
            .get(i / Self::PER_CHUNK)
            .and_then(|c| c.get(i % Self::PER_CHUNK))
    }

    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < Self::PER_CHUNK => last.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(Self::PER_CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let value = last.pop()?;
        if last.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn swap(&mut self, a: usize, b: usize) {
        let (ca, ia) = (a / Self::PER_CHUNK, a % Self::PER_CHUNK);
        let (cb, ib) = (b / Self::PER_CHUNK, b % Self::PER_CHUNK);
        if ca == cb {
            self.chunks[ca].swap(ia, ib);
            return;
        }
        let (lo, hi, ilo, ihi) = if ca < cb {
            (ca, cb, ia, ib)
        } else {
            (cb, ca, ib, ia)
        };
        let (head, tail) = self.chunks.split_at_mut(hi);
        std::mem::swap(&mut head[lo][ilo], &mut tail[0][ihi]);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    /// Shuffle in place, drawing from `rng` exactly what shuffling a slice of the same length
    /// draws: the positions are shuffled as a slice, then each element follows its cycle of
    /// the permutation.
    pub(crate) fn shuffle<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let mut from: Vec<u32> = (0..self.len as u32).collect();
        from.shuffle(rng);
        // `from[i]` is the old position of the element that goes to `i`.
        let mut placed = vec![false; self.len];
        for start in 0..self.len {
            if placed[start] {
                continue;
            }
            let mut i = start;
            loop {
                placed[i] = true;
                let j = from[i] as usize;
                if j == start {
                    break;
                }
                self.swap(i, j);
                i = j;
            }
        }
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / Self::PER_CHUNK][i % Self::PER_CHUNK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / Self::PER_CHUNK][i % Self::PER_CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn behaves_like_a_vec() {
        let mut c: Chunked<[u64; 100]> = Chunked::default();
        assert_eq!(Chunked::<[u64; 100]>::PER_CHUNK, 8);
        assert_eq!(Chunked::<u8>::PER_CHUNK, 8192);
        let mut v: Vec<[u64; 100]> = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for step in 0..2000u64 {
            match rng.random_range(0..10) {
                0..=5 => {
                    c.push([step; 100]);
                    v.push([step; 100]);
                }
                6 | 7 => assert_eq!(c.pop(), v.pop()),
                _ if !v.is_empty() => {
                    let (a, b) = (rng.random_range(0..v.len()), rng.random_range(0..v.len()));
                    c.swap(a, b);
                    v.swap(a, b);
                }
                _ => {}
            }
            assert_eq!(c.len(), v.len());
            assert!(c.chunks.iter().all(|ch| !ch.is_empty()));
        }
        assert!(c.iter().eq(v.iter()));
        assert!((0..v.len()).all(|i| c[i] == v[i]));
    }

    #[test]
    fn shuffle_matches_the_slice_shuffle_draw_for_draw() {
        for n in [0usize, 1, 2, 7, 100, 1000] {
            let mut c: Chunked<u64> = Chunked::default();
            let mut v: Vec<u64> = Vec::new();
            for i in 0..n as u64 {
                c.push(i * 3);
                v.push(i * 3);
            }
            let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(4), ChaCha8Rng::seed_from_u64(4));
            c.shuffle(&mut r1);
            v.shuffle(&mut r2);
            assert!(c.iter().eq(v.iter()), "n = {n}");
            assert_eq!(
                r1.random::<u64>(),
                r2.random::<u64>(),
                "same draws, n = {n}"
            );
        }
    }
}
