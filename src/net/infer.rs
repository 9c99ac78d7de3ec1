//! Inference for counting: network outputs for crops around found centres, decoded to positions
//! in frame coordinates with the distribution's spread (`sigma_px`).

use super::decode::Decoded;
use super::model::Model;
use super::precision::NetPrecision;
use crate::Result;

/// The network's estimate for one found electron.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NetEstimate {
    /// Position in the frame, pixels (x = column; pixel (r, c) covers [c, c+1) x [r, r+1)).
    pub xy: [f32; 2],
    pub sigma_px: f32,
    pub p_max: f32,
}

/// Turns decoded crop outputs into frame positions: the crop of candidate `(r, c)` is centred on
/// pixel (r, c), whose centre is (c + 0.5, r + 0.5).
pub fn to_frame(dec: &Decoded, r: u32, c: u32) -> NetEstimate {
    NetEstimate {
        xy: [c as f32 + 0.5 + dec.mean_xy[0], r as f32 + 0.5 + dec.mean_xy[1]],
        sigma_px: dec.sigma_px,
        p_max: dec.p_max,
    }
}

/// The raw outputs `[n, head_outputs]` of the model (evaluation mode) on `n` crops on the CPU, in
/// chunks of `batch`.
pub fn outputs_cpu(model: &Model, crops: &[f32], n: usize, batch: usize) -> Result<Vec<f32>> {
    outputs_cpu_with(model, crops, n, batch, NetPrecision::F32)
}

/// [`outputs_cpu`] with the activations between layers stored as `precision` says (f16: rounded
/// as the GPU's f16 path stores them, to reproduce it; no faster on the CPU).
pub fn outputs_cpu_with(
    model: &Model,
    crops: &[f32],
    n: usize,
    batch: usize,
    precision: NetPrecision,
) -> Result<Vec<f32>> {
    let plane = model.cfg.input_px * model.cfg.input_px;
    let mut out = Vec::with_capacity(n * model.cfg.head_outputs());
    for start in (0..n).step_by(batch.max(1)) {
        let k = batch.max(1).min(n - start);
        out.extend(model.eval_outputs_cpu(&crops[start * plane..(start + k) * plane], k, precision)?);
    }
    Ok(out)
}
