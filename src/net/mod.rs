//! Neural-network layers for sub-pixel localization: the CPU references ("twins") that the WGSL
//! kernels are checked against (`tests/net_layers_*.rs`), the optimizer, and the networks built
//! from them (the EMSim notes' network and ours).
//!
//! Conventions kept by every function here (and by the kernels that mirror them):
//! - Tensors are flat `f32` slices in NCHW order: element `(n, c, y, x)` of a `[N, C, H, W]`
//!   tensor is at `((n * C + c) * H + y) * W + x` ([`Shape4::index`]). Matrices are `[rows, cols]`,
//!   row-major. Weights use PyTorch's layouts (conv `[out, in, kh, kw]`, linear `[out, in]`), so a
//!   PyTorch state dict loads without transposes.
//! - Every function **overwrites** all of its output slices (none accumulates into them), so callers
//!   need not zero outputs; the tests fill outputs with garbage to check this.
//! - A backward function takes `dL/d(output)` of some scalar loss `L` and returns `dL/d(input)` and
//!   `dL/d(parameters)`.
//! - Sums: a dot product for one output element (conv, linear) accumulates in f32 in a fixed order
//!   (bias first, then input channel, kernel row, kernel column); reductions over the batch
//!   (`N*H*W` terms: weight and bias gradients, batch-norm statistics) accumulate in f64. A GPU
//!   kernel will sum in another order, so GPU-vs-CPU tests compare with a tolerance.
//! - Heavy layers split their work over output elements with rayon; each element is computed by
//!   one thread in a fixed order, so the results do not depend on the thread count.
//! - Shapes are checked with `assert!` (a wrong slice length is a programming error, not input).

pub mod batchnorm2d;
pub mod conv2d;
pub mod cpu_fast;
pub mod crop;
pub mod data;
pub mod decode;
pub mod dropout;
pub mod frames_data;
pub mod gpu_net;
pub mod heldout;
pub mod infer;
pub mod init;
pub mod linear;
pub mod loss;
pub mod maxpool2d;
pub mod mlp_gpu;
pub mod model;
pub mod optim;
pub mod pair_eval;
pub mod pairs;
pub mod precision;
pub mod reduce;
pub mod relu;
pub mod train;

/// The shape of an NCHW tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape4 {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape4 {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Self { n, c, h, w }
    }

    /// Number of elements, `n * c * h * w`.
    pub const fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements in one `(n, c)` plane, `h * w`.
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Flat index of element `(n, c, y, x)`.
    #[inline(always)]
    pub const fn index(&self, n: usize, c: usize, y: usize, x: usize) -> usize {
        ((n * self.c + c) * self.h + y) * self.w + x
    }
}

/// Panics with a message naming the slice when its length is not `expected`.
#[track_caller]
pub(crate) fn check_len(name: &str, len: usize, expected: usize) {
    assert!(len == expected, "{name}: length {len}, expected {expected}");
}

/// What the `_gpu` test wrappers pre-fill outputs and scratch with, so that a missing write shows.
#[cfg(feature = "testing")]
pub(crate) const GARBAGE: f32 = -12345.0;

/// Panics unless `buf` holds at least `len` f32 (a wrong buffer is a programming error; unchecked,
/// the GPU would clamp or drop out-of-range accesses silently).
#[track_caller]
pub(crate) fn check_buffer(name: &str, buf: &wgpu::Buffer, len: usize) {
    let need = (len as u64 * 4).max(4);
    assert!(buf.size() >= need, "{name}: buffer of {} bytes, need {len} f32 ({need} bytes)", buf.size());
}

/// Panics unless `buf` holds at least `bytes` bytes (see [`check_buffer`]).
#[track_caller]
pub(crate) fn check_buffer_bytes(name: &str, buf: &wgpu::Buffer, bytes: u64) {
    assert!(buf.size() >= bytes.max(4), "{name}: buffer of {} bytes, need {bytes}", buf.size());
}

/// `v` as u32, or a panic naming it (the kernels index with u32).
#[track_caller]
pub(crate) fn to_u32(name: &str, v: usize) -> u32 {
    u32::try_from(v).unwrap_or_else(|_| panic!("{name} = {v} exceeds the kernels' u32 indices"))
}
