//! A table indexed by upstream identity that can grow while it is read: identities are added at run time (a
//! config reload maps a user to a new cluster user; provisioning creates one), and the data path looks entries up
//! on every request of a mapped user.
//!
//! Entries live in chunks of doubling size (1, 2, 4, ... up to 2^15), each allocated on first use and never moved,
//! so a lookup is two acquire loads and no lock, and the table costs 16 empty cells until it is used.
use std::sync::OnceLock;

const CHUNKS: usize = 16;

/// Index → `T`, for indexes below 2^16 - 1; each entry is set at most once.
pub(crate) struct GrowTable<T> {
    chunks: [OnceLock<Box<[OnceLock<T>]>>; CHUNKS],
}

impl<T> Default for GrowTable<T> {
    fn default() -> Self {
        GrowTable { chunks: std::array::from_fn(|_| OnceLock::new()) }
    }
}

/// Which chunk holds `index`, and where in it: chunk `k` holds indexes `2^k - 1 .. 2^(k+1) - 1`.
fn locate(index: usize) -> Option<(usize, usize)> {
    let n = index.checked_add(1)?;
    let chunk = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (chunk < CHUNKS).then(|| (chunk, n - (1 << chunk)))
}

impl<T> GrowTable<T> {
    /// The entry at `index`, if it was set.
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        let (chunk, at) = locate(index)?;
        self.chunks[chunk].get()?[at].get()
    }

    /// The entry at `index`, set by `init` if it wasn't (None when `index` is beyond the table's capacity).
    pub(crate) fn get_or_init(&self, index: usize, init: impl FnOnce() -> T) -> Option<&T> {
        let (chunk, at) = locate(index)?;
        let cells = self.chunks[chunk].get_or_init(|| (0..1usize << chunk).map(|_| OnceLock::new()).collect());
        Some(cells[at].get_or_init(init))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_map_to_distinct_cells_across_chunks() {
        assert_eq!(locate(0), Some((0, 0)));
        assert_eq!(locate(1), Some((1, 0)));
        assert_eq!(locate(2), Some((1, 1)));
        assert_eq!(locate(3), Some((2, 0)));
        assert_eq!(locate(65534), Some((15, 32767)));
        assert_eq!(locate(65535), None);
        let t: GrowTable<usize> = GrowTable::default();
        for i in [0, 1, 2, 3, 6, 7, 100, 1000, 65534] {
            assert_eq!(t.get(i), None);
            assert_eq!(t.get_or_init(i, || i * 10), Some(&(i * 10)));
        }
        for i in [0, 1, 2, 3, 6, 7, 100, 1000, 65534] {
            // Set once: a second init is ignored.
            assert_eq!(t.get_or_init(i, || 0), Some(&(i * 10)));
            assert_eq!(t.get(i), Some(&(i * 10)));
        }
        assert_eq!(t.get(4), None);
        assert_eq!(t.get_or_init(65535, || 1), None);
    }
}
