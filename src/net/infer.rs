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

/// What `emsim infer` gives for `n` crops (electrons, `input_px` squared each, row-major): per
/// crop, a localizer's `(x_px, y_px, sigma_px, p_max)` in crop pixels, a classifier's class
/// probabilities, or a pair localizer's `(x1, y1, x2, y2)`; returned with the number of values
/// per crop and the raw outputs (`head_outputs()` per crop). The CPU path, batch norm folded.
pub fn crop_estimates(model: &Model, crops_e: &[f32], n: usize) -> Result<(Vec<f32>, usize, Vec<f32>)> {
    let side = model.cfg.input_px;
    if crops_e.len() != n * side * side {
        return Err(crate::Error::invalid(
            "crops",
            format!("{} values for {n} crops; the model '{}' takes {side}x{side}", crops_e.len(), model.cfg.name),
        ));
    }
    let x: Vec<f32> = crops_e.iter().map(|&v| v * model.cfg.input_scale).collect();
    let folded = model.fold_batchnorm()?;
    let act = folded.clone().forward_cpu(&x, n, false, 0, 0)?;
    let raw = act.last().to_vec();
    let (values, k) = match folded.cfg.head {
        super::model::Head::Classes { n: k } => (super::decode::class_probs(&folded.cfg, &raw, n), k),
        super::model::Head::Pair => (raw.clone(), 4),
        _ => {
            let dec = super::decode::decode(&folded.cfg, &raw, n);
            (dec.iter().flat_map(|d| [d.mean_xy[0], d.mean_xy[1], d.sigma_px, d.p_max]).collect(), 4)
        }
    };
    Ok((values, k, raw))
}
