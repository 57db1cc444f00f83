//! Latency histograms written by one thread and read by any: log-linear buckets in microseconds.
//!
//! A [`Histogram`] belongs to one worker thread, which is the only one that writes it; the scraper (the control
//! thread answering `/metrics`, or a session answering INFO or LATENCY HISTOGRAM) reads it. So a write is a
//! relaxed load and a relaxed store of the same cell ([`Cell::add`]): no lock-prefixed read-modify-write, the
//! same instructions as a plain `+=`, and a reader can never see a torn value, only a slightly old one.
//!
//! Buckets: one per microsecond below 16 µs, then 8 per power of two (each at most 12.5% wide) up to 2^25 µs
//! (33.5 s); longer values land in the last bucket. Every power of two is a bucket boundary, so the Prometheus
//! buckets (`le` = 2^k µs, [`PROMETHEUS_LE_US`]) and LATENCY HISTOGRAM's (Redis reports powers of two too) are
//! exact sums of buckets, while percentiles (INFO latencystats) get the finer resolution.
use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this many µs get a bucket each.
const LINEAR: usize = 16;
/// log2 of the buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// The first power of two with sub-buckets (2^4 = [`LINEAR`]).
const FIRST_OCTAVE: u32 = 4;
/// The last power of two with buckets: values up to 2^(LAST_OCTAVE + 1) µs are told apart.
const LAST_OCTAVE: u32 = 24;
/// Buckets of a histogram.
pub const BUCKETS: usize = LINEAR + (LAST_OCTAVE - FIRST_OCTAVE + 1) as usize * SUB;

/// The Prometheus buckets' upper bounds in µs: powers of two from 8 µs to 8.4 s (then `+Inf`).
pub const PROMETHEUS_LE_US: [u64; 21] = {
    let mut le = [0u64; 21];
    let mut i = 0;
    while i < le.len() {
        le[i] = 1 << (i + 3);
        i += 1;
    }
    le
};

/// A counter with a single writer (see the module docs): `add` is a load and a store, not an atomic add.
#[derive(Debug, Default)]
pub struct Cell(AtomicU64);

impl Cell {
    /// Adds `n`. Only the cell's owning thread may call this (another writer's additions could be lost).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The bucket of a duration of `us` microseconds.
#[inline]
pub fn bucket_of(us: u64) -> usize {
    // Longer than the last bucket: into the last bucket (a min instead of a branch).
    let us = us.min((1 << (LAST_OCTAVE + 1)) - 1);
    if us < LINEAR as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros();
    // LINEAR + (octave - FIRST_OCTAVE) * SUB + sub, with LINEAR = SUB << 1 and FIRST_OCTAVE = 4.
    let sub = ((us >> (octave - SUB_BITS)) as usize) & (SUB - 1);
    ((octave as usize - 2) << SUB_BITS) + sub
}

/// The exclusive upper bound of bucket `i`, in µs.
pub fn bucket_upper_us(i: usize) -> u64 {
    if i < LINEAR {
        return i as u64 + 1;
    }
    let octave = FIRST_OCTAVE + ((i - LINEAR) / SUB) as u32;
    let sub = ((i - LINEAR) % SUB) as u64;
    (SUB as u64 + sub + 1) << (octave - SUB_BITS)
}

/// Durations recorded by one thread (see the module docs).
#[derive(Debug)]
pub struct Histogram {
    /// Sum of the recorded durations in nanoseconds (Prometheus's `_sum`, INFO's `usec`).
    sum_ns: Cell,
    buckets: [Cell; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { sum_ns: Cell::default(), buckets: std::array::from_fn(|_| Cell::default()) }
    }
}

impl Histogram {
    /// Records one duration. Only the owning thread may call this.
    #[inline]
    pub fn record(&self, ns: u64) {
        self.record_in(bucket_of(ns / 1000), ns);
    }

    /// Records one duration whose bucket ([`bucket_of`] its µs) the caller already knows.
    #[inline]
    pub fn record_in(&self, bucket: usize, ns: u64) {
        self.buckets[bucket].add(1);
        self.sum_ns.add(ns);
    }

    /// Adds what this histogram holds now to `into`.
    pub fn add_to(&self, into: &mut Snapshot) {
        for (total, cell) in into.buckets.iter_mut().zip(&self.buckets) {
            *total += cell.get();
        }
        into.sum_ns += self.sum_ns.get();
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        self.add_to(&mut s);
        s
    }
}

/// A histogram's counts at one moment, or several histograms summed (every worker's, every connection's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub buckets: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot { buckets: [0; BUCKETS], sum_ns: 0 }
    }
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds another snapshot's counts.
    pub fn merge(&mut self, other: &Snapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_ns += other.sum_ns;
    }

    /// The value (µs) below which `percentile`% of the durations fall: the upper bound of the bucket that holds
    /// that rank (as Redis's HDR histograms report "the highest equivalent value"). 0 when empty.
    pub fn percentile_us(&self, percentile: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = ((percentile / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper_us(i) as f64;
            }
        }
        bucket_upper_us(BUCKETS - 1) as f64
    }

    /// Cumulative counts at each of `bounds_us` (ascending powers of two): durations shorter than the bound.
    pub fn cumulative(&self, bounds_us: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds_us.len());
        let mut seen = 0;
        let mut i = 0;
        for &bound in bounds_us {
            while i < BUCKETS && bucket_upper_us(i) <= bound {
                seen += self.buckets[i];
                i += 1;
            }
            out.push(seen);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        // Each bucket starts where the previous one ended, and every value maps into [lower, upper).
        let mut lower = 0;
        for i in 0..BUCKETS {
            let upper = bucket_upper_us(i);
            assert!(upper > lower, "bucket {i}");
            assert_eq!(bucket_of(lower), i, "lower bound of bucket {i}");
            assert_eq!(bucket_of(upper - 1), i, "last value of bucket {i}");
            lower = upper;
        }
        assert_eq!(lower, 1 << 25);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // At most 12.5% wide above the linear part.
        for i in LINEAR..BUCKETS {
            let (lo, hi) = (if i == 0 { 0 } else { bucket_upper_us(i - 1) }, bucket_upper_us(i));
            assert!((hi - lo) * 8 <= lo, "bucket {i}: {lo}..{hi}");
        }
        // Every Prometheus bound is a bucket boundary.
        for le in PROMETHEUS_LE_US {
            assert!((0..BUCKETS).any(|i| bucket_upper_us(i) == le), "{le}");
        }
        assert_eq!(PROMETHEUS_LE_US[0], 8);
        assert_eq!(*PROMETHEUS_LE_US.last().unwrap(), 8_388_608);
    }

    #[test]
    fn percentiles_and_cumulative_counts() {
        let h = Histogram::default();
        for us in 1..=100u64 {
            h.record(us * 1000 + 500);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.sum_ns, (1..=100u64).map(|us| us * 1000 + 500).sum::<u64>());
        // The 50th value is 50.5 µs: bucket [48, 52).
        assert_eq!(s.percentile_us(50.0), 52.0);
        // The 99th is 99.5 µs: bucket [96, 104).
        assert_eq!(s.percentile_us(99.0), 104.0);
        assert_eq!(s.percentile_us(100.0), 104.0);
        assert_eq!(s.percentile_us(0.0), 2.0);
        assert_eq!(Snapshot::default().percentile_us(50.0), 0.0);
        // Below 8 µs: 1..7 (7 values); below 16: 15; below 128: all.
        assert_eq!(s.cumulative(&[8, 16, 128]), vec![7, 15, 100]);
        let mut twice = s.clone();
        twice.merge(&s);
        assert_eq!(twice.count(), 200);
    }
}
