//! A fast zlib (RFC 1950 / 1951) encoder for detector frames after HDF5's shuffle filter.
//!
//! Shuffled frames compress by their byte statistics, not by repeats: the low bytes of the pixels
//! are read noise (near-random), the high bytes long runs of one value. This encoder codes exactly
//! that: literals with a dynamic Huffman code per block, and runs of one byte as length/distance-1
//! matches. It does no match search, so it runs several times faster than a general deflate (on
//! shuffled 576x576 u16 frames with 20 ADU of noise, one core of the 2-core machine: 0.7-0.8 GB/s
//! against 0.19 GB/s for libdeflate's fastest level), at a ratio as good as theirs there (0.434
//! against 0.441). The output is plain deflate: zlib, h5py, libdeflate and HDF5's own filter read
//! it.

/// Input bytes per deflate block at most: each block gets Huffman codes fitted to its own bytes.
const BLOCK: usize = 1 << 20;
/// Shortest run coded as a match (deflate allows 3; shorter runs cost more as a match).
const MIN_RUN: usize = 4;
const MAX_RUN: usize = 258;
/// Longest literal/length code: four codes and the pending bits fit one 64-bit put.
const LIT_LIMIT: u32 = 12;

const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u32; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];

/// For each match length 3..=258, the index of its length code (a table: a run is coded twice
/// per block, and runs are frequent in the high byte plane).
const LENGTH_INDEX: [u8; 259] = {
    let mut t = [0u8; 259];
    let mut len = 3;
    while len <= 258 {
        let mut i = 28;
        while LENGTH_BASE[i] as usize > len {
            i -= 1;
        }
        t[len] = i as u8;
        len += 1;
    }
    t
};

/// Deflate's length codes: for lengths 3..=258, (symbol, extra bits, extra value).
#[inline(always)]
fn length_code(len: usize) -> (u16, u32, u32) {
    let i = LENGTH_INDEX[len] as usize;
    (257 + i as u16, LENGTH_EXTRA[i], (len - LENGTH_BASE[i] as usize) as u32)
}

/// Bits written least-significant first, as deflate packs them, into a buffer sized beforehand.
struct Bits<'a> {
    out: &'a mut [u8],
    pos: usize,
    buf: u64,
    n: u32,
}

impl Bits<'_> {
    /// Adds `n <= 56` bits. Branch-free: the pending bits are stored as 8 bytes every time and the
    /// whole bytes among them committed (the buffer keeps 8 bytes of slack).
    #[inline(always)]
    fn put(&mut self, bits: u64, n: u32) {
        self.buf |= bits << self.n;
        self.n += n;
        self.out[self.pos..self.pos + 8].copy_from_slice(&self.buf.to_le_bytes());
        let bytes = self.n >> 3;
        self.pos += bytes as usize;
        self.buf >>= bytes * 8; // at most 56: n was at most 63
        self.n &= 7;
    }

    fn flush(&mut self) {
        while self.n > 0 {
            self.out[self.pos] = self.buf as u8;
            self.pos += 1;
            self.buf >>= 8;
            self.n = self.n.saturating_sub(8);
        }
    }
}

/// Huffman code lengths of at most `limit` bits for `freq` (zero frequency: no code): optimal
/// lengths, then, when some are too long, the length counts moved under the limit the way miniz
/// does (the most frequent symbols keep the shortest codes). Always a complete code.
fn code_lengths(freq: &[u32], limit: u32) -> Vec<u8> {
    let f: Vec<u64> = freq.iter().map(|&x| x as u64).collect();
    let mut lens = huffman_lengths(&f);
    let limit = limit as usize;
    if lens.iter().all(|&l| l as usize <= limit) {
        return lens;
    }
    let mut count = vec![0u32; 64];
    for &l in lens.iter().filter(|&&l| l > 0) {
        count[(l as usize).min(limit)] += 1;
    }
    let mut total: u64 = (1..=limit).map(|l| (count[l] as u64) << (limit - l)).sum();
    while total > 1 << limit {
        count[limit] -= 1;
        for l in (1..limit).rev() {
            if count[l] > 0 {
                count[l] -= 1;
                count[l + 1] += 2;
                break;
            }
        }
        total -= 1;
    }
    let mut order: Vec<usize> = (0..freq.len()).filter(|&i| freq[i] > 0).collect();
    order.sort_by(|&a, &b| freq[b].cmp(&freq[a]).then(a.cmp(&b)));
    let mut it = order.into_iter();
    for (l, &n) in count.iter().enumerate().take(limit + 1).skip(1) {
        for _ in 0..n {
            lens[it.next().expect("as many lengths as symbols")] = l as u8;
        }
    }
    lens
}

/// Optimal (unlimited) code lengths: the symbols sorted by frequency, then Huffman's merges
/// taken from two queues in increasing weight (the leaves, and the merged nodes, which are made
/// in increasing weight), so no heap is needed.
fn huffman_lengths(freq: &[u64]) -> Vec<u8> {
    let mut lens = vec![0u8; freq.len()];
    let mut used: Vec<usize> = (0..freq.len()).filter(|&i| freq[i] > 0).collect();
    match used.len() {
        0 => return lens,
        1 => {
            lens[used[0]] = 1; // one symbol still needs a one-bit code
            return lens;
        }
        _ => {}
    }
    used.sort_unstable_by_key(|&i| (freq[i], i));
    let n = used.len();
    // nodes: leaves 0..n by increasing weight, then merged nodes n..2n-1 as they are made
    let mut weight: Vec<u64> = used.iter().map(|&i| freq[i]).collect();
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut leaf, mut merged) = (0, n);
    for k in n..2 * n - 1 {
        let mut take = || {
            if leaf < n && (merged >= k || weight[leaf] <= weight[merged]) {
                leaf += 1;
                leaf - 1
            } else {
                merged += 1;
                merged - 1
            }
        };
        let (a, b) = (take(), take());
        weight.push(weight[a] + weight[b]);
        (parent[a], parent[b]) = (k, k);
    }
    let mut depth = vec![0u8; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]] + 1;
    }
    for (k, &i) in used.iter().enumerate() {
        lens[i] = depth[k];
    }
    lens
}

/// Canonical codes (RFC 1951 3.2.2) for `lens`, bit-reversed for least-significant-first packing.
fn canonical_codes(lens: &[u8]) -> Vec<u32> {
    let mut count = [0u32; 16];
    for &l in lens {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u32; 16];
    let mut code = 0;
    for b in 1..16 {
        code = (code + count[b - 1]) << 1;
        next[b] = code;
    }
    lens.iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[l as usize];
            next[l as usize] += 1;
            c.reverse_bits() >> (32 - l as u32)
        })
        .collect()
}

/// Adds the bytes of `lit` to the histogram, four tables in turn (so that repeated bytes do not
/// wait on one counter).
fn count_literals(lit: &[u8], freq: &mut [u32; 286]) {
    if lit.len() < 256 {
        for &b in lit {
            freq[b as usize] += 1;
        }
        return;
    }
    let mut f = [[0u32; 256]; 4];
    let mut c = lit.chunks_exact(4);
    for q in &mut c {
        f[0][q[0] as usize] += 1;
        f[1][q[1] as usize] += 1;
        f[2][q[2] as usize] += 1;
        f[3][q[3] as usize] += 1;
    }
    for &b in c.remainder() {
        f[0][b as usize] += 1;
    }
    for (s, x) in freq.iter_mut().take(256).enumerate() {
        *x += f[0][s] + f[1][s] + f[2][s] + f[3][s];
    }
}

/// Literal frequencies of a block of noise-like bytes, estimated from a quarter of them (the
/// first 16 of every 64), times 4, plus 1 for every byte value so that each has a code. The
/// codes fitted to the estimate cost well under 0.1 % in size (blocks hold hundreds of thousands of
/// bytes) and the counting a quarter of the time.
fn sample_literals(block: &[u8], freq: &mut [u32; 286]) {
    if block.len() < 1 << 14 {
        return count_literals(block, freq);
    }
    let mut sample = [0u32; 286];
    for piece in block.chunks(64) {
        count_literals(&piece[..piece.len().min(16)], &mut sample);
    }
    for (f, s) in freq.iter_mut().zip(&sample).take(256) {
        *f += 4 * s + 1;
    }
}

/// Position of the first `i` in `from..end` with `src[i] == src[i - 1]` (`from >= 1`), or `end`.
#[inline(always)]
fn next_repeat(src: &[u8], from: usize, end: usize) -> usize {
    let mut i = from;
    while i + 8 <= end {
        let a = u64::from_le_bytes(src[i..i + 8].try_into().unwrap());
        let b = u64::from_le_bytes(src[i - 1..i + 7].try_into().unwrap());
        let x = a ^ b; // a zero byte where a byte equals the one before it
        let zero = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
        if zero != 0 {
            return i + (zero.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end && src[i] != src[i - 1] {
        i += 1;
    }
    i
}

/// How many of `src[i..i + max]` (`max >= 1`) equal `b`, from `i` on (`src[i] == b`), eight at a time.
#[inline(always)]
fn run_length(src: &[u8], i: usize, max: usize, b: u8) -> usize {
    let pattern = u64::from_le_bytes([b; 8]);
    let mut n = 1;
    while n + 8 <= max {
        let x = u64::from_le_bytes(src[i + n..i + n + 8].try_into().unwrap()) ^ pattern;
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && src[i + n] == b {
        n += 1;
    }
    n
}

/// The runs of a block (`src[start..end]`): `(position, length)` of each run of the previous
/// byte coded as a match; everything between runs is literals. Fills the literal/length symbol
/// frequencies of the block.
fn find_runs(src: &[u8], start: usize, end: usize, runs: &mut Vec<(u32, u32)>, freq: &mut [u32; 286]) {
    runs.clear();
    let mut lit_start = start;
    let mut i = start.max(1); // a run repeats the byte before it, also across blocks
    while i < end {
        i = next_repeat(src, i, end);
        if i >= end {
            break;
        }
        let b = src[i - 1];
        let n = run_length(src, i, (end - i).min(MAX_RUN), b);
        if n >= MIN_RUN {
            count_literals(&src[lit_start..i], freq);
            freq[length_code(n).0 as usize] += 1;
            runs.push((i as u32, n as u32));
            lit_start = i + n;
        }
        i += n;
    }
    count_literals(&src[lit_start..end], freq);
}

/// Whether runs of one byte are too rare in `block` to be worth looking for. A byte equals the
/// one before it with probability about `q = sum p^2` (independent bytes, histogram `p` of every
/// 64th byte), so a run of `MIN_RUN` starts at a given byte with probability about
/// `q^(MIN_RUN - 1)`; below 1 in 10,000 bytes they save less than the search costs.
fn repeats_are_rare(block: &[u8]) -> bool {
    let mut h = [0u32; 256];
    let mut n = 0u32;
    for &b in block.iter().step_by(64) {
        h[b as usize] += 1;
        n += 1;
    }
    if n < 64 {
        return false; // too few to tell; short blocks cost little either way
    }
    let q: f64 = h.iter().map(|&c| (c as f64 / n as f64).powi(2)).sum();
    q.powi(MIN_RUN as i32 - 1) < 1e-4
}

/// Writes `src[start..end]` as one dynamic-Huffman block, with its `runs` as matches.
fn write_block(
    bits: &mut Bits,
    src: &[u8],
    start: usize,
    end: usize,
    runs: &[(u32, u32)],
    mut lit_freq: [u32; 286],
    last: bool,
) {
    lit_freq[256] = 1; // end of block
    let mut dist_freq = [0u32; 30];
    dist_freq[0] = 1; // distance 1 (every match), or an unused code: there must be one
    let lit_lens = code_lengths(&lit_freq, LIT_LIMIT);
    let dist_lens = code_lengths(&dist_freq, 15);
    let lit_codes = canonical_codes(&lit_lens);
    let dist_codes = canonical_codes(&dist_lens);
    let hlit = 257.max(lit_lens.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1));
    let hdist = 1.max(dist_lens.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1));
    // code lengths, with runs of zeros as codes 17 (3-10) and 18 (11-138)
    let all: Vec<u8> = lit_lens[..hlit].iter().chain(&dist_lens[..hdist]).copied().collect();
    let mut cl_syms: Vec<(u8, u32)> = Vec::new(); // (symbol, extra value)
    let mut i = 0;
    while i < all.len() {
        if all[i] == 0 {
            let mut n = 1;
            while i + n < all.len() && all[i + n] == 0 && n < 138 {
                n += 1;
            }
            if n >= 11 {
                cl_syms.push((18, n as u32 - 11));
                i += n;
                continue;
            }
            if n >= 3 {
                cl_syms.push((17, n as u32 - 3));
                i += n;
                continue;
            }
        }
        cl_syms.push((all[i], 0));
        i += 1;
    }
    let mut cl_freq = [0u32; 19];
    for &(s, _) in &cl_syms {
        cl_freq[s as usize] += 1;
    }
    let cl_lens = code_lengths(&cl_freq, 7);
    let cl_codes = canonical_codes(&cl_lens);
    const ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
    let hclen = 4.max(ORDER.iter().rposition(|&s| cl_lens[s] > 0).map_or(0, |p| p + 1));
    bits.put(last as u64, 1);
    bits.put(2, 2); // dynamic Huffman
    bits.put((hlit - 257) as u64, 5);
    bits.put((hdist - 1) as u64, 5);
    bits.put((hclen - 4) as u64, 4);
    for &s in &ORDER[..hclen] {
        bits.put(cl_lens[s] as u64, 3);
    }
    for &(s, extra) in &cl_syms {
        bits.put(cl_codes[s as usize] as u64, cl_lens[s as usize] as u32);
        match s {
            17 => bits.put(extra as u64, 3),
            18 => bits.put(extra as u64, 7),
            _ => {}
        }
    }
    // the data
    // the data: literals two at a time (at most 30 bits), then each run
    let table: Vec<u32> = (0..286).map(|s| lit_codes[s] | (lit_lens[s] as u32) << 16).collect();
    let lit_table: &[u32; 256] = table[..256].try_into().expect("256 literal codes");
    let (dcode, dlen) = (dist_codes[0], dist_lens[0] as u32);
    let literals = |bits: &mut Bits, lit: &[u8]| write_literals(bits, lit, lit_table);
    let mut pos = start;
    for &(at, n) in runs {
        literals(bits, &src[pos..at as usize]);
        let (sym, nextra, extra) = length_code(n as usize);
        let e = table[sym as usize];
        bits.put(((e & 0xffff) | extra << (e >> 16)) as u64, (e >> 16) + nextra);
        bits.put(dcode as u64, dlen);
        pos = (at + n) as usize;
    }
    literals(bits, &src[pos..end]);
    bits.put((table[256] & 0xffff) as u64, table[256] >> 16);
}

/// The codes of four literals `q` as one bit string, and its length.
#[inline(always)]
fn quad(table: &[u32; 256], q: &[u8]) -> (u64, u32) {
    let (a, b, c, d) = (table[q[0] as usize], table[q[1] as usize], table[q[2] as usize], table[q[3] as usize]);
    let (la, lb, lc) = (a >> 16, b >> 16, c >> 16);
    let v = (a & 0xffff) as u64
        | ((b & 0xffff) as u64) << la
        | ((c & 0xffff) as u64) << (la + lb)
        | ((d & 0xffff) as u64) << (la + lb + lc);
    (v, la + lb + lc + (d >> 16))
}

/// Writes the literals `lit` with the code `table` (code | length << 16, lengths at most
/// `LIT_LIMIT`), four to a put. The bit buffer lives in locals for the loop (kept in registers:
/// through `&mut Bits` every put went to memory).
#[inline(always)]
fn write_literals(bits: &mut Bits, lit: &[u8], table: &[u32; 256]) {
    if lit.len() < 64 {
        // between runs: too short to pay for moving the bit buffer into locals
        let mut quads = lit.chunks_exact(4);
        for q in &mut quads {
            let (v, n) = quad(table, q);
            bits.put(v, n);
        }
        for &x in quads.remainder() {
            let a = table[x as usize];
            bits.put((a & 0xffff) as u64, a >> 16);
        }
        return;
    }
    let (mut buf, mut n, mut pos) = (bits.buf, bits.n, bits.pos);
    // each quad writes at most 4 * LIT_LIMIT bits: the 8-byte stores stay inside `out`
    let out = &mut bits.out[..];
    assert!(pos + lit.len() / 4 * (4 * LIT_LIMIT as usize).div_ceil(8) + 8 <= out.len(), "output sized beforehand");
    let mut quads = lit.chunks_exact(4);
    for q in &mut quads {
        let (v, len) = quad(table, q);
        buf |= v << n;
        n += len;
        out[pos..pos + 8].copy_from_slice(&buf.to_le_bytes());
        let bytes = n >> 3;
        pos += bytes as usize;
        buf >>= bytes * 8;
        n &= 7;
    }
    (bits.buf, bits.n, bits.pos) = (buf, n, pos);
    for &x in quads.remainder() {
        let a = table[x as usize];
        bits.put((a & 0xffff) as u64, a >> 16);
    }
}

/// The zlib stream of `src`, written into `scratch` (grown as needed and kept for the next call).
/// Blocks break every 256 KiB and at multiples of `segment` bytes (the shuffled byte planes: pass
/// the plane size, or 0 for none).
pub fn zlib_compress<'a>(src: &[u8], segment: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    // worst case: 12 bits a literal, plus each block's header (< 600 bytes)
    let block = if segment > 0 { BLOCK.min(segment) } else { BLOCK };
    let bound = 2 * src.len() + 600 * (src.len() / block + 2) + 24;
    if scratch.len() < bound {
        scratch.resize(bound, 0);
    }
    scratch[..2].copy_from_slice(&[0x78, 0x01]); // deflate, 32 KiB window, no dictionary, fastest
    let mut bits = Bits { out: &mut scratch[..], pos: 2, buf: 0, n: 0 };
    let mut runs = Vec::new();
    let mut start = 0;
    if src.is_empty() {
        write_block(&mut bits, src, 0, 0, &[], [0; 286], true);
    }
    while start < src.len() {
        let mut end = (start + BLOCK).min(src.len());
        if let Some(seg) = start.checked_div(segment) {
            end = end.min((seg + 1) * segment);
        }
        let mut freq = [0u32; 286];
        if repeats_are_rare(&src[start..end]) {
            runs.clear();
            sample_literals(&src[start..end], &mut freq);
        } else {
            find_runs(src, start, end, &mut runs, &mut freq);
        }
        write_block(&mut bits, src, start, end, &runs, freq, end == src.len());
        start = end;
    }
    bits.flush();
    let pos = bits.pos;
    scratch[pos..pos + 4].copy_from_slice(&simd_adler32::adler32(&src).to_be_bytes());
    &scratch[..pos + 4]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(src: &[u8], segment: usize) -> usize {
        let mut scratch = Vec::new();
        let z = zlib_compress(src, segment, &mut scratch);
        let mut d = libdeflater::Decompressor::new();
        let mut back = vec![0u8; src.len()];
        let n = d.zlib_decompress(z, &mut back).expect("valid zlib stream");
        assert_eq!(n, src.len());
        assert!(back == src, "round trip differs");
        z.len()
    }

    #[test]
    fn round_trips_through_libdeflate() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        roundtrip(&[], 0);
        roundtrip(&[7], 0);
        roundtrip(&[7; 1000], 0);
        roundtrip(&[1, 2, 1, 2, 2, 2, 2, 2, 9], 0);
        let random: Vec<u8> = (0..200_000).map(|_| rng.random()).collect();
        roundtrip(&random, 0);
        // noise-like bytes with long runs, every run length, blocks split at a segment
        let mut mixed = Vec::new();
        for k in 0..600 {
            mixed.extend((0..k % 300).map(|_| (k % 5) as u8));
            mixed.extend((0..k % 17).map(|_| rng.random_range(0..40u8)));
        }
        let n = mixed.len();
        roundtrip(&mixed, n / 3);
        roundtrip(&mixed, 1);
        // one symbol in a block, and a skewed distribution that needs length limiting
        let mut skew = Vec::new();
        for s in 0..25u8 {
            skew.extend(std::iter::repeat_n(s, 1usize << (s / 2 + 1)).flat_map(|b| [b, 255 - b]));
        }
        roundtrip(&skew, 0);
    }

    #[test]
    fn compresses_noise_and_runs() {
        let runs = vec![0u8; 100_000];
        assert!(roundtrip(&runs, 0) < 1000);
        let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 29) as u8).collect();
        // 8 symbols: 3 bits a byte, a little more with the end-of-block and run codes beside them
        let n = roundtrip(&noise, 0);
        assert!(n < 100_000 * 13 / 32, "{n} bytes");
    }

    #[test]
    fn length_codes_follow_rfc_1951() {
        // RFC 1951 3.2.5: code 257 + i covers lengths base[i] .. base[i] + 2^extra[i] - 1 (258: 285)
        for len in 3..=258usize {
            let (sym, extra, value) = length_code(len);
            let i = (sym - 257) as usize;
            assert_eq!(LENGTH_BASE[i] as usize + value as usize, len);
            assert!(value < 1 << extra || (extra == 0 && value == 0), "length {len}");
            assert!(len != 258 || sym == 285);
        }
    }

    #[test]
    fn huffman_lengths_are_optimal() {
        use rand::{RngExt, SeedableRng};
        use std::cmp::Reverse;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for trial in 0..200 {
            let n = rng.random_range(2..300);
            let freq: Vec<u64> = (0..n)
                .map(|_| if rng.random_bool(0.2) { 0 } else { rng.random_range(1..1 << (trial % 20 + 1)) })
                .collect();
            let lens = huffman_lengths(&freq);
            let cost: u64 = freq.iter().zip(&lens).map(|(&f, &l)| f * l as u64).sum();
            // the optimum: the sum of every merge's weight, merging the two lightest each time
            let mut heap: std::collections::BinaryHeap<Reverse<u64>> =
                freq.iter().filter(|&&f| f > 0).map(|&f| Reverse(f)).collect();
            let mut best = 0;
            while heap.len() > 1 {
                let (Reverse(a), Reverse(b)) = (heap.pop().unwrap(), heap.pop().unwrap());
                best += a + b;
                heap.push(Reverse(a + b));
            }
            if freq.iter().filter(|&&f| f > 0).count() > 1 {
                assert_eq!(cost, best, "trial {trial}");
            }
            assert!(freq.iter().zip(&lens).all(|(&f, &l)| (f == 0) == (l == 0)), "trial {trial}");
        }
    }

    #[test]
    fn lengths_are_limited_and_complete() {
        let freq: Vec<u32> = (0..40).map(|i| 1u32 << (i % 30)).collect();
        let lens = code_lengths(&freq, 15);
        assert!(lens.iter().all(|&l| (1..=15).contains(&l)));
        let kraft: f64 = lens.iter().map(|&l| 0.5f64.powi(l as i32)).sum();
        assert!((kraft - 1.0).abs() < 1e-12, "Kraft sum {kraft}");
    }
}
