//! The fused CPU path of small perceptrons (`Flatten`, then `Linear` layers with `ReLU` between
//! them, and a grid head, as the `tiny` preset): each task takes [`MLP_ROWS`] crops through every
//! layer and the decoding in buffers of its own, kept between calls, so no activation of the
//! whole batch is ever written. Every layer is the same matrix product as the layer-by-layer path
//! (`linear_fwd_fast`: bias, then `X W^T` accumulated onto it) and the ReLU the same expression,
//! and the decoding is [`crate::net::decode::GridDecoder`]'s, so the results are bitwise those of
//! [`Model::eval_outputs_cpu`] followed by [`crate::net::decode::decode`] (tested).

use rayon::prelude::*;

use super::{LayerSpec, Model};
use crate::net::cpu_fast::gemm;
use crate::net::decode::{Decoded, GridDecoder};

/// Crops per task.
pub const MLP_ROWS: usize = 256;

/// One linear layer of a perceptron: its sizes, tensors and whether a ReLU follows.
#[derive(Clone, Copy, Debug)]
struct Dense {
    in_f: usize,
    out_f: usize,
    weight: usize,
    bias: usize,
    relu: bool,
}

impl Model {
    /// The linear layers when the model is a perceptron with a grid head (`Flatten`, `Linear`,
    /// then `ReLU` and `Linear` pairs); None otherwise.
    fn dense_layers(&self) -> Option<Vec<Dense>> {
        let layers = &self.cfg.layers;
        if !matches!(layers.first(), Some(LayerSpec::Flatten)) || GridDecoder::new(&self.cfg).is_none() {
            return None;
        }
        let mut out: Vec<Dense> = Vec::new();
        let mut in_f = self.cfg.input_px * self.cfg.input_px;
        for (i, l) in layers.iter().enumerate().skip(1) {
            match *l {
                LayerSpec::Linear { out_features } if out.last().is_none_or(|d| d.relu) => {
                    let lt = self.layer_tensors[i];
                    out.push(Dense { in_f, out_f: out_features, weight: lt.weight?, bias: lt.bias?, relu: false });
                    in_f = out_features;
                }
                LayerSpec::Relu if out.last().is_some_and(|d| !d.relu) => out.last_mut()?.relu = true,
                _ => return None,
            }
        }
        (!out.is_empty() && !out.last()?.relu).then_some(out)
    }

    /// For the one-dispatch GPU kernel `net/mlp_count`: the widths (`side^2`, then each linear
    /// layer's outputs) and the weights packed layer by layer (`W [out, in]`, then the bias); None
    /// unless [`Self::is_grid_perceptron`].
    pub fn perceptron_packed(&self) -> Option<(Vec<usize>, Vec<f32>)> {
        let dense = self.dense_layers()?;
        let mut dims = vec![dense[0].in_f];
        let mut packed = Vec::new();
        for d in &dense {
            dims.push(d.out_f);
            packed.extend_from_slice(self.t(Some(d.weight)));
            packed.extend_from_slice(self.t(Some(d.bias)));
        }
        Some((dims, packed))
    }

    /// True when [`Self::decode_mlp_cpu`] applies.
    pub fn is_grid_perceptron(&self) -> bool {
        self.dense_layers().is_some()
    }

    /// Forward pass (evaluation mode, f32) and grid decoding of `n` crops (`input_px` squared
    /// values each, already scaled by `input_scale`), fused per `MLP_ROWS` (256) crops; None unless
    /// [`Self::is_grid_perceptron`].
    pub fn decode_mlp_cpu(&self, x: &[f32], n: usize) -> Option<Vec<Decoded>> {
        let dense = self.dense_layers()?;
        let dec = GridDecoder::new(&self.cfg)?;
        let px = self.cfg.input_px * self.cfg.input_px;
        crate::net::check_len("model input", x.len(), n * px);
        let widest = dense.iter().map(|d| d.out_f).max()?;
        let mut out = vec![Decoded::default(); n];
        out.par_chunks_mut(MLP_ROWS).zip(x.par_chunks(MLP_ROWS * px)).for_each_init(
            || (vec![0.0f32; MLP_ROWS * widest], vec![0.0f32; MLP_ROWS * widest], dec.scratch()),
            |(a, b, sc), (o, xb)| {
                let rows = o.len();
                // the current activation is in `a` (after the first layer), the next goes to `b`
                for (li, d) in dense.iter().enumerate() {
                    let input: &[f32] = if li == 0 { xb } else { &a[..rows * d.in_f] };
                    let y = &mut b[..rows * d.out_f];
                    for yr in y.chunks_exact_mut(d.out_f) {
                        yr.copy_from_slice(self.t(Some(d.bias)));
                    }
                    // Y[rows, out] = b + X[rows, in] W^T[in, out], as linear_fwd_fast
                    let w = self.t(Some(d.weight));
                    gemm((rows, d.in_f, d.out_f), input, (d.in_f, 1), w, (1, d.in_f), 1.0, y, (d.out_f, 1));
                    if d.relu {
                        for v in y.iter_mut() {
                            *v = if *v > 0.0 { *v } else { 0.0 };
                        }
                    }
                    std::mem::swap(a, b);
                }
                let input = &a[..rows * dec.k];
                for (r, logits) in o.iter_mut().zip(input.chunks_exact(dec.k)) {
                    *r = dec.row(logits, sc);
                }
            },
        );
        Some(out)
    }
}
