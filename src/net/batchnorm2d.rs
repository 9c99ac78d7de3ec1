//! 2-D batch normalisation (PyTorch `nn.BatchNorm2d(C)`: affine, `eps = 1e-5`, `momentum = 0.1`):
//! statistics, forward, running-average update and the train-mode backward. Twins of the kernels
//! `net/batchnorm2d_stats` (two stages), `net/batchnorm2d_fwd`, `net/batchnorm2d_running`,
//! `net/batchnorm2d_bwd_reduce` (two stages) and `net/batchnorm2d_bwd_input`.
//!
//! Per channel `c`, over its `m = N * H * W` terms:
//!
//! ```text
//! mean[c]   = sum x / m                    var[c] = sum (x - mean)^2 / m      (biased, used to normalise)
//! invstd    = 1 / sqrt(var[c] + eps)       xhat   = (x - mean[c]) * invstd
//! y         = xhat * gamma[c] + beta[c]    (batch statistics in training, running ones at inference)
//! running   = (1 - momentum) * running + momentum * batch   (var made unbiased: var * m / (m - 1))
//! dbeta[c]  = sum dy                       dgamma[c] = sum dy * xhat
//! dx        = gamma[c] * invstd / m * (m * dy - dbeta[c] - xhat * dgamma[c])
//! ```
//!
//! `dx` is the gradient through the batch statistics (train mode): the derivative of
//! `fwd(x, stats(x))`, not of `fwd` with the statistics held fixed.
//!
//! The reductions (statistics, `dbeta`, `dgamma`) accumulate in f64 here. On the GPU they run in two
//! deterministic stages: one workgroup per `(channel, chunk of BN_CHUNK terms)` reduces its chunk
//! with a fixed tree into a scratch buffer, then one workgroup per channel combines the chunks in
//! a fixed order (the statistics as `(count, mean, M2)` moments with Chan's formula, which stays
//! accurate in f32). No atomics, so the GPU result is the same from run to run.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::check_buffer_bytes;
use super::precision::ActIo;
use super::{Shape4, check_len};
use crate::gpu::{GpuContext, GpuError};

/// Terms per channel that one stage-1 workgroup reduces (a multiple of 256: 4 per invocation).
pub const BN_CHUNK: usize = 1024;

/// Shape of one batch-norm layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2dShape {
    /// Input (and output) `[N, C, H, W]`.
    pub x: Shape4,
    /// Added to the variance before the square root (PyTorch's default is 1e-5).
    pub eps: f32,
}

impl BatchNorm2dShape {
    /// PyTorch's default `eps = 1e-5`.
    pub const fn new(x: Shape4) -> Self {
        Self { x, eps: 1e-5 }
    }

    /// Terms per channel, `N * H * W`.
    pub const fn m(&self) -> usize {
        self.x.n * self.x.plane()
    }

    /// Stage-1 chunks per channel, `ceil(m / BN_CHUNK)`.
    pub const fn n_chunks(&self) -> usize {
        self.m().div_ceil(BN_CHUNK)
    }

    #[track_caller]
    fn check(&self) {
        assert!(self.x.c >= 1 && self.m() >= 1, "batchnorm2d: empty input {:?}", self.x);
        assert!(self.eps >= 0.0, "batchnorm2d: eps must be >= 0");
        assert!(self.x.len() <= u32::MAX as usize, "batchnorm2d: {} elements exceed u32 indexing", self.x.len());
    }

    /// The uniform of every batchnorm2d kernel (`momentum` is only read by `batchnorm2d_running`).
    pub fn params(&self, momentum: f32) -> BatchNorm2dParams {
        let m = self.m();
        BatchNorm2dParams {
            c: self.x.c as u32,
            hw: self.x.plane() as u32,
            m: m as u32,
            len: self.x.len() as u32,
            chunk: BN_CHUNK as u32,
            n_chunks: self.n_chunks() as u32,
            _pad0: 0,
            _pad1: 0,
            eps: self.eps,
            momentum,
            keep: 1.0 - momentum,
            unbias: unbias(m),
        }
    }
}

/// Uniform of the batchnorm2d kernels. Mirrors `BatchNorm2dParams` in
/// shaders/net/batchnorm2d_common.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct BatchNorm2dParams {
    pub c: u32,
    /// `H * W`.
    pub hw: u32,
    /// `N * H * W`.
    pub m: u32,
    /// `N * C * H * W`.
    pub len: u32,
    /// [`BN_CHUNK`].
    pub chunk: u32,
    pub n_chunks: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub eps: f32,
    pub momentum: f32,
    /// `1 - momentum`.
    pub keep: f32,
    /// `m / (m - 1)` (Bessel's correction for the running variance).
    pub unbias: f32,
}
const _: () = assert!(std::mem::size_of::<BatchNorm2dParams>() == 48);

/// `m / (m - 1)` in f32 (infinite for m = 1, which `batchnorm2d_running_*` rejects).
fn unbias(m: usize) -> f32 {
    m as f32 / (m as f32 - 1.0)
}

/// `1 / sqrt(var + eps)`, the expression of the kernels' `invstd`.
#[inline(always)]
pub fn invstd(var: f32, eps: f32) -> f32 {
    1.0 / (var + eps).sqrt()
}

/// The `[H * W]` planes of channel `c`, for `n = 0..N`.
fn channel_planes<'a>(s: &BatchNorm2dShape, x: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
    let (xs, hw) = (s.x, s.x.plane());
    (0..xs.n).map(move |n| &x[xs.index(n, c, 0, 0)..xs.index(n, c, 0, 0) + hw])
}

/// Batch statistics per channel over `N, H, W`: `mean` and the biased `var` (two passes, f64 sums).
/// Writes all of `mean` and `var` (`[C]` each).
pub fn batchnorm2d_stats_cpu(s: &BatchNorm2dShape, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    s.check();
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), s.x.c);
    check_len("batchnorm2d var", var.len(), s.x.c);
    let m = s.m() as f64;
    mean.par_iter_mut().zip(var.par_iter_mut()).enumerate().for_each(|(c, (mean, var))| {
        let mu = channel_planes(s, x, c).flatten().map(|&v| v as f64).sum::<f64>() / m;
        let m2 = channel_planes(s, x, c).flatten().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>();
        *mean = mu as f32;
        *var = (m2 / m) as f32;
    });
}

/// Forward: `y = (x - mean[c]) * invstd(var[c]) * gamma[c] + beta[c]`, in f32. Writes all of `y`.
pub fn batchnorm2d_fwd_cpu(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    s.check();
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), c_len);
    check_len("batchnorm2d var", var.len(), c_len);
    check_len("batchnorm2d gamma", gamma.len(), c_len);
    check_len("batchnorm2d beta", beta.len(), c_len);
    check_len("batchnorm2d y", y.len(), s.x.len());
    let hw = s.x.plane();
    y.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(plane, (y, x))| {
        let c = plane % c_len;
        let inv = invstd(var[c], s.eps);
        for (y, &x) in y.iter_mut().zip(x) {
            *y = (x - mean[c]) * inv * gamma[c] + beta[c];
        }
    });
}

/// Running-average update, in place: `running = (1 - momentum) * running + momentum * batch`, with
/// the batch variance made unbiased (`var * m / (m - 1)`), as PyTorch does. Needs `m >= 2`
/// (PyTorch refuses training with one value per channel).
pub fn batchnorm2d_running_cpu(
    s: &BatchNorm2dShape,
    momentum: f32,
    mean: &[f32],
    var: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
) {
    s.check();
    assert!(s.m() >= 2, "batchnorm2d: the running variance needs more than one value per channel");
    let c_len = s.x.c;
    check_len("batchnorm2d mean", mean.len(), c_len);
    check_len("batchnorm2d var", var.len(), c_len);
    check_len("batchnorm2d running_mean", running_mean.len(), c_len);
    check_len("batchnorm2d running_var", running_var.len(), c_len);
    let p = s.params(momentum);
    for c in 0..c_len {
        running_mean[c] = p.keep * running_mean[c] + p.momentum * mean[c];
        running_var[c] = p.keep * running_var[c] + p.momentum * (var[c] * p.unbias);
    }
}

/// Parameter gradients: `dbeta[c] = sum dy`, `dgamma[c] = sum dy * xhat` (xhat in f32 as in the
/// forward, sums in f64). Writes all of `dgamma` and `dbeta`.
pub fn batchnorm2d_bwd_reduce_cpu(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    s.check();
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), c_len);
    check_len("batchnorm2d var", var.len(), c_len);
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d dgamma", dgamma.len(), c_len);
    check_len("batchnorm2d dbeta", dbeta.len(), c_len);
    dgamma.par_iter_mut().zip(dbeta.par_iter_mut()).enumerate().for_each(|(c, (dgamma, dbeta))| {
        let inv = invstd(var[c], s.eps);
        let (mut s_dy, mut s_dyx) = (0.0f64, 0.0f64);
        for (x, dy) in channel_planes(s, x, c).zip(channel_planes(s, dy, c)) {
            for (&x, &g) in x.iter().zip(dy) {
                s_dy += g as f64;
                s_dyx += g as f64 * ((x - mean[c]) * inv) as f64;
            }
        }
        *dbeta = s_dy as f32;
        *dgamma = s_dyx as f32;
    });
}

/// Input gradient through the batch statistics:
/// `dx = gamma[c] * invstd / m * (m * dy - dbeta[c] - xhat * dgamma[c])`, in f32, with `dgamma`,
/// `dbeta` from [`batchnorm2d_bwd_reduce_cpu`]. Writes all of `dx`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_bwd_input_cpu(
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    s.check();
    let c_len = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c_len);
    }
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d dx", dx.len(), s.x.len());
    let hw = s.x.plane();
    let mf = s.m() as f32;
    dx.par_chunks_mut(hw).zip(x.par_chunks(hw).zip(dy.par_chunks(hw))).enumerate().for_each(
        |(plane, (dx, (x, dy)))| {
            let c = plane % c_len;
            let inv = invstd(var[c], s.eps);
            let k = gamma[c] * inv / mf;
            for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                let xhat = (x - mean[c]) * inv;
                *dx = k * (mf * g - dbeta[c] - xhat * dgamma[c]);
            }
        },
    );
}

/// f32 elements of the scratch buffer that [`batchnorm2d_stats_record`] needs: `2 * C * n_chunks`.
pub fn batchnorm2d_stats_scratch_len(s: &BatchNorm2dShape) -> usize {
    2 * s.x.c * s.n_chunks()
}

/// f32 elements of the scratch buffer that [`batchnorm2d_bwd_reduce_record`] needs: `2 * C * n_chunks`.
pub fn batchnorm2d_bwd_reduce_scratch_len(s: &BatchNorm2dShape) -> usize {
    2 * s.x.c * s.n_chunks()
}

/// Records the two stages of the batch statistics: `x` -> `mean`, `var` (`[C]` each), through
/// `scratch` (at least [`batchnorm2d_stats_scratch_len`] f32).
pub fn batchnorm2d_stats_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &BatchNorm2dShape,
    x: &wgpu::Buffer,
    mean: &wgpu::Buffer,
    var: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<(), GpuError> {
    s.check();
    let p = s.params(0.0);
    check_scratch(scratch, batchnorm2d_stats_scratch_len(s));
    let u = ctx.uniform("batchnorm2d_params", &p);
    let groups = (p.c * p.n_chunks) as u64;
    ctx.dispatch(
        enc,
        &crate::shaders::NET_BATCHNORM2D_STATS_PARTIAL,
        &[("params", &u), ("x", x), ("scratch", scratch)],
        groups * 256,
    )?;
    ctx.dispatch(
        enc,
        &crate::shaders::NET_BATCHNORM2D_STATS,
        &[("params", &u), ("scratch", scratch), ("mean", mean), ("variance", var)],
        p.c as u64 * 256,
    )
}

/// Elements per invocation of `batchnorm2d_fwd` (a run within one plane; keep in sync with
/// shaders/net/batchnorm2d_fwd.wgsl).
pub const BATCHNORM2D_FWD_PB: usize = 8;

/// Records the forward: `x`, `mean`, `var`, `gamma`, `beta` -> `y`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_fwd_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &BatchNorm2dShape,
    x: &wgpu::Buffer,
    mean: &wgpu::Buffer,
    var: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    beta: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    batchnorm2d_fwd_record_io(ctx, enc, s, ActIo::F32, x, [mean, var, gamma, beta], y)
}

/// [`batchnorm2d_fwd_record`] with `x` / `y` stored as `io` says (see [`super::precision`]);
/// `stats` = `[mean, var, gamma, beta]` (f32).
pub fn batchnorm2d_fwd_record_io(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &BatchNorm2dShape,
    io: ActIo,
    x: &wgpu::Buffer,
    stats: [&wgpu::Buffer; 4],
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    s.check();
    check_buffer_bytes("batchnorm2d x", x, io.x_bytes(s.x.len()));
    check_buffer_bytes("batchnorm2d y", y, io.y_bytes(s.x.len()));
    let u = ctx.uniform("batchnorm2d_params", &s.params(0.0));
    let kernel = io.pick(&crate::shaders::NET_BATCHNORM2D_FWD, &crate::shaders::NET_BATCHNORM2D_FWD_F16);
    let [mean, var, gamma, beta] = stats;
    // one invocation per run of BATCHNORM2D_FWD_PB elements of a plane
    let threads = (s.x.len() / s.x.plane()) * s.x.plane().div_ceil(BATCHNORM2D_FWD_PB);
    ctx.dispatch(
        enc,
        kernel,
        &[("params", &u), ("x", x), ("mean", mean), ("variance", var), ("gamma", gamma), ("beta", beta), ("y", y)],
        threads as u64,
    )
}

/// Records the running-average update (in place on `running_mean`, `running_var`).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_running_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &BatchNorm2dShape,
    momentum: f32,
    mean: &wgpu::Buffer,
    var: &wgpu::Buffer,
    running_mean: &wgpu::Buffer,
    running_var: &wgpu::Buffer,
) -> Result<(), GpuError> {
    s.check();
    assert!(s.m() >= 2, "batchnorm2d: the running variance needs more than one value per channel");
    let u = ctx.uniform("batchnorm2d_params", &s.params(momentum));
    ctx.dispatch(
        enc,
        &crate::shaders::NET_BATCHNORM2D_RUNNING,
        &[
            ("params", &u),
            ("mean", mean),
            ("variance", var),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ],
        s.x.c as u64,
    )
}

/// Records the two stages of the parameter gradients: `x`, `mean`, `var`, `dy` -> `dgamma`, `dbeta`,
/// through `scratch` (at least [`batchnorm2d_bwd_reduce_scratch_len`] f32).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_bwd_reduce_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &BatchNorm2dShape,
    x: &wgpu::Buffer,
    mean: &wgpu::Buffer,
    var: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    dbeta: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
) -> Result<(), GpuError> {
    s.check();
    let p = s.params(0.0);
    check_scratch(scratch, batchnorm2d_bwd_reduce_scratch_len(s));
    let u = ctx.uniform("batchnorm2d_params", &p);
    let groups = (p.c * p.n_chunks) as u64;
    ctx.dispatch(
        enc,
        &crate::shaders::NET_BATCHNORM2D_BWD_REDUCE_PARTIAL,
        &[("params", &u), ("x", x), ("mean", mean), ("variance", var), ("dy", dy), ("scratch", scratch)],
        groups * 256,
    )?;
    ctx.dispatch(
        enc,
        &crate::shaders::NET_BATCHNORM2D_BWD_REDUCE,
        &[("params", &u), ("scratch", scratch), ("dgamma", dgamma), ("dbeta", dbeta)],
        p.c as u64 * 256,
    )
}

/// Records the input gradient: `x`, `mean`, `var`, `gamma`, `dgamma`, `dbeta`, `dy` -> `dx`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_bwd_input_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    s: &BatchNorm2dShape,
    x: &wgpu::Buffer,
    mean: &wgpu::Buffer,
    var: &wgpu::Buffer,
    gamma: &wgpu::Buffer,
    dgamma: &wgpu::Buffer,
    dbeta: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    s.check();
    let u = ctx.uniform("batchnorm2d_params", &s.params(0.0));
    ctx.dispatch(
        enc,
        &crate::shaders::NET_BATCHNORM2D_BWD_INPUT,
        &[
            ("params", &u),
            ("x", x),
            ("mean", mean),
            ("variance", var),
            ("gamma", gamma),
            ("dgamma", dgamma),
            ("dbeta", dbeta),
            ("dy", dy),
            ("dx", dx),
        ],
        s.x.len() as u64,
    )
}

#[track_caller]
fn check_scratch(scratch: &wgpu::Buffer, len: usize) {
    assert!(
        scratch.size() >= (len * 4) as u64,
        "batchnorm2d: scratch buffer of {} bytes, need {}",
        scratch.size(),
        len * 4
    );
}

/// Garbage-filled f32 buffer (test wrappers: shows missing writes).
#[cfg(feature = "testing")]
fn garbage(ctx: &GpuContext, label: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
    ctx.upload(label, &vec![-12345.0f32; len])
}

/// Runs the batch statistics alone (test wrapper): returns `(mean, var)`.
#[cfg(feature = "testing")]
pub fn batchnorm2d_stats_gpu(ctx: &GpuContext, s: &BatchNorm2dShape, x: &[f32]) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    s.check();
    check_len("batchnorm2d x", x.len(), s.x.len());
    let c = s.x.c;
    let xb = ctx.upload("batchnorm2d x", x)?;
    let (mb, vb) = (garbage(ctx, "batchnorm2d mean", c)?, garbage(ctx, "batchnorm2d var", c)?);
    let scratch = garbage(ctx, "batchnorm2d scratch", batchnorm2d_stats_scratch_len(s))?;
    let mut enc = ctx.encoder("batchnorm2d_stats");
    batchnorm2d_stats_record(ctx, &mut enc, s, &xb, &mb, &vb, &scratch)?;
    let (rm, rv) = (ctx.readback(&mut enc, &mb, c as u64 * 4), ctx.readback(&mut enc, &vb, c as u64 * 4));
    ctx.submit_and_wait(enc)?;
    Ok((rm.read(ctx)?, rv.read(ctx)?))
}

/// Runs the forward alone (test wrapper): returns `y`.
#[cfg(feature = "testing")]
pub fn batchnorm2d_fwd_gpu(
    ctx: &GpuContext,
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> crate::Result<Vec<f32>> {
    s.check();
    check_len("batchnorm2d x", x.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), s.x.c);
    }
    let n = s.x.len();
    let bufs: Vec<wgpu::Buffer> =
        [x, mean, var, gamma, beta].iter().map(|v| ctx.upload("batchnorm2d input", v)).collect::<Result<_, _>>()?;
    let yb = garbage(ctx, "batchnorm2d y", n)?;
    let mut enc = ctx.encoder("batchnorm2d_fwd");
    batchnorm2d_fwd_record(ctx, &mut enc, s, &bufs[0], &bufs[1], &bufs[2], &bufs[3], &bufs[4], &yb)?;
    let rb = ctx.readback(&mut enc, &yb, n as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

/// Runs the running-average update alone (test wrapper): returns the updated
/// `(running_mean, running_var)`.
#[cfg(feature = "testing")]
pub fn batchnorm2d_running_gpu(
    ctx: &GpuContext,
    s: &BatchNorm2dShape,
    momentum: f32,
    mean: &[f32],
    var: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    s.check();
    let c = s.x.c;
    for (name, v) in [("mean", mean), ("var", var), ("running_mean", running_mean), ("running_var", running_var)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), c);
    }
    let (mb, vb) = (ctx.upload("batchnorm2d mean", mean)?, ctx.upload("batchnorm2d var", var)?);
    let rmb = ctx.upload("batchnorm2d running_mean", running_mean)?;
    let rvb = ctx.upload("batchnorm2d running_var", running_var)?;
    let mut enc = ctx.encoder("batchnorm2d_running");
    batchnorm2d_running_record(ctx, &mut enc, s, momentum, &mb, &vb, &rmb, &rvb)?;
    let (rm, rv) = (ctx.readback(&mut enc, &rmb, c as u64 * 4), ctx.readback(&mut enc, &rvb, c as u64 * 4));
    ctx.submit_and_wait(enc)?;
    Ok((rm.read(ctx)?, rv.read(ctx)?))
}

/// Runs the parameter gradients alone (test wrapper): returns `(dgamma, dbeta)`.
#[cfg(feature = "testing")]
pub fn batchnorm2d_bwd_reduce_gpu(
    ctx: &GpuContext,
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    dy: &[f32],
) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    s.check();
    let c = s.x.c;
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    check_len("batchnorm2d mean", mean.len(), c);
    check_len("batchnorm2d var", var.len(), c);
    let xb = ctx.upload("batchnorm2d x", x)?;
    let (mb, vb) = (ctx.upload("batchnorm2d mean", mean)?, ctx.upload("batchnorm2d var", var)?);
    let dyb = ctx.upload("batchnorm2d dy", dy)?;
    let (dgb, dbb) = (garbage(ctx, "batchnorm2d dgamma", c)?, garbage(ctx, "batchnorm2d dbeta", c)?);
    let scratch = garbage(ctx, "batchnorm2d scratch", batchnorm2d_bwd_reduce_scratch_len(s))?;
    let mut enc = ctx.encoder("batchnorm2d_bwd_reduce");
    batchnorm2d_bwd_reduce_record(ctx, &mut enc, s, &xb, &mb, &vb, &dyb, &dgb, &dbb, &scratch)?;
    let (rg, rb) = (ctx.readback(&mut enc, &dgb, c as u64 * 4), ctx.readback(&mut enc, &dbb, c as u64 * 4));
    ctx.submit_and_wait(enc)?;
    Ok((rg.read(ctx)?, rb.read(ctx)?))
}

/// Runs the input gradient alone (test wrapper): returns `dx`.
#[allow(clippy::too_many_arguments)]
#[cfg(feature = "testing")]
pub fn batchnorm2d_bwd_input_gpu(
    ctx: &GpuContext,
    s: &BatchNorm2dShape,
    x: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
    dy: &[f32],
) -> crate::Result<Vec<f32>> {
    s.check();
    check_len("batchnorm2d x", x.len(), s.x.len());
    check_len("batchnorm2d dy", dy.len(), s.x.len());
    for (name, v) in [("mean", mean), ("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)] {
        check_len(&format!("batchnorm2d {name}"), v.len(), s.x.c);
    }
    let n = s.x.len();
    let b: Vec<wgpu::Buffer> = [x, mean, var, gamma, dgamma, dbeta, dy]
        .iter()
        .map(|v| ctx.upload("batchnorm2d input", v))
        .collect::<Result<_, _>>()?;
    let dxb = garbage(ctx, "batchnorm2d dx", n)?;
    let mut enc = ctx.encoder("batchnorm2d_bwd_input");
    batchnorm2d_bwd_input_record(ctx, &mut enc, s, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &dxb)?;
    let rb = ctx.readback(&mut enc, &dxb, n as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One channel, x = 1, 2, 3, 4: mean 2.5, biased var 1.25, unbiased 5/3 (torch.var).
    #[test]
    fn hand_computed_example() {
        let s = BatchNorm2dShape::new(Shape4::new(2, 1, 1, 2));
        let x = [1.0, 2.0, 3.0, 4.0];
        let (mut mean, mut var) = ([0.0], [0.0]);
        batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
        assert_eq!((mean[0], var[0]), (2.5, 1.25));
        let mut y = [0.0; 4];
        batchnorm2d_fwd_cpu(&s, &x, &mean, &var, &[2.0], &[0.5], &mut y);
        let inv = 1.0 / (1.25f64 + 1e-5).sqrt();
        for (i, &y) in y.iter().enumerate() {
            let expect = (x[i] as f64 - 2.5) * inv * 2.0 + 0.5;
            assert!((y as f64 - expect).abs() < 1e-6, "y[{i}] = {y}, expected {expect}");
        }
        let (mut rm, mut rv) = ([0.0], [1.0]);
        batchnorm2d_running_cpu(&s, 0.1, &mean, &var, &mut rm, &mut rv);
        assert!((rm[0] - 0.25).abs() < 1e-7, "running mean {}", rm[0]);
        assert!((rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6, "running var {}", rv[0]);
    }

    /// Two channels and two images: the channel of a plane is `plane % C`.
    #[test]
    fn channels_are_separate() {
        let s = BatchNorm2dShape::new(Shape4::new(2, 2, 1, 2));
        // n0: c0 = [0, 2], c1 = [10, 10]; n1: c0 = [4, 6], c1 = [10, 30]
        let x = [0.0, 2.0, 10.0, 10.0, 4.0, 6.0, 10.0, 30.0];
        let (mut mean, mut var) = ([0.0; 2], [0.0; 2]);
        batchnorm2d_stats_cpu(&s, &x, &mut mean, &mut var);
        assert_eq!(mean, [3.0, 15.0]);
        assert_eq!(var, [5.0, 75.0]);
    }

    #[test]
    #[should_panic(expected = "more than one value per channel")]
    fn running_needs_two_values() {
        let s = BatchNorm2dShape::new(Shape4::new(1, 1, 1, 1));
        batchnorm2d_running_cpu(&s, 0.1, &[0.0], &[0.0], &mut [0.0], &mut [0.0]);
    }
}
