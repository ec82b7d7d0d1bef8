//! A fast streaming 64-bit hash for verifying every listener's bytes.
//!
//! Owns only the hash: four independent multiply-rotate lanes over 32-byte blocks, so one
//! client thread can verify several GB/s. The result depends on the bytes alone, never on
//! how they were split across reads. It is a checksum against corruption, loss and
//! reordering, not a cryptographic hash; it must not be used for anything else.

const K: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
];

/// Streaming hasher; `update` in any split gives the same `finish`.
#[derive(Debug, Clone)]
pub struct Hasher {
    lanes: [u64; 4],
    tail: [u8; 32],
    tail_len: usize,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            lanes: [1, 2, 3, 4],
            tail: [0; 32],
            tail_len: 0,
            len: 0,
        }
    }
}

#[inline(always)]
fn mix(lane: u64, word: u64, k: u64) -> u64 {
    (lane.rotate_left(23) ^ word).wrapping_mul(k)
}

impl Hasher {
    #[inline(always)]
    fn block(&mut self, b: &[u8]) {
        for (i, w) in b.chunks_exact(8).enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.lanes[i] = mix(self.lanes[i], u64::from_le_bytes(a), K[i]);
        }
    }

    /// Feeds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let take = (32 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 32 {
                return;
            }
            let t = self.tail;
            self.block(&t);
            self.tail_len = 0;
        }
        let mut blocks = data.chunks_exact(32);
        for b in &mut blocks {
            self.block(b);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The hash of everything fed.
    pub fn finish(&self) -> u64 {
        let mut h = self.clone();
        let n = h.tail_len;
        if n > 0 {
            let mut t = [0u8; 32];
            t[..n].copy_from_slice(&h.tail[..n]);
            h.block(&t);
        }
        let mut acc = h.len.wrapping_mul(K[0]) ^ n as u64;
        for (i, l) in h.lanes.iter().enumerate() {
            acc = mix(acc, *l, K[i]);
            acc ^= acc >> 29;
        }
        acc
    }
}

/// The hash of a whole buffer.
pub fn hash(data: &[u8]) -> u64 {
    let mut h = Hasher::default();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn split_does_not_matter() {
        let d = data(10_007);
        let whole = hash(&d);
        for split in [1usize, 3, 7, 31, 32, 33, 4096, 5000] {
            let mut h = Hasher::default();
            for part in d.chunks(split) {
                h.update(part);
            }
            assert_eq!(h.finish(), whole, "split {split}");
            assert_eq!(h.len(), d.len() as u64);
        }
    }

    #[test]
    fn detects_changes() {
        let d = data(4096);
        let mut e = d.clone();
        e[100] ^= 1;
        assert_ne!(hash(&d), hash(&e));
        assert_ne!(hash(&d), hash(&d[..4095]));
        let mut zero_tail = d.clone();
        zero_tail.push(0);
        assert_ne!(hash(&d), hash(&zero_tail));
        let mut swapped = d.clone();
        swapped.swap(0, 64);
        assert_ne!(hash(&d), hash(&swapped));
        assert_ne!(hash(&[]), hash(&[0]));
    }
}
