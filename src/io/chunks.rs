//! Frames stored as HDF5 chunks that emsim compresses and decompresses itself, on every core, and
//! writes and reads with HDF5's direct chunk I/O (`H5Dwrite_chunk`, `H5Dread_chunk`). The chunks
//! carry the dataset's own filter pipeline (shuffle + deflate by default), so h5py and any HDF5
//! reader open them like chunks HDF5 compressed. Formats: `docs/formats.md` ("compression").

use std::ffi::c_void;

use hdf5::filters::Filter;
use hdf5_sys::h5::{herr_t, hsize_t};
use hdf5_sys::h5i::hid_t;
use hdf5_sys::h5p::H5P_DEFAULT;

use super::bitshuffle;
use crate::{Error, Result};

/// The filter id of Zstandard in HDF5's registry (the `hdf5plugin` Python package reads it).
pub const ZSTD_FILTER_ID: hdf5_sys::h5z::H5Z_filter_t = 32015;

/// `--compression` of `/frames` in HDF5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// Shuffle + deflate from emsim's run-length/Huffman encoder (`io::deflate`): plain h5py
    /// reads it; the default.
    Deflate,
    /// Shuffle + deflate at a level 1-9 from libdeflate (a full match search: slower, about the
    /// same ratio on noisy frames).
    Gzip(u8),
    /// Shuffle + Zstandard at a level 1-22 (HDF5 filter 32015, registered by emsim in its own
    /// process: `io::h5_filters`; Python needs `import hdf5plugin`).
    Zstd(u8),
    /// Bitshuffle + LZ4 (HDF5 filter 32008, `io::bitshuffle`), the detector vendors' format;
    /// Python needs `import hdf5plugin`.
    Bslz4,
    /// LZF through HDF5's own filter pipeline (one thread; h5py reads it).
    Lzf,
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "--compression",
                format!("'{s}': expected deflate (the default), gzip=1..9, zstd or zstd=1..22, bslz4, lzf or none"),
            )
        };
        let level = |prefix: &str, max: u8| match s.strip_prefix(prefix).map(str::parse::<u8>) {
            Some(Ok(l)) if (1..=max).contains(&l) => Some(l),
            _ => None,
        };
        match s {
            "none" => Ok(Self::None),
            "deflate" | "gzip" => Ok(Self::Deflate),
            "lzf" => Ok(Self::Lzf),
            "zstd" => Ok(Self::Zstd(1)),
            "bslz4" | "bitshuffle-lz4" => Ok(Self::Bslz4),
            _ => level("gzip=", 9).map(Self::Gzip).or_else(|| level("zstd=", 22).map(Self::Zstd)).ok_or_else(bad),
        }
    }
}

impl Compression {
    /// The name the file records (`compression` attribute of `/frames`).
    pub fn name(self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Deflate => "shuffle+deflate".into(),
            Self::Gzip(l) => format!("shuffle+deflate level {l}"),
            Self::Zstd(l) => format!("shuffle+zstd level {l} (HDF5 filter 32015)"),
            Self::Bslz4 => "bitshuffle+lz4 (HDF5 filter 32008)".into(),
            Self::Lzf => "lzf".into(),
        }
    }

    /// The filter pipeline of a dataset of `elem`-byte values.
    pub fn filters(self, elem: usize) -> Vec<Filter> {
        match self {
            Self::None => vec![],
            Self::Deflate => vec![Filter::Shuffle, Filter::Deflate(1)],
            Self::Gzip(l) => vec![Filter::Shuffle, Filter::Deflate(l)],
            Self::Zstd(l) => vec![Filter::Shuffle, Filter::user(ZSTD_FILTER_ID, &[l as u32])],
            Self::Bslz4 => vec![Filter::user(bitshuffle::FILTER_ID, &bitshuffle::filter_params(elem))],
            Self::Lzf => vec![Filter::LZF],
        }
    }

    /// Whether emsim writes the chunks itself (in parallel); LZF goes through HDF5.
    pub fn direct(self) -> bool {
        !matches!(self, Self::Lzf)
    }

    /// Whether the pipeline begins with HDF5's byte shuffle (the chunk is coded from byte planes).
    pub fn byte_shuffled(self) -> bool {
        matches!(self, Self::Deflate | Self::Gzip(_) | Self::Zstd(_))
    }

    /// Whether the pipeline holds a filter that is not built into HDF5 (emsim registers it).
    pub fn third_party(self) -> bool {
        matches!(self, Self::Zstd(_) | Self::Bslz4)
    }
}

/// How a dataset's chunks are coded, as far as emsim decodes them itself: an optional shuffle,
/// then deflate, Zstandard or nothing; or bitshuffle (+ LZ4) alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    shuffle: bool,
    inner: Inner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    None,
    Deflate,
    Zstd,
    /// Bitshuffle + LZ4 (the block size is in each chunk's header).
    Bslz4,
    /// The bit transpose alone, in blocks of this many values (0: the default).
    Bitshuffle(usize),
}

impl Codec {
    /// The codec of a filter pipeline, or None when emsim cannot decode it (HDF5 then reads).
    pub fn of(filters: &[Filter]) -> Option<Self> {
        let (shuffle, rest) = match filters {
            [Filter::Shuffle, rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let inner = match rest {
            [] => Inner::None,
            [Filter::Deflate(_)] => Inner::Deflate,
            [Filter::User(id, _)] if *id == ZSTD_FILTER_ID => Inner::Zstd,
            [Filter::User(id, cd)] if *id == bitshuffle::FILTER_ID && !shuffle => match cd.get(4) {
                Some(&bitshuffle::LZ4) => Inner::Bslz4,
                None | Some(0) => Inner::Bitshuffle(cd.get(3).map_or(0, |&b| b as usize)),
                Some(_) => return None,
            },
            _ => return None,
        };
        Some(Self { shuffle, inner })
    }

    /// Decodes one stored chunk into `out` (its uncompressed size), `elem` bytes per value.
    /// `mask` is the chunk's filter mask: bit k set means filter k was not applied.
    pub fn decode(self, stored: &[u8], mask: u32, elem: usize, out: &mut [u8]) -> std::result::Result<(), String> {
        let shuffled = self.shuffle && mask & 1 == 0;
        let inner_bit = if self.shuffle { 2 } else { 1 };
        let inner = if mask & inner_bit != 0 { Inner::None } else { self.inner };
        if !shuffled {
            return inflate(inner, stored, elem, out);
        }
        let mut plain = vec![0u8; out.len()];
        inflate(inner, stored, elem, &mut plain)?;
        unshuffle(&plain, elem, out);
        Ok(())
    }
}

/// Undoes the compression step alone.
fn inflate(inner: Inner, stored: &[u8], elem: usize, plain: &mut [u8]) -> std::result::Result<(), String> {
    let n = match inner {
        Inner::None => return copy_exact(stored, plain),
        Inner::Bslz4 => return bitshuffle::decompress(stored, elem, plain),
        Inner::Bitshuffle(block) => return bitshuffle::unshuffle_chunk(stored, elem, block, plain),
        Inner::Deflate => libdeflater::Decompressor::new()
            .zlib_decompress(stored, plain)
            .map_err(|e| format!("corrupt deflate chunk: {e:?}"))?,
        Inner::Zstd => {
            zstd::bulk::decompress_to_buffer(stored, plain).map_err(|e| format!("corrupt zstd chunk: {e}"))?
        }
    };
    if n != plain.len() {
        return Err(format!("chunk holds {n} bytes, expected {}", plain.len()));
    }
    Ok(())
}

fn copy_exact(stored: &[u8], out: &mut [u8]) -> std::result::Result<(), String> {
    if stored.len() != out.len() {
        return Err(format!("chunk holds {} bytes, expected {}", stored.len(), out.len()));
    }
    out.copy_from_slice(stored);
    Ok(())
}

/// HDF5's shuffle filter: byte k of every value goes to plane k.
pub fn shuffle(src: &[u8], elem: usize, out: &mut [u8]) {
    let n = src.len() / elem;
    match elem {
        2 => {
            let (p0, p1) = out.split_at_mut(n);
            for ((v, a), b) in src.chunks_exact(2).zip(p0).zip(p1) {
                (*a, *b) = (v[0], v[1]);
            }
        }
        4 => {
            let (p01, p23) = out.split_at_mut(2 * n);
            let ((p0, p1), (p2, p3)) = (p01.split_at_mut(n), p23.split_at_mut(n));
            for (i, v) in src.chunks_exact(4).enumerate() {
                (p0[i], p1[i], p2[i], p3[i]) = (v[0], v[1], v[2], v[3]);
            }
        }
        _ => {
            for (i, v) in src.chunks_exact(elem).enumerate() {
                for (k, &b) in v.iter().enumerate() {
                    out[k * n + i] = b;
                }
            }
        }
    }
}

/// The inverse of [`shuffle`].
pub fn unshuffle(src: &[u8], elem: usize, out: &mut [u8]) {
    let n = src.len() / elem;
    match elem {
        2 => {
            let (p0, p1) = src.split_at(n);
            for ((v, a), b) in out.chunks_exact_mut(2).zip(p0).zip(p1) {
                (v[0], v[1]) = (*a, *b);
            }
        }
        4 => {
            let (p01, p23) = src.split_at(2 * n);
            let ((p0, p1), (p2, p3)) = (p01.split_at(n), p23.split_at(n));
            for (i, v) in out.chunks_exact_mut(4).enumerate() {
                v.copy_from_slice(&[p0[i], p1[i], p2[i], p3[i]]);
            }
        }
        _ => {
            for (i, v) in out.chunks_exact_mut(elem).enumerate() {
                for (k, b) in v.iter_mut().enumerate() {
                    *b = src[k * n + i];
                }
            }
        }
    }
}

/// Per-thread buffers of the encoder.
#[derive(Default)]
pub struct Scratch {
    /// The chunk's bytes: shuffled planes for [`encode_planes`].
    pub planes: Vec<u8>,
    out: Vec<u8>,
    bitshuffle: bitshuffle::Scratch,
}

/// Encodes one chunk (`raw`: its values as little-endian bytes, `elem` bytes each) for a dataset
/// whose pipeline is `c.filters(elem)`; returns the stored bytes.
pub fn encode(c: Compression, raw: &[u8], elem: usize, s: &mut Scratch) -> Vec<u8> {
    match c {
        Compression::None => return raw.to_vec(),
        Compression::Bslz4 => {
            bitshuffle::compress(raw, elem, &mut s.bitshuffle, &mut s.out);
            return s.out.clone();
        }
        _ => {}
    }
    let mut planes = std::mem::take(&mut s.planes);
    planes.resize(raw.len(), 0);
    shuffle(raw, elem, &mut planes);
    let stored = encode_planes(c, &planes, elem, s);
    s.planes = planes;
    stored
}

/// Encodes one chunk given as its shuffled byte planes (`elem` planes of equal length) for a
/// byte-shuffled pipeline `c.filters(elem)`; returns the stored bytes.
pub fn encode_planes(c: Compression, planes: &[u8], elem: usize, s: &mut Scratch) -> Vec<u8> {
    match c {
        Compression::Deflate => crate::io::deflate::zlib_compress(planes, planes.len() / elem, &mut s.out).to_vec(),
        Compression::Gzip(l) => {
            let mut z = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(l as i32).expect("level 1-9"));
            s.out.resize(z.zlib_compress_bound(planes.len()), 0);
            let n = z.zlib_compress(planes, &mut s.out).expect("the bound fits");
            s.out[..n].to_vec()
        }
        Compression::Zstd(l) => zstd::bulk::compress(planes, l as i32).expect("zstd compresses in memory"),
        Compression::None | Compression::Lzf | Compression::Bslz4 => {
            unreachable!("not a byte-shuffled pipeline emsim encodes")
        }
    }
}

unsafe extern "C" {
    // HDF5 >= 1.10.2; hdf5-sys does not declare it.
    fn H5Dget_chunk_storage_size(dset_id: hid_t, offset: *const hsize_t, chunk_bytes: *mut hsize_t) -> herr_t;
}

/// Writes one stored chunk at element `offset` (all filters applied).
pub fn write_chunk(ds: &hdf5::Dataset, offset: &[u64], stored: &[u8]) -> std::result::Result<(), String> {
    write_chunk_masked(ds, offset, stored, 0)
}

/// Writes one stored chunk at element `offset` with the filter mask [`read_chunk`] gave (bit i:
/// filter i of the pipeline was skipped for this chunk).
pub fn write_chunk_masked(
    ds: &hdf5::Dataset,
    offset: &[u64],
    stored: &[u8],
    mask: u32,
) -> std::result::Result<(), String> {
    let _lock = hdf5_sys::LOCK.lock();
    // SAFETY: a valid dataset id, an offset of the dataset's rank, a buffer of `stored.len()` bytes.
    let r = unsafe {
        hdf5_sys::h5d::H5Dwrite_chunk(
            ds.id(),
            H5P_DEFAULT,
            mask,
            offset.as_ptr(),
            stored.len(),
            stored.as_ptr() as *const c_void,
        )
    };
    if r < 0 { Err(format!("H5Dwrite_chunk failed at {offset:?}")) } else { Ok(()) }
}

/// Reads one stored chunk at element `offset`: its bytes and filter mask.
pub fn read_chunk(ds: &hdf5::Dataset, offset: &[u64]) -> std::result::Result<(Vec<u8>, u32), String> {
    let _lock = hdf5_sys::LOCK.lock();
    let mut size: hsize_t = 0;
    // SAFETY: valid ids and an offset of the dataset's rank; `buf` holds the chunk's stored size.
    unsafe {
        if H5Dget_chunk_storage_size(ds.id(), offset.as_ptr(), &mut size) < 0 {
            return Err(format!("no chunk at {offset:?}"));
        }
        let mut buf = vec![0u8; size as usize];
        let mut mask = 0u32;
        let r = hdf5_sys::h5d::H5Dread_chunk(
            ds.id(),
            H5P_DEFAULT,
            offset.as_ptr(),
            &mut mask,
            buf.as_mut_ptr() as *mut c_void,
        );
        if r < 0 {
            return Err(format!("H5Dread_chunk failed at {offset:?} (a truncated or damaged file?)"));
        }
        Ok((buf, mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_decodes_what_it_encodes() {
        let vals: Vec<u16> = (0..5000u32).map(|i| (200 + (i.wrapping_mul(2654435761) >> 27)) as u16).collect();
        let raw: &[u8] = bytemuck::cast_slice(&vals);
        for c in
            [Compression::None, Compression::Deflate, Compression::Gzip(6), Compression::Zstd(3), Compression::Bslz4]
        {
            let stored = encode(c, raw, 2, &mut Scratch::default());
            let codec = Codec::of(&c.filters(2)).expect("emsim decodes its own codecs");
            let mut back = vec![0u8; raw.len()];
            codec.decode(&stored, 0, 2, &mut back).unwrap();
            assert!(back == raw, "{c:?}");
        }
        // a chunk stored with its compression skipped (mask bit 1) is read as shuffled bytes
        let mut sh = vec![0u8; raw.len()];
        shuffle(raw, 2, &mut sh);
        let codec = Codec::of(&Compression::Deflate.filters(2)).unwrap();
        let mut back = vec![0u8; raw.len()];
        codec.decode(&sh, 2, 2, &mut back).unwrap();
        assert!(back == raw);
        assert!(codec.decode(&sh[1..], 0, 2, &mut back).is_err());
        assert_eq!(Codec::of(&[Filter::LZF]), None);
    }

    #[test]
    fn compression_flag() {
        assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::Deflate);
        assert_eq!("gzip=9".parse::<Compression>().unwrap(), Compression::Gzip(9));
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd(1));
        assert_eq!("zstd=22".parse::<Compression>().unwrap(), Compression::Zstd(22));
        assert_eq!("bslz4".parse::<Compression>().unwrap(), Compression::Bslz4);
        for bad in ["gzip=0", "gzip=10", "zstd=0", "zstd=23", "lz4", ""] {
            let e = bad.parse::<Compression>().unwrap_err().to_string();
            assert!(e.contains("--compression"), "{e}");
        }
    }
}
