//! A model on the GPU: persistent buffers for weights, gradients, Adam state, activations and
//! scratch, and the recording of a forward pass, the loss, a backward pass and an optimizer step
//! as a chain of layer kernels. The CPU reference is [`Model::forward_cpu`] /
//! [`Model::backward_cpu`] with the same twins.

use super::batchnorm2d::{
    BatchNorm2dShape, batchnorm2d_bwd_input_record, batchnorm2d_bwd_reduce_record, batchnorm2d_bwd_reduce_scratch_len,
    batchnorm2d_fwd_record, batchnorm2d_fwd_record_io, batchnorm2d_running_record, batchnorm2d_stats_record,
    batchnorm2d_stats_scratch_len,
};
use super::conv2d::{
    Conv2dShape, conv2d_bwd_input_record, conv2d_bwd_weight_record, conv2d_bwd_weight_scratch_len, conv2d_fwd_record_io,
};
use super::dropout::{DropoutCfg, dropout_bwd_record, dropout_fwd_record};
use super::linear::{
    LinearShape, linear_bwd_input_record, linear_bwd_weight_record, linear_bwd_weight_scratch_len, linear_fwd_record_io,
};
use super::loss::{MseParams, PairMseParams, SoftmaxXentParams, mse_record, pair_mse_record, softmax_xent_record};
use super::maxpool2d::{MaxPool2dShape, maxpool2d_bwd_record, maxpool2d_fwd_record_io};
use super::model::half_activations;
use super::model::{Head, LayerSpec, Model};
use super::optim::{AdamConfig, adam_record};
use super::precision::{ActIo, NetPrecision, elem_bytes};
use super::relu::{relu_bwd_record, relu_fwd_record_io};
use crate::gpu::GpuContext;
use crate::io::model_file::OptimState;
use crate::{Error, Result};

struct TrainState {
    grads: Vec<Option<wgpu::Buffer>>,
    m: Vec<Option<wgpu::Buffer>>,
    v: Vec<Option<wgpu::Buffer>>,
    vmax: Vec<Option<wgpu::Buffer>>,
    /// Gradient ping-pong buffers, each as large as the largest layer input/output.
    dbuf: [wgpu::Buffer; 2],
}

/// A model's buffers on one GPU for batches of up to `capacity` samples.
pub struct GpuNet<'a> {
    pub ctx: &'a GpuContext,
    pub model: Model,
    pub capacity: usize,
    params: Vec<wgpu::Buffer>,
    acts: Vec<wgpu::Buffer>,
    idx: Vec<Option<wgpu::Buffer>>,
    stats: Vec<Option<(wgpu::Buffer, wgpu::Buffer)>>,
    scratch: wgpu::Buffer,
    /// Network input `[capacity, 1, side, side]`.
    pub input: wgpu::Buffer,
    /// Labels (u32: grid cell or class) and true points `[capacity, target_dims]` (2, or 4 for
    /// pair samples).
    pub labels: wgpu::Buffer,
    pub target: wgpu::Buffer,
    /// Pair samples' separations (written by `make_pairs`, unused by the loss).
    pub sep: wgpu::Buffer,
    /// Per-sample loss and correctness of the last loss recorded.
    pub loss: wgpu::Buffer,
    pub correct: wgpu::Buffer,
    train: Option<TrainState>,
    /// Whether `acts[i]` holds f16 (inference with [`NetPrecision::F16`]); all false otherwise.
    half: Vec<bool>,
}

fn f32s(n: usize) -> u64 {
    (n.max(1) * 4) as u64
}

/// Bytes a copy layer (flatten, dropout at inference) copies: `len` elements of its storage,
/// rounded up to the copy alignment (the buffers are allocated rounded up too).
fn copy_bytes(io: ActIo, len: usize) -> u64 {
    assert_eq!(io.x16, io.y16, "a copy layer keeps its input's storage");
    io.x_bytes(len.max(1)).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
}

impl<'a> GpuNet<'a> {
    /// Uploads `model`; with `training`, also allocates gradients and Adam state (zeros, or `optim`).
    /// Activations are f32.
    pub fn new(
        ctx: &'a GpuContext,
        model: Model,
        capacity: usize,
        training: bool,
        optim: Option<&[OptimState]>,
    ) -> Result<Self> {
        let half = vec![false; model.cfg.layers.len()];
        Self::build(ctx, model, capacity, training, optim, half)
    }

    /// An inference-only model whose activations between layers are stored as `precision` says
    /// ([`super::precision`]). f16 falls back to f32 on adapters without `SHADER_F16`
    /// ([`GpuNet::precision`] tells which one runs).
    pub fn new_inference(ctx: &'a GpuContext, model: Model, capacity: usize, precision: NetPrecision) -> Result<Self> {
        let f16 = precision == NetPrecision::F16 && ctx.has_shader_f16();
        let half = half_activations(&model.cfg.layers, f16);
        Self::build(ctx, model, capacity, false, None, half)
    }

    /// The activation storage this model runs with.
    pub fn precision(&self) -> NetPrecision {
        if self.half.iter().any(|&h| h) { NetPrecision::F16 } else { NetPrecision::F32 }
    }

    fn build(
        ctx: &'a GpuContext,
        model: Model,
        capacity: usize,
        training: bool,
        optim: Option<&[OptimState]>,
        half: Vec<bool>,
    ) -> Result<Self> {
        let capacity = capacity.max(1);
        let plan = model.cfg.plan(capacity)?;
        let params = model.tensors.iter().map(|t| ctx.upload(&t.name, &t.data)).collect::<Result<Vec<_>, _>>()?;
        let acts = plan
            .iter()
            .zip(&half)
            .map(|(p, &h)| ctx.storage("activation", elem_bytes(h, p.output.len())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut idx = Vec::new();
        let mut stats = Vec::new();
        let mut scratch_len = 1usize;
        for (l, p) in model.cfg.layers.iter().zip(&plan) {
            idx.push(match l {
                LayerSpec::MaxPool2d { .. } => Some(ctx.storage("maxpool_idx", f32s(p.output.len()))?),
                _ => None,
            });
            stats.push(match l {
                LayerSpec::BatchNorm2d { .. } => {
                    Some((ctx.storage("bn_mean", f32s(p.input.c))?, ctx.storage("bn_var", f32s(p.input.c))?))
                }
                _ => None,
            });
            let need = match *l {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => conv2d_bwd_weight_scratch_len(
                    &Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride),
                ),
                LayerSpec::Linear { out_features } => {
                    linear_bwd_weight_scratch_len(&LinearShape { n: capacity, in_f: p.input.c, out_f: out_features })
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    batchnorm2d_stats_scratch_len(&s).max(batchnorm2d_bwd_reduce_scratch_len(&s))
                }
                _ => 0,
            };
            scratch_len = scratch_len.max(need);
        }
        let side = model.cfg.input_px;
        let train = if training {
            let largest = plan.iter().map(|p| p.input.len().max(p.output.len())).max().unwrap_or(1);
            let mut st = TrainState {
                grads: vec![],
                m: vec![],
                v: vec![],
                vmax: vec![],
                dbuf: [ctx.storage("dbuf0", f32s(largest))?, ctx.storage("dbuf1", f32s(largest))?],
            };
            for (i, t) in model.tensors.iter().enumerate() {
                if !t.trainable {
                    for v in [&mut st.grads, &mut st.m, &mut st.v, &mut st.vmax] {
                        v.push(None);
                    }
                    continue;
                }
                let zeros = vec![0.0f32; t.data.len()];
                let init = |k: usize| -> &[f32] {
                    match optim {
                        Some(o) => match k {
                            0 => &o[i].m,
                            1 => &o[i].v,
                            _ => &o[i].vmax,
                        },
                        None => &zeros,
                    }
                };
                st.grads.push(Some(ctx.upload("grad", &zeros)?));
                st.m.push(Some(ctx.upload("adam_m", init(0))?));
                st.v.push(Some(ctx.upload("adam_v", init(1))?));
                st.vmax.push(Some(ctx.upload("adam_vmax", init(2))?));
            }
            Some(st)
        } else {
            None
        };
        Ok(Self {
            ctx,
            capacity,
            scratch: ctx.storage("net_scratch", f32s(scratch_len))?,
            input: ctx.storage("net_input", f32s(capacity * side * side))?,
            labels: ctx.storage("net_labels", f32s(capacity))?,
            target: ctx.storage("net_target", f32s(model.cfg.target_dims() * capacity))?,
            sep: ctx.storage("net_sep", f32s(capacity))?,
            loss: ctx.storage("net_loss", f32s(capacity))?,
            correct: ctx.storage("net_correct", f32s(capacity))?,
            model,
            params,
            acts,
            idx,
            stats,
            train,
            half,
        })
    }

    /// The largest batch whose every buffer fits one storage binding of `ctx`.
    pub fn max_capacity(ctx: &GpuContext, model: &Model) -> Result<usize> {
        let plan = model.cfg.plan(1)?;
        let per_sample = plan.iter().map(|p| p.input.len().max(p.output.len())).max().unwrap_or(1) as u64 * 4;
        Ok((ctx.max_binding_bytes() / per_sample).max(1) as usize)
    }

    /// The last layer's output buffer (logits or x, y), `[n, outputs]`.
    pub fn output(&self) -> &wgpu::Buffer {
        self.acts.last().expect("a model has layers")
    }

    /// Records the forward pass over the first `n` samples of [`GpuNet::input`]. In evaluation
    /// mode (`train` false) a flatten or dropout before the last layer passes its input on without a
    /// copy, and a linear layer followed by a ReLU is one kernel writing the ReLU's output, so the
    /// activations of those skipped layers are not written.
    pub fn record_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        n: usize,
        train: bool,
        seed: u64,
        step: u64,
    ) -> Result<()> {
        let ctx = self.ctx;
        assert!(n <= self.capacity, "batch {n} > capacity {}", self.capacity);
        assert!(!(train && self.precision() == NetPrecision::F16), "training runs with f32 activations");
        let plan = self.model.cfg.plan(n)?;
        let layers = &self.model.cfg.layers;
        // the layer's input: the batch, or the last activation written (inference skips copies)
        let (mut x, mut x16) = (&self.input, false);
        let mut i = 0;
        while i < plan.len() {
            let p = &plan[i];
            let last = i + 1 == plan.len();
            let copy_layer = matches!(layers[i], LayerSpec::Flatten | LayerSpec::Dropout { .. });
            if !train && copy_layer && !last {
                // a flatten, or a dropout in evaluation mode, passes its input on unchanged
                i += 1;
                continue;
            }
            // In inference a linear layer followed by a ReLU is one kernel writing the ReLU's output.
            let fuse_relu = !train
                && matches!(layers[i], LayerSpec::Linear { .. })
                && matches!(layers.get(i + 1), Some(LayerSpec::Relu));
            let out = if fuse_relu { i + 1 } else { i };
            let io = ActIo { x16, y16: self.half[out] };
            let y = &self.acts[out];
            let lt = self.model.layer_tensors[i];
            let w = lt.weight.map(|k| &self.params[k]);
            let b = lt.bias.map(|k| &self.params[k]);
            match self.model.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    conv2d_fwd_record_io(ctx, enc, &s, io, x, w.unwrap(), b.unwrap(), y)?;
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n, in_f: p.input.c, out_f: out_features };
                    linear_fwd_record_io(ctx, enc, &s, io, fuse_relu, x, w.unwrap(), b.unwrap(), y)?;
                }
                LayerSpec::Relu => relu_fwd_record_io(ctx, enc, p.input.len(), io, x, y)?,
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                    maxpool2d_fwd_record_io(ctx, enc, &s, io, x, y, self.idx[i].as_ref().unwrap())?;
                }
                LayerSpec::BatchNorm2d { eps, momentum } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let rm = &self.params[lt.running_mean.unwrap()];
                    let rv = &self.params[lt.running_var.unwrap()];
                    if train {
                        let (mean, var) = self.stats[i].as_ref().unwrap();
                        batchnorm2d_stats_record(ctx, enc, &s, x, mean, var, &self.scratch)?;
                        batchnorm2d_fwd_record(ctx, enc, &s, x, mean, var, w.unwrap(), b.unwrap(), y)?;
                        batchnorm2d_running_record(ctx, enc, &s, momentum, mean, var, rm, rv)?;
                    } else {
                        batchnorm2d_fwd_record_io(ctx, enc, &s, io, x, [rm, rv, w.unwrap(), b.unwrap()], y)?;
                    }
                }
                LayerSpec::Dropout { p: prob } => {
                    if train {
                        let c = DropoutCfg { n: p.input.len(), p: prob, seed, step, layer: i as u32 };
                        dropout_fwd_record(ctx, enc, &c, x, y)?;
                    } else {
                        enc.copy_buffer_to_buffer(x, 0, y, 0, copy_bytes(io, p.input.len()));
                    }
                }
                LayerSpec::Flatten => enc.copy_buffer_to_buffer(x, 0, y, 0, copy_bytes(io, p.input.len())),
            }
            (x, x16) = (y, io.y16);
            i = out + 1;
        }
        Ok(())
    }

    /// Runs the model in evaluation mode on `n` inputs `x` (uploaded to [`GpuNet::input`]; `n` at
    /// most the capacity) and returns the raw outputs `[n, head_outputs]`.
    pub fn infer(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let ctx = self.ctx;
        ctx.write(&self.input, x);
        let mut enc = ctx.encoder("infer");
        self.record_forward(&mut enc, n, false, 0, 0)?;
        let rb = ctx.readback(&mut enc, self.output(), (n * self.model.cfg.head_outputs() * 4) as u64);
        ctx.submit_and_wait(enc)?;
        Ok(rb.read(ctx)?)
    }

    /// Records the loss of the first `n` outputs against [`GpuNet::labels`] / [`GpuNet::target`]
    /// into [`GpuNet::loss`] / [`GpuNet::correct`]; with `grad`, also dL/d(output) for backward.
    pub fn record_loss(&self, enc: &mut wgpu::CommandEncoder, n: usize, grad: bool) -> Result<()> {
        let k = self.model.cfg.head_outputs();
        let dummy;
        let dout = match &self.train {
            Some(t) if grad => &t.dbuf[0],
            _ => {
                dummy = self.ctx.storage("no_grad", 4)?;
                &dummy
            }
        };
        match self.model.cfg.head {
            // grid cells and classes: both a softmax over the head's outputs against a label
            Head::Grid { .. } | Head::Classes { .. } => {
                let p = SoftmaxXentParams { n: n as u32, k: k as u32, mean_over: n as u32, write_grad: grad as u32 };
                softmax_xent_record(self.ctx, enc, &p, self.output(), &self.labels, &self.loss, &self.correct, dout)?;
            }
            Head::Xy => {
                let p = MseParams { n: n as u32, d: 2, mean_over: 2 * n as u32, write_grad: grad as u32 };
                mse_record(self.ctx, enc, &p, self.output(), &self.target, &self.loss, dout)?;
            }
            Head::Pair => {
                let p = PairMseParams { n: n as u32, mean_over: 4 * n as u32, write_grad: grad as u32, _pad: 0 };
                pair_mse_record(self.ctx, enc, &p, self.output(), &self.target, &self.loss, dout)?;
            }
        }
        Ok(())
    }

    /// Records the backward pass (after a training forward and `record_loss(grad = true)`).
    pub fn record_backward(&self, enc: &mut wgpu::CommandEncoder, n: usize, seed: u64, step: u64) -> Result<()> {
        let ctx = self.ctx;
        let t = self.train.as_ref().ok_or_else(|| Error::Other("backward on a model loaded for inference".into()))?;
        let plan = self.model.cfg.plan(n)?;
        let mut cur = 0usize;
        for i in (0..plan.len()).rev() {
            let p = plan[i];
            let x = if i == 0 { &self.input } else { &self.acts[i - 1] };
            let (dy, dx) = (&t.dbuf[cur], &t.dbuf[1 - cur]);
            let lt = self.model.layer_tensors[i];
            let g = |k: Option<usize>| t.grads[k.unwrap()].as_ref().unwrap();
            match self.model.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    conv2d_bwd_weight_record(ctx, enc, &s, x, dy, g(lt.weight), g(lt.bias), &self.scratch)?;
                    if i > 0 {
                        conv2d_bwd_input_record(ctx, enc, &s, &self.params[lt.weight.unwrap()], dy, dx)?;
                    }
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n, in_f: p.input.c, out_f: out_features };
                    linear_bwd_weight_record(ctx, enc, &s, x, dy, g(lt.weight), g(lt.bias), &self.scratch)?;
                    linear_bwd_input_record(ctx, enc, &s, &self.params[lt.weight.unwrap()], dy, dx)?;
                }
                LayerSpec::Relu => relu_bwd_record(ctx, enc, p.input.len(), &self.acts[i], dy, dx)?,
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                    maxpool2d_bwd_record(ctx, enc, &s, self.idx[i].as_ref().unwrap(), dy, dx)?;
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let (mean, var) = self.stats[i].as_ref().unwrap();
                    let (dg, dbeta) = (g(lt.weight), g(lt.bias));
                    batchnorm2d_bwd_reduce_record(ctx, enc, &s, x, mean, var, dy, dg, dbeta, &self.scratch)?;
                    let gamma = &self.params[lt.weight.unwrap()];
                    batchnorm2d_bwd_input_record(ctx, enc, &s, x, mean, var, gamma, dg, dbeta, dy, dx)?;
                }
                LayerSpec::Dropout { p: prob } => {
                    let c = DropoutCfg { n: p.input.len(), p: prob, seed, step, layer: i as u32 };
                    dropout_bwd_record(ctx, enc, &c, dy, dx)?;
                }
                LayerSpec::Flatten => enc.copy_buffer_to_buffer(dy, 0, dx, 0, f32s(p.input.len())),
            }
            cur = 1 - cur;
        }
        Ok(())
    }

    /// Records one optimizer step (step number `t` from 1) on every trainable tensor.
    pub fn record_adam(&self, enc: &mut wgpu::CommandEncoder, cfg: &AdamConfig, t: u64, lr: f32) -> Result<()> {
        let st = self.train.as_ref().ok_or_else(|| Error::Other("optimizer step on an inference model".into()))?;
        for (i, tensor) in self.model.tensors.iter().enumerate() {
            if !tensor.trainable {
                continue;
            }
            let p = cfg.params(tensor.data.len(), t, lr);
            adam_record(
                self.ctx,
                enc,
                &p,
                &self.params[i],
                st.grads[i].as_ref().unwrap(),
                st.m[i].as_ref().unwrap(),
                st.v[i].as_ref().unwrap(),
                st.vmax[i].as_ref().unwrap(),
            )?;
        }
        Ok(())
    }

    /// Reads the weights and running statistics back into [`GpuNet::model`].
    pub fn download(&mut self) -> Result<()> {
        let mut enc = self.ctx.encoder("download");
        let rbs: Vec<_> = self
            .model
            .tensors
            .iter()
            .zip(&self.params)
            .map(|(t, b)| self.ctx.readback(&mut enc, b, (t.data.len() * 4) as u64))
            .collect();
        self.ctx.submit_and_wait(enc)?;
        for (t, rb) in self.model.tensors.iter_mut().zip(rbs) {
            t.data = rb.read(self.ctx)?;
        }
        Ok(())
    }

    /// Reads the Adam state back (for checkpoints).
    pub fn download_optim(&self) -> Result<Vec<OptimState>> {
        let st = self.train.as_ref().ok_or_else(|| Error::Other("no optimizer state".into()))?;
        let mut enc = self.ctx.encoder("download_optim");
        let mut pending = Vec::new();
        for (i, t) in self.model.tensors.iter().enumerate() {
            let bytes = (t.data.len() * 4) as u64;
            pending.push(if t.trainable {
                Some([
                    self.ctx.readback(&mut enc, st.m[i].as_ref().unwrap(), bytes),
                    self.ctx.readback(&mut enc, st.v[i].as_ref().unwrap(), bytes),
                    self.ctx.readback(&mut enc, st.vmax[i].as_ref().unwrap(), bytes),
                ])
            } else {
                None
            });
        }
        self.ctx.submit_and_wait(enc)?;
        pending
            .into_iter()
            .map(|p| match p {
                Some([a, b, c]) => {
                    Ok(OptimState { m: a.read(self.ctx)?, v: b.read(self.ctx)?, vmax: c.read(self.ctx)? })
                }
                None => Ok(OptimState { m: vec![], v: vec![], vmax: vec![] }),
            })
            .collect()
    }

    /// Reads the gradients of the last backward pass (tests).
    pub fn download_grads(&self) -> Result<Vec<Vec<f32>>> {
        let st = self.train.as_ref().ok_or_else(|| Error::Other("no gradients".into()))?;
        let mut enc = self.ctx.encoder("download_grads");
        let rbs: Vec<_> = self
            .model
            .tensors
            .iter()
            .zip(&st.grads)
            .map(|(t, g)| g.as_ref().map(|g| self.ctx.readback(&mut enc, g, (t.data.len() * 4) as u64)))
            .collect();
        self.ctx.submit_and_wait(enc)?;
        rbs.into_iter().map(|r| r.map_or(Ok(Vec::new()), |r| Ok(r.read(self.ctx)?))).collect()
    }

    /// Reads layer `i`'s output for the first `n` samples (tests, debugging).
    pub fn read_activation(&self, i: usize, n: usize) -> Result<Vec<f32>> {
        let len = self.model.cfg.plan(n)?[i].output.len();
        if !self.half[i] {
            return self.read(&self.acts[i], len);
        }
        let mut enc = self.ctx.encoder("read");
        let rb = self.ctx.readback(&mut enc, &self.acts[i], elem_bytes(true, len));
        self.ctx.submit_and_wait(enc)?;
        Ok(super::precision::from_f16_bits(&rb.read::<u16>(self.ctx)?))
    }

    /// Reads `len` f32 from the start of `buf`.
    pub fn read(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let mut enc = self.ctx.encoder("read");
        let rb = self.ctx.readback(&mut enc, buf, (len * 4) as u64);
        self.ctx.submit_and_wait(enc)?;
        Ok(rb.read(self.ctx)?)
    }
}
