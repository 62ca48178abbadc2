//! Keys, values and the cheap random numbers that pick them.
//!
//! A key is `<prefix><index, zero padded>`, `key_size` bytes long (longer
//! when the prefix plus the digits of the key space need more), so every key
//! of a run sorts under one prefix and can be read back with one range.

use bytes::Bytes;

/// SplitMix64: a tiny, fast, seedable generator. Load generation needs
/// speed and reproducibility, not cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for load generation, no division.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Picks the keys of a run.
#[derive(Debug, Clone)]
pub struct KeyGen {
    prefix: String,
    width: usize,
    space: u64,
    sequential: bool,
    /// Keys as etcd's `benchmark put` makes them instead ([`KeyGen::etcd_benchmark`]).
    varint: bool,
}

impl KeyGen {
    /// Keys `prefix` + `0..space`, at least `key_size` bytes long.
    pub fn new(prefix: &str, key_size: usize, space: u64, sequential: bool) -> Self {
        let space = space.max(1);
        let digits = (space - 1).max(1).ilog10() as usize + 1;
        let width = digits.max(key_size.saturating_sub(prefix.len()));
        KeyGen { prefix: prefix.to_owned(), width, space, sequential, varint: false }
    }

    /// Keys as etcd's `benchmark put --key-size key_size --key-space-size
    /// space` makes them: one `key_size`-byte buffer per client, zeros at
    /// first, into whose front each key's index is written as Go's
    /// `binary.PutVarint` writes it (zigzag, then 7 bits a byte, low first).
    /// The buffer is reused, so a short varint keeps the bytes a longer one
    /// left behind it, as in the tool: both generators write the same kind
    /// of keys, creations and updates alike. Use [`key_in`](Self::key_in).
    pub fn etcd_benchmark(key_size: usize, space: u64, sequential: bool) -> Self {
        // A 64-bit varint takes at most 10 bytes.
        let width = key_size.max(10);
        KeyGen { prefix: String::new(), width, space: space.max(1), sequential, varint: true }
    }

    /// Number of distinct keys.
    pub fn space(&self) -> u64 {
        self.space
    }

    /// The common prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The index of the key request number `seq` uses.
    pub fn pick(&self, seq: u64, rng: &mut Rng) -> u64 {
        if self.sequential { seq % self.space } else { rng.below(self.space) }
    }

    /// Key number `index`.
    pub fn key(&self, index: u64) -> Bytes {
        Bytes::from(format!("{}{:0width$}", self.prefix, index % self.space, width = self.width))
    }

    /// Key number `index`, made in a client's reused buffer `buf` (keys of
    /// [`etcd_benchmark`](Self::etcd_benchmark); any other is [`key`](Self::key)).
    pub fn key_in(&self, index: u64, buf: &mut Vec<u8>) -> Bytes {
        if !self.varint {
            return self.key(index);
        }
        buf.resize(self.width, 0);
        // Go's PutVarint: zigzag (a non-negative index doubles), then PutUvarint.
        let mut ux = (index % self.space) << 1;
        let mut i = 0;
        while ux >= 0x80 {
            buf[i] = (ux as u8) | 0x80;
            ux >>= 7;
            i += 1;
        }
        buf[i] = ux as u8;
        Bytes::copy_from_slice(buf)
    }

    /// The `range_end` covering every key of the run.
    pub fn range_end(&self) -> Bytes {
        Bytes::from(prefix_end(self.prefix.as_bytes()))
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's
/// `clientv3.GetPrefixRangeEnd`); `\0` (all keys) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `len` random printable bytes (so values are readable in etcdctl).
pub fn random_value(len: usize, rng: &mut Rng) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect::<Vec<u8>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_fixed_length_and_sort_under_the_prefix() {
        let g = KeyGen::new("/b/", 16, 1000, true);
        let k = g.key(7);
        assert_eq!(k.len(), 16);
        assert_eq!(&k[..], b"/b/0000000000007");
        assert!(g.key(999) > g.key(998));
        assert!(g.range_end() > g.key(999));
        // Too short a key size grows to fit the key space.
        let g = KeyGen::new("/p/", 2, 100_000, false);
        assert_eq!(g.key(99_999).len(), 3 + 5);
    }

    #[test]
    fn sequential_walks_and_random_stays_in_range() {
        let g = KeyGen::new("k", 4, 10, true);
        let mut r = Rng::new(1);
        assert_eq!(
            (0..12).map(|s| g.pick(s, &mut r)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
        );
        let g = KeyGen::new("k", 4, 10, false);
        let picks: Vec<u64> = (0..1000).map(|s| g.pick(s, &mut r)).collect();
        assert!(picks.iter().all(|&p| p < 10));
        assert!((0..10).all(|i| picks.contains(&i)), "every key is reached");
    }

    #[test]
    fn etcd_benchmark_keys_are_gos_varints_in_a_reused_buffer() {
        let g = KeyGen::etcd_benchmark(16, 100_000, true);
        let mut buf = Vec::new();
        // binary.PutVarint(k, 3) writes 6; 300 (zigzag 600) writes d8 04.
        assert_eq!(&g.key_in(3, &mut buf)[..], &[6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&g.key_in(300, &mut buf)[..4], &[0xd8, 0x04, 0, 0]);
        assert_eq!(g.key_in(300, &mut buf).len(), 16);
        // A shorter varint leaves the longer one's tail, as the tool's buffer does.
        assert_eq!(&g.key_in(3, &mut buf)[..4], &[6, 0x04, 0, 0]);
        // The key space wraps as the tool's `rand.Intn(keySpaceSize)` never exceeds it.
        assert_eq!(g.key_in(100_003, &mut buf), g.key_in(3, &mut buf));
    }

    #[test]
    fn prefix_end_matches_etcd() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn rng_is_reproducible_and_bounded() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        let mut r = Rng::new(3);
        assert!((0..1000).all(|_| (5..=9).contains(&r.between(5, 9))));
        assert_eq!(random_value(33, &mut r).len(), 33);
    }
}
