//! The fast CPU path of the network: the same functions as the layer twins (same signatures,
//! shapes, layouts, and every output overwritten), named `*_fast`, plus a few fused pairs of layers
//! that `Model::forward_cpu` / `backward_cpu` use. The twins stay the readable reference (and the
//! GPU kernels' twins); the tests in tests/net_cpu_fast.rs check every function here against them.
//!
//! - conv2d and linear ([`super::conv2d`], [`super::linear`]): im2col + SGEMM
//!   (`matrixmultiply::sgemm`, single-threaded), parallelized over fixed blocks of samples (below).
//! - ReLU, dropout, max pooling, batch norm: rayon over fixed chunks of elements or of `(sample,
//!   channel)` planes. ReLU, dropout, max pooling and the batch norm's forward and input gradient
//!   compute each element with the twin's expression: bitwise equal to the twins. The batch norm's
//!   sums (statistics, parameter gradients) are f64, per plane in a fixed lane order (8 lanes),
//!   the planes added in sample order: equal to the twins' to about one f32 ulp, and independent of
//!   the thread count. The statistics take one pass (shifted sums, see
//!   [`batchnorm2d_stats_fast`]).
//! - Fused (training): [`relu_batchnorm2d_stats_fast`] (ReLU and the next batch norm's
//!   statistics), [`batchnorm2d_maxpool2d_fwd_fast`] (batch norm and the next max-pool), both
//!   bitwise equal to the separate functions; [`maxpool2d_batchnorm2d_bwd_fast`] (the backward of
//!   `[ReLU ->] BatchNorm2d -> MaxPool2d` without materializing the max-pool's input gradient).
//! - Evaluation mode: [`relu_batchnorm2d_maxpool2d_eval_fast`] pools first and applies the
//!   (monotone) ReLU and batch norm to the pooled values only.
//! - The hot per-plane loops run as AVX2 builds when the CPU has it (the same arithmetic in the
//!   same order: bitwise the same results; `EMSIM_NO_SIMD=1` turns them off).
//! - [`zeroed`]: large activations on transparent huge pages (about half the cost of the first
//!   write to a fresh 100 MB buffer).
//!
//! The rest of this comment is about conv2d and linear.
//!
//! Convolution as a matrix product, for a block of `S` samples and output rows `r0..r1` (the
//! block's columns `j = (s, oy, ox)`, `cols = S * (r1 - r0) * OW`):
//!
//! ```text
//! col[k, j] = x[n0 + s, i, oy*stride + ky - pad, ox*stride + kx - pad]   (0 in the padding), k = (i, ky, kx)
//! forward:          Y[C_out, cols] = [W | b][C_out, K + 1] [col; 1][K + 1, cols]
//! backward input:   dcol[K, cols]  = W^T dY[C_out, cols], then dx = col2im(dcol) (a scatter-add)
//! backward weight:  dW[C_out, K]  += dY[C_out, cols] col^T[cols, K],  db[o] += sum_j dY[o, j]
//! ```
//!
//! A block is one sample when its output plane has at least [`TARGET_COLS`] pixels (then the
//! product reads and writes the NCHW tensors in place, `S = 1`), else `TARGET_COLS / (OH * OW)`
//! samples (gathered and scattered through a scratch buffer). A plane whose `K x cols` columns
//! would exceed [`MAX_COL_ELEMS`] is split into blocks of whole output rows. The `col` and gather
//! buffers are per-thread scratch (`thread_local`), reused across calls.
//!
//! Determinism: blocks and groups depend only on the shape, never on the number of threads, and
//! each block is computed by one thread with a single-threaded SGEMM; so results are bitwise
//! identical whatever the rayon pool. Weight gradients: each of at most [`MAX_GROUPS`] fixed groups
//! of consecutive blocks sums its blocks in f32 (SGEMM with `beta = 1`; the bias gradient in f64
//! from f32 sums of each output row) into its own partial, then the partials are added in group
//! order in f64 (the twins sum the whole batch in f64; the difference is within f32 rounding of
//! each group's sum).
//!
//! Sums are in another order than the twins' (SGEMM's blocking), so results differ from them by
//! f32 rounding: the tests require `|fast - twin| <= 1e-4 * sum of |terms|` per element.
//!
//! Every stride, padding and kernel size is handled here (no fallback to the twins).

use std::cell::RefCell;

use rayon::prelude::*;

use super::batchnorm2d::{BatchNorm2dShape, invstd};
use super::conv2d::Conv2dShape;
use super::dropout::DropoutCfg;
use super::linear::LinearShape;
use super::maxpool2d::MaxPool2dShape;
use super::{Shape4, check_len};
use crate::rng;

/// Columns (sample x output pixel) one SGEMM of a convolution aims for: planes smaller than this
/// are batched, `TARGET_COLS / (OH * OW)` samples per block.
pub const TARGET_COLS: usize = 512;
/// Largest `col` buffer (f32 elements, `K x cols`) of one block; a larger plane is split into
/// blocks of whole output rows (at least one row).
pub const MAX_COL_ELEMS: usize = 1 << 17;
/// Most partial sums of a weight gradient (fixed groups of consecutive blocks / rows).
pub const MAX_GROUPS: usize = 32;
/// Cap on the memory of the partial sums of a weight gradient (f32 elements, all groups together):
/// fewer groups for very large layers.
pub const MAX_PARTIAL_ELEMS: usize = 1 << 23;
/// Rows (samples) per parallel task of the linear forward and input gradient.
pub const LINEAR_ROWS: usize = 64;
/// Fewest rows one partial sum of the linear weight gradient covers.
pub const LINEAR_MIN_GROUP_ROWS: usize = 64;
/// Most values per layer output in one chunk of the evaluation-mode forward pass
/// (`Model::forward_cpu` with `train == false`): chunks of `EVAL_CHUNK_ELEMS / (largest layer
/// output per sample)` samples (at least 1) run through the whole network with their activations
/// in the cache.
pub const EVAL_CHUNK_ELEMS: usize = 1 << 17;

// ---------------------------------------------------------------------------------------------
// Buffers.

/// Size (bytes) from which [`zeroed`] advises transparent huge pages.
pub const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// `vec![0; len]` for the large activations of the CPU path. A large zeroed allocation is a fresh
/// anonymous mapping whose pages the kernel faults in and zeroes on first write, 4 KiB at a time:
/// for a 100 MB activation that costs about as much as writing it twice. On Linux, allocations of
/// at least [`HUGE_PAGE_MIN_BYTES`] are advised to use transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, honoured when `/sys/kernel/mm/transparent_hugepage/enabled` is
/// `madvise` or `always`), which makes that first write about twice as fast. Contents and
/// semantics are exactly `vec![0; len]`'s; the advice is only a hint (errors are ignored).
pub fn zeroed<T: Copy + Default>(len: usize) -> Vec<T> {
    let v = vec![T::default(); len];
    if std::mem::size_of_val(v.as_slice()) >= HUGE_PAGE_MIN_BYTES {
        advise_huge_pages(&v);
    }
    v
}

/// Advises transparent huge pages for the whole 2 MiB pages inside `v`'s memory (Linux only).
fn advise_huge_pages<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{c_int, c_void};
        unsafe extern "C" {
            fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
        }
        const MADV_HUGEPAGE: c_int = 14;
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let (lo, hi) = (start.next_multiple_of(HUGE), end & !(HUGE - 1));
        if hi > lo {
            // SAFETY: `[lo, hi)` is whole pages inside `v`'s allocation; MADV_HUGEPAGE only changes
            // how those pages are backed, never their contents, and reads or writes nothing.
            unsafe {
                madvise(v.as_ptr().cast::<u8>().wrapping_add(lo - start).cast_mut().cast(), hi - lo, MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

// ---------------------------------------------------------------------------------------------
// SIMD dispatch.

/// Whether the AVX2 builds of the per-plane loops below run: on x86-64 CPUs with AVX2, unless the
/// environment variable `EMSIM_NO_SIMD` is set. They are the same Rust code compiled for wider
/// vectors (Rust never fuses or reorders float operations on its own, and each accumulator lane
/// is explicit in the code), so both builds give bitwise the same results.
#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| std::env::var_os("EMSIM_NO_SIMD").is_none() && is_x86_feature_detected!("avx2"))
}

/// `fn $name(args) -> ret` that runs the `#[inline(always)]` function `$body` compiled for AVX2
/// when [`use_avx2`], else as compiled for the baseline target.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident) => {
        $(#[$m])*
        pub(super) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if use_avx2() {
                    // SAFETY: the CPU has AVX2 (checked at run time).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

mod batchnorm;
mod fused;
mod gemm;
mod layers;

pub use batchnorm::*;
pub use fused::*;
pub use gemm::*;
pub use layers::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 builds of the batch-norm sums equal the plain ones bitwise (so results do not
    /// depend on the CPU), for lengths around multiples of the lanes.
    #[test]
    fn avx2_sums_equal_the_plain_ones() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            let x: Vec<f32> = (0..1700).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.3) * 3.0).collect();
            let dy: Vec<f32> = (0..1700).map(|i| ((i * 104729 % 997) as f32 / 997.0 - 0.5) * 2.0).collect();
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1600, 1700] {
                let (x, dy) = (&x[..len], &dy[..len]);
                // SAFETY: the CPU has AVX2 (checked above).
                let (a, b) = unsafe { (shifted_moments_avx2(x, 0.25), dy_moments_avx2(x, dy, 0.1, 1.7)) };
                let (c, d) = (shifted_moments_plain(x, 0.25), dy_moments_plain(x, dy, 0.1, 1.7));
                assert_eq!((a.0.to_bits(), a.1.to_bits()), (c.0.to_bits(), c.1.to_bits()), "shifted_moments len {len}");
                assert_eq!((b.0.to_bits(), b.1.to_bits()), (d.0.to_bits(), d.1.to_bits()), "dy_moments len {len}");
            }
            assert_ne!(shifted_moments_plain(&x, 0.25), (0.0, 0.0));
        }
    }
}
