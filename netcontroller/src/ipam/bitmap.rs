//! A sparse bitmap over the whole IPv4 space, indexed by the address itself.
//!
//! Bits live in chunks of 4096 (64 words) that are created on first use and
//! dropped when they empty again, so a /8 network costs nothing until
//! addresses are handed out, and memory follows the number of addresses in
//! use rather than the subnet size. Chunks sit in a `BTreeMap`, so the search
//! for the lowest clear bit walks only the chunks that exist: an absent chunk
//! is all clear, a full one is skipped on its counter.

use std::collections::BTreeMap;

const CHUNK_BITS: u32 = 4096;
const WORDS: usize = (CHUNK_BITS / 64) as usize;

#[derive(Debug)]
struct Chunk {
    words: Box<[u64; WORDS]>,
    /// How many bits are set: lets the search skip full chunks without scanning them.
    used: u32,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            words: Box::new([0; WORDS]),
            used: 0,
        }
    }

    /// The lowest clear bit at or after `from` (offset inside the chunk).
    fn first_clear_from(&self, from: u32) -> Option<u32> {
        if self.used == CHUNK_BITS {
            return None;
        }
        let mut w = (from / 64) as usize;
        // Bits below `from` in its word count as taken.
        let mut free = !self.words[w] & (u64::MAX << (from % 64));
        loop {
            if free != 0 {
                return Some(w as u32 * 64 + free.trailing_zeros());
            }
            w += 1;
            if w == WORDS {
                return None;
            }
            free = !self.words[w];
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Bitmap {
    chunks: BTreeMap<u32, Chunk>,
}

fn split(bit: u32) -> (u32, usize, u64) {
    let offset = bit % CHUNK_BITS;
    (
        bit / CHUNK_BITS,
        (offset / 64) as usize,
        1u64 << (offset % 64),
    )
}

impl Bitmap {
    pub(super) fn is_set(&self, bit: u32) -> bool {
        let (key, word, mask) = split(bit);
        self.chunks
            .get(&key)
            .is_some_and(|c| c.words[word] & mask != 0)
    }

    /// Sets `bit`; false when it was already set.
    pub(super) fn set(&mut self, bit: u32) -> bool {
        let (key, word, mask) = split(bit);
        let chunk = self.chunks.entry(key).or_insert_with(Chunk::new);
        if chunk.words[word] & mask != 0 {
            return false;
        }
        chunk.words[word] |= mask;
        chunk.used += 1;
        true
    }

    /// Clears `bit`; false when it was not set.
    pub(super) fn clear(&mut self, bit: u32) -> bool {
        let (key, word, mask) = split(bit);
        let Some(chunk) = self.chunks.get_mut(&key) else {
            return false;
        };
        if chunk.words[word] & mask == 0 {
            return false;
        }
        chunk.words[word] &= !mask;
        chunk.used -= 1;
        if chunk.used == 0 {
            self.chunks.remove(&key);
        }
        true
    }

    /// The lowest clear bit in `lo..=hi`, if any.
    pub(super) fn first_clear_in(&self, lo: u32, hi: u32) -> Option<u32> {
        if lo > hi {
            return None;
        }
        // u64 so that stepping past the last chunk of the space cannot wrap.
        let mut cursor = u64::from(lo);
        for (&key, chunk) in self.chunks.range(lo / CHUNK_BITS..=hi / CHUNK_BITS) {
            let start = u64::from(key) * u64::from(CHUNK_BITS);
            if cursor < start {
                // The cursor sits in a chunk that does not exist: all clear.
                break;
            }
            if let Some(off) = chunk.first_clear_from((cursor - start) as u32) {
                cursor = start + u64::from(off);
                break;
            }
            cursor = start + u64::from(CHUNK_BITS);
        }
        (cursor <= u64::from(hi)).then_some(cursor as u32)
    }

    /// Number of chunks held; lets tests check that memory follows use.
    #[cfg(test)]
    pub(super) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn set_clear_and_search_across_chunk_edges() {
        let mut b = Bitmap::default();
        assert_eq!(b.first_clear_in(10, 20), Some(10));
        for bit in 4090..4100 {
            assert!(b.set(bit));
        }
        assert!(!b.set(4095), "a set bit cannot be set twice");
        assert_eq!(b.first_clear_in(4090, 5000), Some(4100));
        assert_eq!(b.first_clear_in(4090, 4099), None);
        assert!(b.clear(4096));
        assert!(!b.clear(4096), "a clear bit cannot be cleared twice");
        assert_eq!(b.first_clear_in(4090, 5000), Some(4096));
    }

    #[test]
    fn top_of_the_address_space_does_not_wrap() {
        let mut b = Bitmap::default();
        assert!(b.set(u32::MAX));
        assert!(b.is_set(u32::MAX));
        assert_eq!(b.first_clear_in(u32::MAX, u32::MAX), None);
        assert_eq!(b.first_clear_in(u32::MAX - 1, u32::MAX), Some(u32::MAX - 1));
    }

    #[test]
    fn full_chunks_are_skipped_and_empty_ones_dropped() {
        let mut b = Bitmap::default();
        for bit in 0..3 * CHUNK_BITS {
            assert!(b.set(bit));
        }
        assert_eq!(b.chunk_count(), 3);
        assert_eq!(b.first_clear_in(0, u32::MAX), Some(3 * CHUNK_BITS));
        for bit in CHUNK_BITS..2 * CHUNK_BITS {
            assert!(b.clear(bit));
        }
        assert_eq!(b.chunk_count(), 2, "an emptied chunk is freed");
        assert_eq!(b.first_clear_in(0, u32::MAX), Some(CHUNK_BITS));
    }

    proptest! {
        /// The bitmap agrees with a plain set for any sequence of operations.
        #[test]
        fn behaves_like_a_set(
            ops in prop::collection::vec((any::<bool>(), 0u32..20_000), 1..400),
            lo in 0u32..20_000,
            len in 0u32..20_000,
        ) {
            let mut b = Bitmap::default();
            let mut model = BTreeSet::new();
            for (insert, bit) in ops {
                if insert {
                    prop_assert_eq!(b.set(bit), model.insert(bit));
                } else {
                    prop_assert_eq!(b.clear(bit), model.remove(&bit));
                }
            }
            let hi = lo.saturating_add(len);
            let expected = (lo..=hi).find(|bit| !model.contains(bit));
            prop_assert_eq!(b.first_clear_in(lo, hi), expected);
            for bit in &model {
                prop_assert!(b.is_set(*bit));
            }
        }
    }
}
