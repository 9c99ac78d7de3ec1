//! Optimizers: Adam and AdamW, each with the amsgrad option, as PyTorch implements them
//! (`torch.optim.Adam` / `AdamW`, single-tensor path), and the learning-rate schedules. Twin of the
//! kernel `net/adam`.
//!
//! One step for a parameter `p` with gradient `g` (t = step number, from 1):
//! ```text
//! Adam:  g <- g + wd * p                     AdamW:  p <- p * (1 - lr * wd)
//! m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2;   vmax <- max(vmax, v)   (amsgrad)
//! p <- p - lr / (1 - b1^t) * m / (sqrt(vmax or v) / sqrt(1 - b2^t) + eps)
//! ```

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::check_len;
use crate::gpu::{GpuContext, GpuError};
use crate::shaders;

/// Optimizer settings (the seed: Adam, lr 1e-3, betas 0.9/0.999, eps 1e-6, weight decay 0.01, amsgrad).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW (decoupled weight decay) instead of Adam's L2 term.
    pub decoupled: bool,
    pub amsgrad: bool,
}

impl AdamConfig {
    /// The EMSim notes' optimizer.
    pub fn seed() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-6, weight_decay: 0.01, decoupled: false, amsgrad: true }
    }

    /// The kernel parameters for step `t` (from 1) at learning rate `lr`.
    pub fn params(&self, n: usize, t: u64, lr: f32) -> AdamParams {
        let bc1 = 1.0 - (self.beta1 as f64).powi(t as i32);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t as i32);
        AdamParams {
            n: n as u32,
            flags: (self.decoupled as u32) | ((self.amsgrad as u32) << 1),
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            step_size: (lr as f64 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        }
    }
}

/// Mirrors `AdamParams` in shaders/net/adam.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AdamParams {
    pub n: u32,
    /// Bit 0: decoupled (AdamW); bit 1: amsgrad.
    pub flags: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `lr / (1 - beta1^t)`, computed on the host in f64.
    pub step_size: f32,
    /// `1 / sqrt(1 - beta2^t)`.
    pub inv_sqrt_bc2: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<AdamParams>() == 48);

/// CPU twin of `net/adam`: one step on every element, in place. `vmax` is used only with amsgrad.
pub fn adam_cpu(p: &AdamParams, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], vmax: &mut [f32]) {
    let n = p.n as usize;
    check_len("adam param", param.len(), n);
    check_len("adam grad", grad.len(), n);
    check_len("adam m", m.len(), n);
    check_len("adam v", v.len(), n);
    check_len("adam vmax", vmax.len(), n);
    let decoupled = p.flags & 1 != 0;
    let amsgrad = p.flags & 2 != 0;
    param.par_iter_mut().zip(grad).zip(m).zip(v).zip(vmax).for_each(|((((pi, &gi), mi), vi), vm)| {
        let mut g = gi;
        let mut w = *pi;
        if decoupled {
            w *= 1.0 - p.lr * p.weight_decay;
        } else {
            g += p.weight_decay * w;
        }
        *mi = p.beta1 * *mi + (1.0 - p.beta1) * g;
        *vi = p.beta2 * *vi + (1.0 - p.beta2) * g * g;
        let second = if amsgrad {
            *vm = vm.max(*vi);
            *vm
        } else {
            *vi
        };
        let denom = second.sqrt() * p.inv_sqrt_bc2 + p.eps;
        *pi = w - p.step_size * *mi / denom;
    });
}

/// Records `net/adam` over one parameter tensor.
#[allow(clippy::too_many_arguments)]
pub fn adam_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &AdamParams,
    param: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    m: &wgpu::Buffer,
    v: &wgpu::Buffer,
    vmax: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let u = ctx.uniform("adam_params", p);
    ctx.dispatch(
        enc,
        &shaders::NET_ADAM,
        &[("params", &u), ("param", param), ("grad", grad), ("m", m), ("v", v), ("vmax", vmax)],
        p.n as u64,
    )
}

/// Test wrapper: runs one step, returns `(param, m, v, vmax)`.
#[cfg(feature = "testing")]
pub fn adam_gpu(
    ctx: &GpuContext,
    p: &AdamParams,
    param: &[f32],
    grad: &[f32],
    m: &[f32],
    v: &[f32],
    vmax: &[f32],
) -> crate::Result<[Vec<f32>; 4]> {
    let n = p.n as u64 * 4;
    let bufs = [
        ctx.upload("param", param)?,
        ctx.upload("grad", grad)?,
        ctx.upload("m", m)?,
        ctx.upload("v", v)?,
        ctx.upload("vmax", vmax)?,
    ];
    let mut enc = ctx.encoder("adam");
    adam_record(ctx, &mut enc, p, &bufs[0], &bufs[1], &bufs[2], &bufs[3], &bufs[4])?;
    let r: Vec<_> = [0, 2, 3, 4].iter().map(|&i| ctx.readback(&mut enc, &bufs[i], n)).collect();
    ctx.submit_and_wait(enc)?;
    let mut out = r.into_iter().map(|r| r.read(ctx));
    Ok([out.next().unwrap()?, out.next().unwrap()?, out.next().unwrap()?, out.next().unwrap()?])
}

/// Learning-rate schedule over epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr * gamma^(number of milestones <= epoch)` (the seed: 1e-3, then 1e-4).
    Steps {
        milestones: Vec<u32>,
        gamma: f32,
    },
    /// Cosine from `lr` to `lr * min_factor` over all epochs.
    Cosine {
        min_factor: f32,
    },
    Constant,
}

impl LrSchedule {
    /// Learning rate for 0-based `epoch` of `epochs`.
    pub fn lr(&self, base: f32, epoch: u32, epochs: u32) -> f32 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::Steps { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= epoch).count() as i32)
            }
            LrSchedule::Cosine { min_factor } => {
                let t = if epochs <= 1 { 0.0 } else { epoch as f32 / (epochs - 1) as f32 };
                let lo = base * min_factor;
                lo + 0.5 * (base - lo) * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }

    /// Parses `--lr-schedule`: `constant`, `cosine`, `cosine:0.01`, `steps:10,20:0.1`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        let bad = || {
            crate::Error::invalid(
                "--lr-schedule",
                format!("'{s}': expected constant, cosine[:min_factor] or steps:E1,E2,...:gamma"),
            )
        };
        let mut parts = s.split(':');
        match parts.next() {
            Some("constant") if parts.next().is_none() => Ok(LrSchedule::Constant),
            Some("cosine") => {
                let min_factor = match parts.next() {
                    Some(f) => f.parse().map_err(|_| bad())?,
                    None => 0.0,
                };
                Ok(LrSchedule::Cosine { min_factor })
            }
            Some("steps") => {
                let ms = parts.next().ok_or_else(bad)?;
                let milestones =
                    ms.split(',').map(|m| m.trim().parse::<u32>()).collect::<Result<Vec<_>, _>>().map_err(|_| bad())?;
                let gamma = parts.next().map(|g| g.parse::<f32>()).unwrap_or(Ok(0.1)).map_err(|_| bad())?;
                if parts.next().is_some() {
                    return Err(bad());
                }
                Ok(LrSchedule::Steps { milestones, gamma })
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let s = LrSchedule::parse("steps:2,4:0.1").unwrap();
        assert_eq!(s.lr(1e-3, 0, 6), 1e-3);
        assert!((s.lr(1e-3, 2, 6) - 1e-4).abs() < 1e-9);
        assert!((s.lr(1e-3, 5, 6) - 1e-5).abs() < 1e-10);
        let c = LrSchedule::parse("cosine").unwrap();
        assert_eq!(c.lr(1.0, 0, 11), 1.0);
        assert!((c.lr(1.0, 5, 11) - 0.5).abs() < 1e-6);
        assert!(c.lr(1.0, 10, 11).abs() < 1e-6);
        assert!(LrSchedule::parse("linear").is_err());
        assert!(LrSchedule::parse("steps:a").is_err());
    }

    /// Hand-computed first step of Adam (amsgrad, L2) on one element, as PyTorch's formula gives.
    #[test]
    fn first_step_matches_formula() {
        let cfg = AdamConfig::seed();
        let p = cfg.params(1, 1, cfg.lr);
        let (mut w, mut m, mut v, mut vm) = ([0.5f32], [0.0f32], [0.0f32], [0.0f32]);
        adam_cpu(&p, &mut w, &[0.2], &mut m, &mut v, &mut vm);
        let g = 0.2f64 + 0.01 * 0.5;
        let (m1, v1) = (0.1 * g, 0.001 * g * g);
        let want = 0.5 - 1e-3 / 0.1 * m1 / ((v1).sqrt() / (0.001f64).sqrt() + 1e-6);
        assert!((w[0] as f64 - want).abs() < 1e-6, "{} vs {want}", w[0]);
        assert_eq!(vm[0], v[0]);
    }
}
