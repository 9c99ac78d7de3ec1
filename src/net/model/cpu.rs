//! The CPU forward and backward passes of a [`Model`], built from the fast layers of
//! [`crate::net::cpu_fast`].

use rayon::prelude::*;

use super::*;
// The CPU path runs the fast layers of `cpu_fast` (im2col + SGEMM convolutions and linear layers,
// one-pass batch statistics, fused backward of `[ReLU ->] BatchNorm2d -> MaxPool2d`), each tested
// against its plain twin in tests/net_cpu_fast.rs; the twins are the GPU kernels' references.
use crate::net::cpu_fast::{
    BatchNorm2dEval, EVAL_CHUNK_ELEMS, batchnorm2d_bwd_input_fast, batchnorm2d_bwd_reduce_fast, batchnorm2d_fwd_fast,
    batchnorm2d_maxpool2d_fwd_fast, batchnorm2d_stats_fast, conv2d_bwd_input_fast, conv2d_bwd_weight_fast,
    conv2d_fwd_fast, dropout_bwd_fast, dropout_fwd_fast, linear_bwd_input_fast, linear_bwd_weight_fast,
    linear_fwd_fast, maxpool2d_batchnorm2d_bwd_fast, maxpool2d_bwd_fast, maxpool2d_fwd_fast, maxpool2d_fwd_values_fast,
    relu_batchnorm2d_maxpool2d_eval_fast, relu_batchnorm2d_stats_fast, relu_bwd_fast, relu_fwd_fast, zeroed,
};

impl Model {
    /// Forward pass on the CPU, with the fast layers of [`crate::net::cpu_fast`] (tested against the
    /// twins). `train`: batch statistics (and running-average update), dropout with the mask of
    /// `(seed, step)`; returns every layer's output and what backward needs. Else (evaluation
    /// mode): running statistics and no dropout; the batch runs through the whole network in
    /// chunks of a few samples (whose activations stay in the cache), and only the network's output
    /// is kept: `outs` has one entry per layer, all empty but the last, and `aux` is all
    /// [`Aux::None`].
    pub fn forward_cpu(&mut self, x: &[f32], n: usize, train: bool, seed: u64, step: u64) -> Result<Activations> {
        let plan = self.cfg.plan(n)?;
        crate::net::check_len("model input", x.len(), n * self.cfg.input_px * self.cfg.input_px);
        if !train {
            let mut outs: Vec<Vec<f32>> = plan.iter().map(|_| Vec::new()).collect();
            if let Some(last) = outs.last_mut() {
                *last = self.eval_cpu(x, n, &plan, &vec![false; plan.len()]);
            }
            return Ok(Activations { n, outs, aux: vec![Aux::None; plan.len()] });
        }
        let mut outs: Vec<Vec<f32>> = Vec::with_capacity(plan.len());
        let mut aux: Vec<Aux> = Vec::with_capacity(plan.len());
        // Batch statistics of the next layer (a batch norm) computed with a ReLU's output.
        let mut stats_ahead: Option<(Vec<f32>, Vec<f32>)> = None;
        let mut i = 0;
        while i < plan.len() {
            let p = plan[i];
            let input: &[f32] = if i == 0 { x } else { &outs[i - 1] };
            let mut y = zeroed::<f32>(p.output.len());
            let lt = self.layer_tensors[i];
            let mut a = Aux::None;
            // The output of layer i + 1 when computed with layer i's (a max-pool after a batch norm).
            let mut pooled = None;
            match self.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    conv2d_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), &mut y);
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n, in_f: p.input.c, out_f: out_features };
                    linear_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), &mut y);
                }
                LayerSpec::Relu => {
                    if let Some(&LayerSpec::BatchNorm2d { eps, .. }) = self.cfg.layers.get(i + 1) {
                        // ReLU -> BatchNorm2d: the statistics in the same pass.
                        let s = BatchNorm2dShape { x: p.output, eps };
                        let (mut mean, mut var) = (vec![0.0; s.x.c], vec![0.0; s.x.c]);
                        relu_batchnorm2d_stats_fast(&s, input, &mut y, &mut mean, &mut var);
                        stats_ahead = Some((mean, var));
                    } else {
                        relu_fwd_fast(input, &mut y);
                    }
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                    let mut idx = zeroed::<u32>(p.output.len());
                    maxpool2d_fwd_fast(&s, input, &mut y, &mut idx);
                    a = Aux::Idx(idx);
                }
                LayerSpec::BatchNorm2d { eps, momentum } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let (mean, var) = stats_ahead.take().unwrap_or_else(|| {
                        let (mut mean, mut var) = (vec![0.0; s.x.c], vec![0.0; s.x.c]);
                        batchnorm2d_stats_fast(&s, input, &mut mean, &mut var);
                        (mean, var)
                    });
                    let (g, b) = (self.t(lt.weight), self.t(lt.bias));
                    if let Some(&LayerSpec::MaxPool2d { kernel, stride }) = self.cfg.layers.get(i + 1) {
                        // BatchNorm2d -> MaxPool2d: the pooling in the same pass.
                        let pool = MaxPool2dShape { input: p.output, k: kernel, stride: stride.unwrap_or(kernel) };
                        let q = plan[i + 1].output.len();
                        let (mut yp, mut idx) = (zeroed::<f32>(q), zeroed::<u32>(q));
                        batchnorm2d_maxpool2d_fwd_fast(&s, &pool, input, &mean, &var, g, b, &mut y, &mut yp, &mut idx);
                        pooled = Some((yp, idx));
                    } else {
                        batchnorm2d_fwd_fast(&s, input, &mean, &var, g, b, &mut y);
                    }
                    let (rm, rv) = (lt.running_mean.unwrap(), lt.running_var.unwrap());
                    let mut run_mean = std::mem::take(&mut self.tensors[rm].data);
                    let mut run_var = std::mem::take(&mut self.tensors[rv].data);
                    batchnorm2d_running_cpu(&s, momentum, &mean, &var, &mut run_mean, &mut run_var);
                    self.tensors[rm].data = run_mean;
                    self.tensors[rv].data = run_var;
                    a = Aux::Stats { mean, var };
                }
                LayerSpec::Dropout { p: prob } => {
                    dropout_fwd_fast(&DropoutCfg { n: y.len(), p: prob, seed, step, layer: i as u32 }, input, &mut y);
                }
                LayerSpec::Flatten => y.copy_from_slice(input),
            }
            outs.push(y);
            aux.push(a);
            i += 1;
            if let Some((yp, idx)) = pooled {
                outs.push(yp);
                aux.push(Aux::Idx(idx));
                i += 1;
            }
        }
        if self.cfg.layers.iter().any(|l| matches!(l, LayerSpec::BatchNorm2d { .. })) {
            self.batches_tracked += 1;
        }
        Ok(Activations { n, outs, aux })
    }

    /// The evaluation-mode output of `n` samples with the activations between layers stored as
    /// `precision` says: with f16, rounded to f16 wherever the GPU's f16 path stores f16
    /// ([`crate::net::precision`]), so this is the twin of [`crate::net::gpu_net::GpuNet::new_inference`].
    pub fn eval_outputs_cpu(&self, x: &[f32], n: usize, precision: NetPrecision) -> Result<Vec<f32>> {
        let plan = self.cfg.plan(n)?;
        crate::net::check_len("model input", x.len(), n * self.cfg.input_px * self.cfg.input_px);
        Ok(self.eval_cpu(x, n, &plan, &half_activations(&self.cfg.layers, precision == NetPrecision::F16)))
    }

    /// Evaluation-mode forward pass of `n` samples (`plan` non-empty): the batch is cut into
    /// chunks of at most [`EVAL_CHUNK_ELEMS`] values per layer output, and each chunk runs through
    /// the whole network in one task with two reused scratch buffers. Returns the last output.
    fn eval_cpu(&self, x: &[f32], n: usize, plan: &[LayerPlan], half: &[bool]) -> Vec<f32> {
        let per_sample = |s: Shape4| s.c * s.h * s.w;
        let (px, out_per) = (per_sample(plan[0].input), per_sample(plan[plan.len() - 1].output));
        let widest = plan.iter().map(|p| per_sample(p.output)).max().unwrap_or(1).max(1);
        let chunk = (EVAL_CHUNK_ELEMS / widest).clamp(1, n.max(1));
        let mut out = zeroed::<f32>(n * out_per);
        if out.is_empty() {
            return out;
        }
        out.par_chunks_mut(chunk * out_per).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |(a, b), (ci, o)| {
                let k = o.len() / out_per;
                self.eval_chunk(&x[ci * chunk * px..][..k * px], k, plan, half, (a, b), o);
            },
        );
        out
    }

    /// [`Self::eval_cpu`] of one chunk of `k` samples: `x` in, `out` the last layer's output;
    /// `a` holds the current activation, `b` receives the next one (then they swap).
    fn eval_chunk(
        &self,
        x: &[f32],
        k: usize,
        plan: &[LayerPlan],
        half: &[bool],
        (a, b): (&mut Vec<f32>, &mut Vec<f32>),
        out: &mut [f32],
    ) {
        fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            &mut v[..len]
        }
        let last = plan.len() - 1;
        // Length of the current activation in `a`; None: the current activation is `x`.
        let mut cur: Option<usize> = None;
        let mut i = 0;
        while i < plan.len() {
            let si = Shape4 { n: k, ..plan[i].input };
            let input: &[f32] = cur.map_or(x, |len| &a[..len]);
            let layer = &self.cfg.layers[i];
            if matches!(layer, LayerSpec::Flatten | LayerSpec::Dropout { .. }) {
                // The identity in evaluation mode.
                if i == last {
                    out.copy_from_slice(input);
                }
                i += 1;
                continue;
            }
            // `[ReLU ->] [BatchNorm2d ->] MaxPool2d` (at least two of them) runs as one step, pooled
            // first: layers i..=end.
            let relu = matches!(layer, LayerSpec::Relu);
            let j = i + relu as usize;
            let bn = matches!(self.cfg.layers.get(j), Some(LayerSpec::BatchNorm2d { .. }));
            let q = j + bn as usize;
            let fused = (relu || bn) && matches!(self.cfg.layers.get(q), Some(LayerSpec::MaxPool2d { .. }));
            let end = if fused { q } else { i };
            let so = Shape4 { n: k, ..plan[end].output };
            let y: &mut [f32] = if end == last { &mut *out } else { grow(b, so.len()) };
            let lt = self.layer_tensors[i];
            match *layer {
                _ if fused => {
                    let LayerSpec::MaxPool2d { kernel, stride } = self.cfg.layers[q] else { unreachable!() };
                    let pool = MaxPool2dShape { input: si, k: kernel, stride: stride.unwrap_or(kernel) };
                    let bn = match self.cfg.layers[j] {
                        LayerSpec::BatchNorm2d { eps, .. } if bn => {
                            let lt = self.layer_tensors[j];
                            Some(BatchNorm2dEval {
                                s: BatchNorm2dShape { x: si, eps },
                                mean: self.t(lt.running_mean),
                                var: self.t(lt.running_var),
                                gamma: self.t(lt.weight),
                                beta: self.t(lt.bias),
                            })
                        }
                        _ => None,
                    };
                    relu_batchnorm2d_maxpool2d_eval_fast(&pool, relu, bn, input, y);
                }
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(si, out_channels, kernel, kernel, padding, stride);
                    conv2d_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), y);
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n: k, in_f: si.c, out_f: out_features };
                    linear_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), y);
                }
                LayerSpec::Relu => relu_fwd_fast(input, y),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: si, k: kernel, stride: stride.unwrap_or(kernel) };
                    maxpool2d_fwd_values_fast(&s, input, y);
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: si, eps };
                    let (rm, rv) = (self.t(lt.running_mean), self.t(lt.running_var));
                    batchnorm2d_fwd_fast(&s, input, rm, rv, self.t(lt.weight), self.t(lt.bias), y);
                }
                LayerSpec::Flatten | LayerSpec::Dropout { .. } => unreachable!("skipped above"),
            }
            if half[end] {
                // What the GPU's f16 store keeps (the layers fused here commute with the rounding:
                // ReLU and max-pool select, and batch norm is monotone per channel).
                round_f16(y);
            }
            if end != last {
                std::mem::swap(a, b);
                cur = Some(so.len());
            }
            i = end + 1;
        }
    }

    /// Backward pass on the CPU (fast layers) from `dout` = dL/d(last output), after a
    /// training-mode forward pass. Returns the gradient of every trainable tensor (same order as
    /// `tensors`; empty for buffers). A `[ReLU ->] BatchNorm2d -> MaxPool2d` run of layers goes
    /// backward in one fused pass ([`maxpool2d_batchnorm2d_bwd_fast`]).
    pub fn backward_cpu(
        &self,
        x: &[f32],
        act: &Activations,
        dout: &[f32],
        seed: u64,
        step: u64,
    ) -> Result<Vec<Vec<f32>>> {
        let n = act.n;
        let plan = self.cfg.plan(n)?;
        let needs_train = || Error::Other("backward needs a training-mode forward".into());
        if act.outs.len() != plan.len() || act.outs.iter().zip(&plan).any(|(o, p)| o.len() != p.output.len()) {
            return Err(needs_train());
        }
        let mut grads: Vec<Vec<f32>> = self.tensors.iter().map(|_| Vec::new()).collect();
        let mut dy = dout.to_vec();
        let mut i = plan.len();
        while i > 0 {
            i -= 1;
            let p = plan[i];
            let input: &[f32] = if i == 0 { x } else { &act.outs[i - 1] };
            let lt = self.layer_tensors[i];
            if let LayerSpec::MaxPool2d { kernel, stride } = self.cfg.layers[i]
                && i >= 1
                && let LayerSpec::BatchNorm2d { eps, .. } = self.cfg.layers[i - 1]
            {
                // [ReLU ->] BatchNorm2d -> MaxPool2d, fused.
                let relu = i >= 2 && matches!(self.cfg.layers[i - 2], LayerSpec::Relu);
                let pool = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                let bn = BatchNorm2dShape { x: plan[i - 1].input, eps };
                let bn_x: &[f32] = if i == 1 { x } else { &act.outs[i - 2] };
                let Aux::Idx(idx) = &act.aux[i] else { unreachable!("max-pool indices") };
                let Aux::Stats { mean, var } = &act.aux[i - 1] else { return Err(needs_train()) };
                let blt = self.layer_tensors[i - 1];
                let c = bn.x.c;
                let (mut dg, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
                let mut dx = zeroed::<f32>(bn.x.len());
                maxpool2d_batchnorm2d_bwd_fast(
                    &pool,
                    &bn,
                    relu,
                    bn_x,
                    mean,
                    var,
                    self.t(blt.weight),
                    idx,
                    &dy,
                    &mut dg,
                    &mut dbeta,
                    &mut dx,
                );
                grads[blt.weight.unwrap()] = dg;
                grads[blt.bias.unwrap()] = dbeta;
                dy = dx;
                i = if relu { i - 2 } else { i - 1 };
                continue;
            }
            if matches!(self.cfg.layers[i], LayerSpec::Flatten) {
                continue; // dx = dy
            }
            let mut dx = zeroed::<f32>(if i == 0 && matches!(self.cfg.layers[0], LayerSpec::Conv2d { .. }) {
                0 // the input gradient of the first convolution is not needed
            } else {
                p.input.len()
            });
            match self.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    let (mut dw, mut db) = (vec![0.0; s.weight().len()], vec![0.0; out_channels]);
                    conv2d_bwd_weight_fast(&s, input, &dy, &mut dw, &mut db);
                    if i > 0 {
                        conv2d_bwd_input_fast(&s, self.t(lt.weight), &dy, &mut dx);
                    }
                    grads[lt.weight.unwrap()] = dw;
                    grads[lt.bias.unwrap()] = db;
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n, in_f: p.input.c, out_f: out_features };
                    let (mut dw, mut db) = (vec![0.0; out_features * p.input.c], vec![0.0; out_features]);
                    linear_bwd_weight_fast(&s, input, &dy, &mut dw, &mut db);
                    linear_bwd_input_fast(&s, self.t(lt.weight), &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dw;
                    grads[lt.bias.unwrap()] = db;
                }
                LayerSpec::Relu => relu_bwd_fast(&act.outs[i], &dy, &mut dx),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                    let Aux::Idx(idx) = &act.aux[i] else { unreachable!("max-pool indices") };
                    maxpool2d_bwd_fast(&s, idx, &dy, &mut dx);
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let Aux::Stats { mean, var } = &act.aux[i] else { return Err(needs_train()) };
                    let c = p.input.c;
                    let (mut dg, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
                    batchnorm2d_bwd_reduce_fast(&s, input, mean, var, &dy, &mut dg, &mut dbeta);
                    let g = self.t(lt.weight);
                    batchnorm2d_bwd_input_fast(&s, input, mean, var, g, &dg, &dbeta, &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dg;
                    grads[lt.bias.unwrap()] = dbeta;
                }
                LayerSpec::Dropout { p: prob } => {
                    dropout_bwd_fast(&DropoutCfg { n: dy.len(), p: prob, seed, step, layer: i as u32 }, &dy, &mut dx);
                }
                LayerSpec::Flatten => unreachable!("handled above"),
            }
            dy = dx;
        }
        Ok(grads)
    }
}
