//! The third-party HDF5 filters emsim writes, registered in this process so that HDF5 creates
//! datasets that carry them and reads them through its own pipeline (emsim codes the chunks
//! itself, `io::chunks`; this lets HDF5 accept the filter on a new dataset and decode it on a plain
//! read). Both are the filters `hdf5plugin` and the HDF Group's plugins register:
//! - Zstandard, id 32015: the chunk is one standard Zstandard frame with its content size;
//! - bitshuffle, id 32008: bitshuffle + LZ4 chunks (`io::bitshuffle`), or the transpose alone.
//!
//! Where a plugin already provides a filter (`HDF5_PLUGIN_PATH`), it is used instead.

use std::ffi::{c_uint, c_void};
use std::sync::LazyLock;

use hdf5_sys::h5::{H5allocate_memory, H5free_memory};
use hdf5_sys::h5z::{H5Z_CLASS_T_VERS, H5Z_FLAG_REVERSE, H5Z_class2_t, H5Zfilter_avail, H5Zregister};

use super::bitshuffle;
use super::chunks::ZSTD_FILTER_ID;

/// The Zstandard level when the dataset's filter has none.
const DEFAULT_ZSTD_LEVEL: i32 = 1;

const ZSTD: H5Z_class2_t = H5Z_class2_t {
    version: H5Z_CLASS_T_VERS as _,
    id: ZSTD_FILTER_ID,
    encoder_present: 1,
    decoder_present: 1,
    name: c"zstd (emsim)".as_ptr(),
    can_apply: None,
    set_local: None,
    filter: Some(callback::<Zstd>),
};

const BITSHUFFLE: H5Z_class2_t = H5Z_class2_t {
    version: H5Z_CLASS_T_VERS as _,
    id: bitshuffle::FILTER_ID,
    encoder_present: 1,
    decoder_present: 1,
    name: c"bitshuffle (emsim)".as_ptr(),
    can_apply: None,
    set_local: None,
    filter: Some(callback::<Bitshuffle>),
};

/// Registers `class` unless HDF5 already has a filter of its id.
fn register_class(class: &'static H5Z_class2_t, what: &str) -> Result<(), String> {
    // SAFETY: plain HDF5 calls; the class is a static description with a 'static name and function.
    unsafe {
        if H5Zfilter_avail(class.id) > 0 {
            return Ok(());
        }
        if H5Zregister((class as *const H5Z_class2_t).cast()) < 0 {
            return Err(format!("HDF5 refused to register the {what} filter ({})", class.id));
        }
    }
    Ok(())
}

static REGISTERED: LazyLock<Result<(), String>> = LazyLock::new(|| {
    register_class(&ZSTD, "Zstandard")?;
    register_class(&BITSHUFFLE, "bitshuffle")
});

/// Makes filters 32015 and 32008 available to HDF5 in this process (once).
pub fn register() -> Result<(), String> {
    hdf5::sync::sync(|| REGISTERED.clone())
}

/// The filter's parameters, or none.
///
/// # Safety
/// `cd_values` points to `cd_nelmts` values (or is null).
unsafe fn params<'a>(cd_nelmts: usize, cd_values: *const c_uint) -> &'a [c_uint] {
    if cd_nelmts == 0 || cd_values.is_null() {
        return &[];
    }
    // SAFETY: as the caller promises
    unsafe { std::slice::from_raw_parts(cd_values, cd_nelmts) }
}

/// Replaces HDF5's buffer with `out` (a fresh HDF5 allocation); returns its length, 0 on failure.
///
/// # Safety
/// `buf` and `buf_size` are the filter callback's arguments.
unsafe fn hand_back(out: Option<Vec<u8>>, buf_size: *mut usize, buf: *mut *mut c_void) -> usize {
    let Some(out) = out else {
        return 0;
    };
    // SAFETY: a fresh HDF5 allocation of out.len() bytes replaces the one HDF5 gave us.
    unsafe {
        let mem = H5allocate_memory(out.len().max(1), 0) as *mut u8;
        if mem.is_null() {
            return 0;
        }
        std::ptr::copy_nonoverlapping(out.as_ptr(), mem, out.len());
        H5free_memory(*buf);
        *buf = mem as *mut c_void;
        *buf_size = out.len();
    }
    out.len()
}

/// What a filter does to one chunk: decode (`reverse`) or code `input` with the dataset's
/// parameters `cd`; None on failure.
trait Coder {
    fn code(reverse: bool, cd: &[c_uint], input: &[u8]) -> Option<Vec<u8>>;
}

/// Filter 32015: one Zstandard frame with its content size.
struct Zstd;

impl Coder for Zstd {
    fn code(reverse: bool, cd: &[c_uint], input: &[u8]) -> Option<Vec<u8>> {
        if reverse {
            match zstd::zstd_safe::get_frame_content_size(input) {
                Ok(Some(n)) => zstd::bulk::decompress(input, n as usize).ok(),
                _ => None,
            }
        } else {
            let level = cd.first().map_or(DEFAULT_ZSTD_LEVEL, |&l| l as i32);
            zstd::bulk::compress(input, level).ok()
        }
    }
}

/// Filter 32008 with the library's parameters: `[major, minor, value bytes, block values (0:
/// default), compression (0: none, 2: LZ4)]`.
struct Bitshuffle;

impl Coder for Bitshuffle {
    fn code(reverse: bool, cd: &[c_uint], input: &[u8]) -> Option<Vec<u8>> {
        bitshuffle_run(reverse, cd, input)
    }
}

/// The filter callback HDF5 calls: `*buf` holds `nbytes` bytes (in a buffer of `*buf_size`);
/// replaces them with the coded or decoded bytes and returns their length, or 0 on failure.
unsafe extern "C" fn callback<C: Coder>(
    flags: c_uint,
    cd_nelmts: usize,
    cd_values: *const c_uint,
    nbytes: usize,
    buf_size: *mut usize,
    buf: *mut *mut c_void,
) -> usize {
    // SAFETY: HDF5 hands a valid buffer of at least `nbytes` bytes and `cd_nelmts` values.
    let (input, cd) = unsafe { (std::slice::from_raw_parts(*buf as *const u8, nbytes), params(cd_nelmts, cd_values)) };
    let out = C::code(flags & H5Z_FLAG_REVERSE != 0, cd, input);
    // SAFETY: the callback's own arguments
    unsafe { hand_back(out, buf_size, buf) }
}

fn bitshuffle_run(reverse: bool, cd: &[c_uint], input: &[u8]) -> Option<Vec<u8>> {
    let elem = *cd.get(2)? as usize;
    let block = cd.get(3).map_or(0, |&b| b as usize);
    let lz4 = match cd.get(4) {
        None | Some(0) => false,
        Some(&bitshuffle::LZ4) => true,
        Some(_) => return None, // Zstandard inside bitshuffle: not coded by emsim
    };
    if elem == 0 {
        return None;
    }
    match (reverse, lz4) {
        (true, true) => {
            let total = u64::from_be_bytes(input.get(..8)?.try_into().ok()?) as usize;
            let mut out = vec![0u8; total];
            bitshuffle::decompress(input, elem, &mut out).ok()?;
            Some(out)
        }
        (false, true) => {
            // blocks of the default size whatever `block` asks: the header records the size
            let mut out = Vec::new();
            bitshuffle::compress(input, elem, &mut bitshuffle::Scratch::default(), &mut out);
            Some(out)
        }
        (true, false) => {
            let mut out = vec![0u8; input.len()];
            bitshuffle::unshuffle_chunk(input, elem, block, &mut out).ok()?;
            Some(out)
        }
        (false, false) => None, // the transpose alone is never written by emsim
    }
}
