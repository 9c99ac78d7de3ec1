//! HDF5's Zstandard filter (id 32015, the one `hdf5plugin` and the HDF Group's plugins register),
//! registered in this process so that HDF5 creates datasets that carry it and reads them through
//! its own pipeline. emsim compresses the chunks itself (`io::chunks`); this is what lets HDF5
//! accept the filter on a new dataset and decode it on a plain read. The stored chunk is one
//! standard Zstandard frame with its content size, as those plugins write and read it.

use std::ffi::{c_uint, c_void};
use std::sync::LazyLock;

use hdf5_sys::h5::{H5allocate_memory, H5free_memory};
use hdf5_sys::h5z::{H5Z_CLASS_T_VERS, H5Z_FLAG_REVERSE, H5Z_class2_t, H5Zfilter_avail, H5Zregister};

use super::chunks::ZSTD_FILTER_ID;

/// The level when the dataset's filter has none.
const DEFAULT_LEVEL: i32 = 1;

const FILTER: H5Z_class2_t = H5Z_class2_t {
    version: H5Z_CLASS_T_VERS as _,
    id: ZSTD_FILTER_ID,
    encoder_present: 1,
    decoder_present: 1,
    name: c"zstd (emsim)".as_ptr(),
    can_apply: None,
    set_local: None,
    filter: Some(filter),
};

static REGISTERED: LazyLock<Result<(), String>> = LazyLock::new(|| {
    // SAFETY: plain HDF5 calls; FILTER is a static description with a 'static name and function.
    unsafe {
        if H5Zfilter_avail(ZSTD_FILTER_ID) > 0 {
            return Ok(()); // a plugin (HDF5_PLUGIN_PATH) already provides it
        }
        if H5Zregister((&FILTER as *const H5Z_class2_t).cast()) < 0 {
            return Err("HDF5 refused to register the Zstandard filter (32015)".into());
        }
    }
    Ok(())
});

/// Makes filter 32015 available to HDF5 in this process (once).
pub fn register() -> Result<(), String> {
    hdf5::sync::sync(|| REGISTERED.clone())
}

/// The filter callback: `*buf` holds `nbytes` bytes (in a buffer of `*buf_size`); replaces it
/// with the coded or decoded bytes and returns their length, or 0 on failure.
unsafe extern "C" fn filter(
    flags: c_uint,
    cd_nelmts: usize,
    cd_values: *const c_uint,
    nbytes: usize,
    buf_size: *mut usize,
    buf: *mut *mut c_void,
) -> usize {
    // SAFETY: HDF5 hands a valid buffer of at least `nbytes` bytes and `cd_nelmts` values.
    let input = unsafe { std::slice::from_raw_parts(*buf as *const u8, nbytes) };
    let out = if flags & H5Z_FLAG_REVERSE != 0 {
        match zstd::zstd_safe::get_frame_content_size(input) {
            Ok(Some(n)) => zstd::bulk::decompress(input, n as usize).ok(),
            _ => None,
        }
    } else {
        let level = if cd_nelmts > 0 && !cd_values.is_null() {
            // SAFETY: at least one value, checked above
            unsafe { *cd_values as i32 }
        } else {
            DEFAULT_LEVEL
        };
        zstd::bulk::compress(input, level).ok()
    };
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
