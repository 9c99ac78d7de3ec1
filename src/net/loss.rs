//! Loss heads: softmax with cross-entropy over grid cells (the seed network's head), mean squared
//! error (the regression head of the MSU multi-electron notebook) and the permutation-invariant MSE of a
//! two-electron localizer. Twins of the kernels `net/softmax_xent`, `net/mse` and
//! `net/pair_mse`.
//!
//! Both use PyTorch's default `reduction="mean"`: the loss is the mean over the batch (cross-entropy)
//! or over all `n * d` elements (MSE), and the gradient written is that of the mean. The kernels also
//! write one loss value per sample, so that the host can sum a whole epoch after one readback.

use bytemuck::{Pod, Zeroable};

use super::check_len;
use crate::gpu::{GpuContext, GpuError};
use crate::shaders;

/// Mirrors `SoftmaxXentParams` in shaders/net/softmax_xent.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SoftmaxXentParams {
    /// Samples.
    pub n: u32,
    /// Classes (grid cells).
    pub k: u32,
    /// Divisor of the gradient: the number of samples the loss is averaged over (usually `n`).
    pub mean_over: u32,
    /// 1: write `dlogits`; 0: forward only (evaluation), `dlogits` is not touched.
    pub write_grad: u32,
}
const _: () = assert!(std::mem::size_of::<SoftmaxXentParams>() == 16);

/// Threads per sample in the kernel (one workgroup per sample).
pub const SOFTMAX_WG: u32 = 256;

/// Softmax of each row of `logits` (`[n, k]`) into `probs`, computed stably (max subtracted).
pub fn softmax_cpu(n: usize, k: usize, logits: &[f32], probs: &mut [f32]) {
    check_len("softmax logits", logits.len(), n * k);
    check_len("softmax probs", probs.len(), n * k);
    for (row, out) in logits.chunks(k.max(1)).zip(probs.chunks_mut(k.max(1))) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f32;
        for (o, &v) in out.iter_mut().zip(row) {
            *o = (v - m).exp();
            s += *o;
        }
        for o in out.iter_mut() {
            *o /= s;
        }
    }
}

/// CPU twin of `net/softmax_xent`: per sample `loss[i] = logsumexp(logits[i]) - logits[i][label[i]]`,
/// `correct[i] = 1` if the arg-max (first on ties) is the label, else 0, and (with `write_grad`)
/// `dlogits[i][j] = (softmax(logits[i])[j] - [j == label[i]]) / mean_over`.
/// Returns the mean loss over the batch.
pub fn softmax_xent_cpu(
    p: &SoftmaxXentParams,
    logits: &[f32],
    labels: &[u32],
    loss: &mut [f32],
    correct: &mut [f32],
    dlogits: &mut [f32],
) -> f64 {
    let (n, k) = (p.n as usize, p.k as usize);
    check_len("softmax_xent logits", logits.len(), n * k);
    check_len("softmax_xent labels", labels.len(), n);
    check_len("softmax_xent loss", loss.len(), n);
    check_len("softmax_xent correct", correct.len(), n);
    if p.write_grad != 0 {
        check_len("softmax_xent dlogits", dlogits.len(), n * k);
    }
    let inv = 1.0 / p.mean_over.max(1) as f32;
    let mut total = 0.0f64;
    for i in 0..n {
        let row = &logits[i * k..(i + 1) * k];
        let label = labels[i] as usize;
        assert!(label < k, "softmax_xent: label {label} >= {k} classes");
        let (mut m, mut arg) = (f32::NEG_INFINITY, 0usize);
        for (j, &v) in row.iter().enumerate() {
            if v > m {
                m = v;
                arg = j;
            }
        }
        let s: f32 = row.iter().map(|&v| (v - m).exp()).sum();
        let lse = m + s.ln();
        loss[i] = lse - row[label];
        correct[i] = if arg == label { 1.0 } else { 0.0 };
        total += loss[i] as f64;
        if p.write_grad != 0 {
            for j in 0..k {
                let prob = (row[j] - m).exp() / s;
                let onehot = if j == label { 1.0 } else { 0.0 };
                dlogits[i * k + j] = (prob - onehot) * inv;
            }
        }
    }
    total / n.max(1) as f64
}

/// Records `net/softmax_xent` (one workgroup per sample). `labels` is a u32 buffer.
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &SoftmaxXentParams,
    logits: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    loss: &wgpu::Buffer,
    correct: &wgpu::Buffer,
    dlogits: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("softmax_xent_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_SOFTMAX_XENT,
        &[
            ("params", &u),
            ("logits", logits),
            ("labels", labels),
            ("loss", loss),
            ("correct", correct),
            ("dlogits", dlogits),
        ],
        p.n as u64 * SOFTMAX_WG as u64,
    )
}

/// Test wrapper: `(loss, correct, dlogits)`.
#[cfg(feature = "testing")]
pub fn softmax_xent_gpu(
    ctx: &GpuContext,
    p: &SoftmaxXentParams,
    logits: &[f32],
    labels: &[u32],
) -> crate::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (n, k) = (p.n as usize, p.k as usize);
    let lb = ctx.upload("logits", logits)?;
    let lab = ctx.upload("labels", labels)?;
    let loss = ctx.upload("loss", &vec![-12345.0f32; n])?;
    let corr = ctx.upload("correct", &vec![-12345.0f32; n])?;
    let dl = ctx.upload("dlogits", &vec![-12345.0f32; n * k])?;
    let mut enc = ctx.encoder("softmax_xent");
    softmax_xent_record(ctx, &mut enc, p, &lb, &lab, &loss, &corr, &dl)?;
    let r1 = ctx.readback(&mut enc, &loss, (n * 4) as u64);
    let r2 = ctx.readback(&mut enc, &corr, (n * 4) as u64);
    let r3 = ctx.readback(&mut enc, &dl, (n * k * 4) as u64);
    ctx.submit_and_wait(enc)?;
    Ok((r1.read(ctx)?, r2.read(ctx)?, r3.read(ctx)?))
}

/// Mirrors `MseParams` in shaders/net/mse.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MseParams {
    pub n: u32,
    /// Outputs per sample.
    pub d: u32,
    /// Divisor of the gradient: the number of elements averaged over (usually `n * d`).
    pub mean_over: u32,
    pub write_grad: u32,
}
const _: () = assert!(std::mem::size_of::<MseParams>() == 16);

/// CPU twin of `net/mse`: `loss[i] = mean_j (pred[i][j] - target[i][j])^2` and (with `write_grad`)
/// `dpred[i][j] = 2 (pred - target) / mean_over`. Returns the mean over all elements.
pub fn mse_cpu(p: &MseParams, pred: &[f32], target: &[f32], loss: &mut [f32], dpred: &mut [f32]) -> f64 {
    let (n, d) = (p.n as usize, p.d as usize);
    check_len("mse pred", pred.len(), n * d);
    check_len("mse target", target.len(), n * d);
    check_len("mse loss", loss.len(), n);
    if p.write_grad != 0 {
        check_len("mse dpred", dpred.len(), n * d);
    }
    let inv = 2.0 / p.mean_over.max(1) as f32;
    let mut total = 0.0f64;
    for i in 0..n {
        let mut s = 0.0f32;
        for j in 0..d {
            let e = pred[i * d + j] - target[i * d + j];
            s += e * e;
            if p.write_grad != 0 {
                dpred[i * d + j] = e * inv;
            }
        }
        loss[i] = s / d as f32;
        total += loss[i] as f64;
    }
    total / n.max(1) as f64
}

/// Records `net/mse` (one thread per sample).
pub fn mse_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &MseParams,
    pred: &wgpu::Buffer,
    target: &wgpu::Buffer,
    loss: &wgpu::Buffer,
    dpred: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("mse_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_MSE,
        &[("params", &u), ("pred", pred), ("target_", target), ("loss", loss), ("dpred", dpred)],
        p.n as u64,
    )
}

/// Test wrapper: `(loss, dpred)`.
#[cfg(feature = "testing")]
pub fn mse_gpu(ctx: &GpuContext, p: &MseParams, pred: &[f32], target: &[f32]) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    let (n, d) = (p.n as usize, p.d as usize);
    let pb = ctx.upload("pred", pred)?;
    let tb = ctx.upload("target", target)?;
    let loss = ctx.upload("loss", &vec![-12345.0f32; n])?;
    let dp = ctx.upload("dpred", &vec![-12345.0f32; n * d])?;
    let mut enc = ctx.encoder("mse");
    mse_record(ctx, &mut enc, p, &pb, &tb, &loss, &dp)?;
    let r1 = ctx.readback(&mut enc, &loss, (n * 4) as u64);
    let r2 = ctx.readback(&mut enc, &dp, (n * d * 4) as u64);
    ctx.submit_and_wait(enc)?;
    Ok((r1.read(ctx)?, r2.read(ctx)?))
}

/// Mirrors `PairMseParams` in shaders/net/pair_mse.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PairMseParams {
    /// Samples (each with 4 predictions `(x1, y1, x2, y2)` and 4 targets: two points, any order).
    pub n: u32,
    /// Divisor of the gradient: the number of elements averaged over (usually `4 n`, which makes
    /// `dpred` the gradient of the batch mean of `loss`).
    pub mean_over: u32,
    /// 1: write `dpred`; 0: forward only (evaluation), `dpred` is not touched.
    pub write_grad: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<PairMseParams>() == 16);

/// CPU twin of `net/pair_mse`, the permutation-invariant MSE of a two-electron localizer: with
/// `s = sum_j (pred[i][j] - target[i][j])^2` and `s_swapped` the same against the target with its
/// two points swapped, `(t2x, t2y, t1x, t1y)` (each summed over j = 0..3 in order, in f32),
/// `loss[i] = min(s, s_swapped) / 4`, the straight assignment on ties (`s <= s_swapped`), and (with
/// `write_grad`) `dpred[i][j] = 2 (pred[i][j] - chosen target[i][j]) / mean_over`. Returns the mean
/// loss over the batch (f64).
pub fn pair_mse_cpu(p: &PairMseParams, pred: &[f32], target: &[f32], loss: &mut [f32], dpred: &mut [f32]) -> f64 {
    let n = p.n as usize;
    check_len("pair_mse pred", pred.len(), 4 * n);
    check_len("pair_mse target", target.len(), 4 * n);
    check_len("pair_mse loss", loss.len(), n);
    if p.write_grad != 0 {
        check_len("pair_mse dpred", dpred.len(), 4 * n);
    }
    let inv = 2.0 / p.mean_over.max(1) as f32;
    let mut total = 0.0f64;
    for i in 0..n {
        let pr = &pred[4 * i..4 * i + 4];
        let t = &target[4 * i..4 * i + 4];
        let ts = [t[2], t[3], t[0], t[1]];
        let e: [f32; 4] = std::array::from_fn(|j| pr[j] - t[j]);
        let es: [f32; 4] = std::array::from_fn(|j| pr[j] - ts[j]);
        let (mut s, mut ss) = (0.0f32, 0.0f32);
        for j in 0..4 {
            s += e[j] * e[j];
            ss += es[j] * es[j];
        }
        let straight = s <= ss;
        loss[i] = (if straight { s } else { ss }) / 4.0;
        total += loss[i] as f64;
        if p.write_grad != 0 {
            let ec = if straight { e } else { es };
            for j in 0..4 {
                dpred[4 * i + j] = ec[j] * inv;
            }
        }
    }
    total / n.max(1) as f64
}

/// Records `net/pair_mse` (one thread per sample).
pub fn pair_mse_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &PairMseParams,
    pred: &wgpu::Buffer,
    target: &wgpu::Buffer,
    loss: &wgpu::Buffer,
    dpred: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("pair_mse_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_PAIR_MSE,
        &[("params", &u), ("pred", pred), ("target_", target), ("loss", loss), ("dpred", dpred)],
        p.n as u64,
    )
}

/// Test wrapper: `(loss, dpred)`; outputs pre-filled with -12345 (so `dpred` keeps it when
/// `write_grad` is 0).
#[cfg(feature = "testing")]
pub fn pair_mse_gpu(
    ctx: &GpuContext,
    p: &PairMseParams,
    pred: &[f32],
    target: &[f32],
) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    let n = p.n as usize;
    check_len("pair_mse pred", pred.len(), 4 * n);
    check_len("pair_mse target", target.len(), 4 * n);
    let pb = ctx.upload("pred", pred)?;
    let tb = ctx.upload("target", target)?;
    let loss = ctx.upload("loss", &vec![-12345.0f32; n])?;
    let dp = ctx.upload("dpred", &vec![-12345.0f32; 4 * n])?;
    let mut enc = ctx.encoder("pair_mse");
    pair_mse_record(ctx, &mut enc, p, &pb, &tb, &loss, &dp)?;
    let r1 = ctx.readback(&mut enc, &loss, (n * 4) as u64);
    let r2 = ctx.readback(&mut enc, &dp, (n * 16) as u64);
    ctx.submit_and_wait(enc)?;
    Ok((r1.read(ctx)?, r2.read(ctx)?))
}
