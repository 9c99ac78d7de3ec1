//! Bitshuffle + LZ4 chunks, the format of HDF5 filter 32008 (the `bitshuffle` library of K. Masui
//! et al., which detector vendors write and `hdf5plugin` reads), coded by emsim itself.
//!
//! A chunk of `n` values of `elem` bytes is cut into blocks of `block` values (8,192 bytes by
//! default, a multiple of 8 values); the last, shorter block is cut down to a multiple of 8 values
//! and the remaining (fewer than 8) values are stored raw at the end. Each block is bit-transposed
//! (bit `k` of byte `j` of every value, in rows of `len / 8` bytes, ordered `j` then `k`; value
//! `8 b + r` gives bit `r` of byte `b` of its row) and coded as one LZ4 block behind its 4-byte
//! big-endian length. The stored chunk begins with the value bytes (8 bytes, big-endian) and the
//! block size in bytes (4 bytes, big-endian).

use lz4_flex::block::{CompressTable, compress_into_with_table, decompress_into, get_maximum_output_size};

/// HDF5's filter id of bitshuffle.
pub const FILTER_ID: hdf5_sys::h5z::H5Z_filter_t = 32008;

/// The filter's `cd_values[4]` for LZ4 after the transpose (0: the transpose alone).
pub const LZ4: u32 = 2;

/// The values per block when the filter's parameters give none: 8,192 bytes of values, a
/// multiple of 8, at least 128 (the library's `bshuf_default_block_size`, fixed by the format).
pub fn default_block(elem: usize) -> usize {
    ((8192 / elem) / 8 * 8).max(128)
}

/// The filter's parameters for a new dataset of `elem`-byte values, as the library's `set_local`
/// completes them: format version 0.4, the value size, the default block size, LZ4.
pub fn filter_params(elem: usize) -> [u32; 5] {
    [0, 4, elem as u32, 0, LZ4]
}

/// Transposes the bits of one 8x8 matrix: bit `c` of byte `r` goes to bit `r` of byte `c`.
#[inline(always)]
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Bit-transposes one block of values (`src.len()` a multiple of `8 elem`) into `out`.
pub fn shuffle_block(src: &[u8], elem: usize, out: &mut [u8]) {
    let n = src.len() / elem;
    debug_assert!(n.is_multiple_of(8) && out.len() == src.len());
    let row = n / 8;
    for (b, group) in src.chunks_exact(8 * elem).enumerate() {
        for j in 0..elem {
            let mut x = 0u64;
            for r in 0..8 {
                x |= (group[r * elem + j] as u64) << (8 * r);
            }
            let x = transpose8(x).to_le_bytes();
            for (k, &byte) in x.iter().enumerate() {
                out[(j * 8 + k) * row + b] = byte;
            }
        }
    }
}

/// The inverse of [`shuffle_block`].
pub fn unshuffle_block(src: &[u8], elem: usize, out: &mut [u8]) {
    let n = src.len() / elem;
    debug_assert!(n.is_multiple_of(8) && out.len() == src.len());
    let row = n / 8;
    for (b, group) in out.chunks_exact_mut(8 * elem).enumerate() {
        for j in 0..elem {
            let mut x = [0u8; 8];
            for (k, byte) in x.iter_mut().enumerate() {
                *byte = src[(j * 8 + k) * row + b];
            }
            let x = transpose8(u64::from_le_bytes(x));
            for r in 0..8 {
                group[r * elem + j] = (x >> (8 * r)) as u8;
            }
        }
    }
}

/// Per-thread buffers of the coder.
pub struct Scratch {
    table: CompressTable,
    block: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self { table: CompressTable::small(), block: Vec::new() }
    }
}

/// The values of a chunk of `len` bytes in blocks: the full blocks' count, the last block's
/// values and the raw values left over.
fn blocks(len: usize, elem: usize, block: usize) -> (usize, usize, usize) {
    let n = len / elem;
    let last = n % block - n % block % 8;
    (n / block, last, n % 8)
}

/// Codes a chunk (`raw`: its values as little-endian bytes, `elem` bytes each) into `out`
/// (cleared first), with the default block size.
pub fn compress(raw: &[u8], elem: usize, s: &mut Scratch, out: &mut Vec<u8>) {
    let block = default_block(elem);
    let (full, last, left) = blocks(raw.len(), elem, block);
    out.clear();
    out.extend_from_slice(&(raw.len() as u64).to_be_bytes());
    out.extend_from_slice(&((block * elem) as u32).to_be_bytes());
    let mut at = 0;
    for len in std::iter::repeat_n(block, full).chain((last > 0).then_some(last)) {
        let bytes = len * elem;
        s.block.resize(bytes, 0);
        shuffle_block(&raw[at..at + bytes], elem, &mut s.block);
        let head = out.len();
        out.resize(head + 4 + get_maximum_output_size(bytes), 0);
        let n = compress_into_with_table(&s.block, &mut out[head + 4..], &mut s.table)
            .expect("the output holds LZ4's bound");
        out[head..head + 4].copy_from_slice(&(n as u32).to_be_bytes());
        out.truncate(head + 4 + n);
        at += bytes;
    }
    debug_assert_eq!(raw.len() - at, left * elem);
    out.extend_from_slice(&raw[at..]);
}

/// Decodes a stored chunk into `out` (its uncompressed size).
pub fn decompress(stored: &[u8], elem: usize, out: &mut [u8]) -> Result<(), String> {
    let corrupt = |what: &str| format!("corrupt bitshuffle/LZ4 chunk: {what}");
    let (Some(total), Some(block_bytes)) = (stored.get(..8), stored.get(8..12)) else {
        return Err(corrupt("shorter than its 12-byte header"));
    };
    let total = u64::from_be_bytes(total.try_into().unwrap()) as usize;
    let block_bytes = u32::from_be_bytes(block_bytes.try_into().unwrap()) as usize;
    if total != out.len() {
        return Err(format!("chunk holds {total} bytes, expected {}", out.len()));
    }
    if block_bytes == 0 || !block_bytes.is_multiple_of(8 * elem) {
        return Err(corrupt(&format!("block of {block_bytes} bytes for {elem}-byte values")));
    }
    let (full, last, left) = blocks(total, elem, block_bytes / elem);
    let mut tmp = vec![0u8; block_bytes];
    let (mut at, mut pos) = (0, 12);
    for len in std::iter::repeat_n(block_bytes / elem, full).chain((last > 0).then_some(last)) {
        let bytes = len * elem;
        let n = stored.get(pos..pos + 4).ok_or_else(|| corrupt("truncated"))?;
        let n = u32::from_be_bytes(n.try_into().unwrap()) as usize;
        let coded = stored.get(pos + 4..pos + 4 + n).ok_or_else(|| corrupt("truncated"))?;
        match decompress_into(coded, &mut tmp[..bytes]) {
            Ok(m) if m == bytes => {}
            _ => return Err(corrupt("an LZ4 block does not decode to its size")),
        }
        unshuffle_block(&tmp[..bytes], elem, &mut out[at..at + bytes]);
        (at, pos) = (at + bytes, pos + 4 + n);
    }
    if stored.len() - pos != left * elem {
        return Err(corrupt("wrong length after its blocks"));
    }
    out[at..].copy_from_slice(&stored[pos..]);
    Ok(())
}

/// The transpose alone (`cd_values[4]` = 0): blocks of `block` values (0: the default), no header.
pub fn unshuffle_chunk(stored: &[u8], elem: usize, block: usize, out: &mut [u8]) -> Result<(), String> {
    if stored.len() != out.len() {
        return Err(format!("chunk holds {} bytes, expected {}", stored.len(), out.len()));
    }
    let block = if block == 0 { default_block(elem) } else { block };
    let (full, last, _) = blocks(out.len(), elem, block);
    let mut at = 0;
    for len in std::iter::repeat_n(block, full).chain((last > 0).then_some(last)) {
        let bytes = len * elem;
        unshuffle_block(&stored[at..at + bytes], elem, &mut out[at..at + bytes]);
        at += bytes;
    }
    out[at..].copy_from_slice(&stored[at..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transpose by its definition, bit by bit.
    fn shuffle_by_definition(src: &[u8], elem: usize) -> Vec<u8> {
        let n = src.len() / elem;
        let mut out = vec![0u8; src.len()];
        for i in 0..n {
            for j in 0..elem {
                for k in 0..8 {
                    let bit = (src[i * elem + j] >> k) & 1;
                    let at = (j * 8 + k) * n + i; // bit index in the output
                    out[at / 8] |= bit << (at % 8);
                }
            }
        }
        out
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        (0..n as u64).map(|i| ((i + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect()
    }

    #[test]
    fn transpose_follows_its_definition() {
        for elem in [1, 2, 4, 8] {
            for n in [8, 64, 4096] {
                let src = bytes(n * elem, elem as u64);
                let mut out = vec![0u8; src.len()];
                shuffle_block(&src, elem, &mut out);
                assert_eq!(out, shuffle_by_definition(&src, elem), "elem {elem}, n {n}");
                let mut back = vec![0u8; src.len()];
                unshuffle_block(&out, elem, &mut back);
                assert_eq!(back, src);
            }
        }
    }

    #[test]
    fn chunks_of_any_length_round_trip() {
        let mut s = Scratch::default();
        let mut stored = Vec::new();
        for elem in [2, 4] {
            // no values, fewer than 8, one short block, full blocks and a short one, leftovers
            for n in [0, 5, 8, 1961, 4096, 4270, 3 * 4096 + 13] {
                let mut raw = bytes(n * elem, 7);
                raw[..(n * elem).min(300)].fill(0); // a run for LZ4 to find
                compress(&raw, elem, &mut s, &mut stored);
                let mut back = vec![0xAAu8; raw.len()];
                decompress(&stored, elem, &mut back).unwrap();
                assert!(back == raw, "elem {elem}, n {n}");
                let mut wrong = vec![0u8; raw.len() + elem];
                assert!(decompress(&stored, elem, &mut wrong).is_err());
                if n > 8 {
                    assert!(decompress(&stored[..stored.len() - 1], elem, &mut back).is_err(), "n {n}");
                }
            }
        }
    }
}
