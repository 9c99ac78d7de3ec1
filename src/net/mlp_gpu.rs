//! `net/mlp_count` (shaders/net/mlp_count.wgsl): counting with a small perceptron (a grid-head
//! model of linear layers and ReLUs, as `tiny`) in one dispatch per batch of candidates. Each
//! invocation cuts its candidate's crop from the calibrated frames, runs every layer in its own
//! arrays, 8 outputs per pass over a layer's inputs (the invocations of a workgroup read each
//! group of 8 weights together), and decodes the grid head as `net/decode_grid` does, so only six
//! floats per electron leave the kernel; no workgroup memory, no barriers. The weights are f32,
//! or f16 (`net/mlp_count_wf16`: half the bytes to read, the arithmetic still f32, on any
//! adapter); where the adapter has subgroup operations (`_sg`), each lane of a subgroup loads
//! the weights of another input and the lanes pass them round by shuffles ([`MlpForm`]). The
//! CPU twin [`mlp_count_cpu`] runs the layers in the same order (a GPU may fuse multiply-adds)
//! and decodes with [`GridDecoder`], the twin of `net/decode_grid`; the two agree within the
//! tolerance of `tests/net_mlp_gpu.rs`.

use super::crop::CropParams;
use super::decode::{DecodeGridParams, GridDecoder};
use super::model::Model;
use crate::count::find::Candidate;
use crate::gpu::{GpuContext, GpuError};
use crate::shaders;

/// Widest layer (inputs or outputs) the kernel holds in the private arrays of an invocation.
pub const MAX_WIDTH: usize = 256;
/// Most linear layers.
pub const MAX_LAYERS: usize = 7;

/// Outputs per block of the kernel's weights (a group of 8 weights per block and input).
pub const BLOCK: usize = 8;

/// Candidates per invocation of the kernel (each group of weights read serves both).
pub const CANDIDATES_PER_INVOCATION: u64 = 2;

/// Mirrors `MlpCountParams` in shaders/net/mlp_count.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MlpCountParams {
    pub n: u32,
    pub first: u32,
    pub side: u32,
    pub height: u32,
    pub width: u32,
    pub scale: f32,
    pub layers: u32,
    pub g: u32,
    pub radius: u32,
    pub origin: f32,
    pub cell: f32,
    pub _pad0: u32,
    /// `dims[l]` inputs of layer `l`, `dims[l + 1]` its outputs, as `[[u32; 4]; 2]`.
    pub dims: [[u32; 4]; 2],
}
const _: () = assert!(std::mem::size_of::<MlpCountParams>() == 80);

/// A perceptron prepared for the kernel: its packed weights and geometry.
#[derive(Clone, Debug)]
pub struct MlpKernelModel {
    /// Per layer `W [out, in]`, then the bias `[out]`.
    pub weights: Vec<f32>,
    dims: Vec<usize>,
    side: usize,
    input_scale: f32,
    grid: DecodeGridParams,
}

impl MlpKernelModel {
    /// None unless `model` is a grid perceptron that fits the kernel (at most [`MAX_LAYERS`]
    /// layers, none wider than [`MAX_WIDTH`]).
    pub fn new(model: &Model) -> Option<Self> {
        let (dims, weights) = model.perceptron_packed()?;
        if dims.len() > MAX_LAYERS + 1 || dims.iter().any(|&d| d > MAX_WIDTH) {
            return None;
        }
        let grid = DecodeGridParams::new(&model.cfg, 0)?;
        Some(Self { weights, dims, side: model.cfg.input_px, input_scale: model.cfg.input_scale, grid })
    }

    /// The weights as the kernel reads them (shaders/net/mlp_count.wgsl), as 32-bit words: per
    /// layer, for each block of [`BLOCK`] outputs and each input `k`, the block's weights of `k`
    /// (zero past the layer's outputs), then the block's biases; 8 f32, or with `half` 8 f16
    /// packed two to a word (the lower half first).
    pub fn kernel_weights(&self, half: bool) -> Vec<u32> {
        let mut groups: Vec<[f32; BLOCK]> = Vec::new();
        let mut woff = 0;
        for l in 0..self.dims.len() - 1 {
            let (in_f, out_f) = (self.dims[l], self.dims[l + 1]);
            let (w, bias) = self.weights[woff..woff + out_f * in_f + out_f].split_at(out_f * in_f);
            let block = |ob: usize, v: &dyn Fn(usize) -> f32| {
                std::array::from_fn(|j| if ob * BLOCK + j < out_f { v(ob * BLOCK + j) } else { 0.0 })
            };
            let blocks = out_f.div_ceil(BLOCK);
            for ob in 0..blocks {
                for k in 0..in_f {
                    groups.push(block(ob, &|o| w[o * in_f + k]));
                }
            }
            for ob in 0..blocks {
                groups.push(block(ob, &|o| bias[o]));
            }
            woff += out_f * in_f + out_f;
        }
        if half {
            let h = |v: f32| half::f16::from_f32(v).to_bits() as u32;
            groups.iter().flat_map(|g| g.chunks(2).map(|p| h(p[0]) | (h(p[1]) << 16)).collect::<Vec<_>>()).collect()
        } else {
            groups.iter().flat_map(|g| g.map(f32::to_bits)).collect()
        }
    }

    /// The weights the twin [`mlp_count_cpu`] takes for the kernel's form: as they are, or with
    /// `half` rounded to f16 as the kernel stores them.
    pub fn twin_weights(&self, half: bool) -> Vec<f32> {
        if half {
            self.weights.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
        } else {
            self.weights.clone()
        }
    }

    /// The parameters for candidates `first .. first + n` of frames `height` x `width`.
    pub fn params(&self, n: usize, first: usize, height: u32, width: u32) -> MlpCountParams {
        let crop = CropParams::new(n, first, self.side, height, width, self.input_scale);
        let mut dims = [[0u32; 4]; 2];
        for (l, &d) in self.dims.iter().enumerate() {
            dims[l / 4][l % 4] = d as u32;
        }
        MlpCountParams {
            n: n as u32,
            first: first as u32,
            side: self.side as u32,
            height,
            width,
            scale: crop.scale,
            layers: (self.dims.len() - 1) as u32,
            g: self.grid.g,
            radius: self.grid.radius,
            origin: self.grid.origin,
            cell: self.grid.cell,
            _pad0: 0,
            dims,
        }
    }
}

/// The form of `net/mlp_count`: the precision of its weights, and whether its lanes share the
/// weights they load by subgroup shuffles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlpForm {
    /// f16 weights ([`MlpKernelModel::kernel_weights`] with `half`).
    pub half: bool,
    /// Subgroup operations (the adapter's `SUBGROUP`).
    pub subgroups: bool,
}

impl MlpForm {
    pub fn kernel(self) -> &'static crate::shaders::Kernel {
        match (self.half, self.subgroups) {
            (false, false) => &shaders::NET_MLP_COUNT,
            (true, false) => &shaders::NET_MLP_COUNT_WF16,
            (false, true) => &shaders::NET_MLP_COUNT_SG,
            (true, true) => &shaders::NET_MLP_COUNT_WF16_SG,
        }
    }
}

/// The buffers `net/mlp_count` reads and writes.
pub struct MlpBuffers<'a> {
    /// Calibrated frames (1/16 e-).
    pub q: &'a wgpu::Buffer,
    /// Candidates `[frame, pixel, _, _]`.
    pub cands: &'a wgpu::Buffer,
    /// [`MlpKernelModel::kernel_weights`] in the form's precision.
    pub weights: &'a wgpu::Buffer,
    /// 6 floats per candidate.
    pub out: &'a wgpu::Buffer,
    /// One u32: how many candidates `cands` holds past `first` at most (the finder's counter), or
    /// u32 max ([`found_all`]) when the parameters' `n` says it.
    pub found: &'a wgpu::Buffer,
}

/// A `found` buffer that leaves the count to the parameters' `n`.
pub fn found_all(ctx: &GpuContext) -> Result<wgpu::Buffer, GpuError> {
    ctx.upload("mlp_found_all", &[u32::MAX])
}

fn bindings<'a>(u: &'a wgpu::Buffer, b: &MlpBuffers<'a>) -> [(&'static str, &'a wgpu::Buffer); 6] {
    [("params", u), ("q", b.q), ("cands", b.cands), ("weights", b.weights), ("out", b.out), ("found", b.found)]
}

/// Records `net/mlp_count` in `form` over `p.n` candidates (fewer where `found` says so).
pub fn mlp_count_record(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &MlpCountParams,
    bufs: &MlpBuffers,
    form: MlpForm,
) -> Result<(), GpuError> {
    let u = ctx.uniform("mlp_count_params", p);
    ctx.dispatch(enc, form.kernel(), &bindings(&u, bufs), (p.n as u64).div_ceil(CANDIDATES_PER_INVOCATION))
}

/// Records `net/mlp_count` over the candidates a finder left on the device, its counter in
/// `bufs.found` (at most `p.n` of them): `count/args` turns the counter into the workgroups of an
/// indirect dispatch (in `args`, 12 bytes), so the host reads nothing between the finder and the
/// network.
pub fn mlp_count_record_indirect(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    p: &MlpCountParams,
    bufs: &MlpBuffers,
    form: MlpForm,
    args: &wgpu::Buffer,
) -> crate::Result<()> {
    let u = ctx.uniform("mlp_count_params", p);
    let kernel = form.kernel();
    let per_workgroup = kernel.workgroup_size * CANDIDATES_PER_INVOCATION as u32;
    crate::count::localize::record_indirect_items(
        ctx,
        enc,
        kernel,
        per_workgroup,
        p.n,
        bufs.found,
        args,
        &bindings(&u, bufs),
    )?;
    Ok(())
}

/// CPU twin of `net/mlp_count`: 6 floats per candidate (arg-max x, y; local mean x, y; sigma;
/// p_max), `q` the frames of the candidates' frame indices, `weights` the model's packed weights
/// ([`MlpKernelModel::twin_weights`]). The layers in the kernel's order; the grid decoded by
/// [`GridDecoder`], the twin of the kernels' shared decoding.
pub fn mlp_count_cpu(p: &MlpCountParams, q: &[i32], cands: &[Candidate], weights: &[f32]) -> Vec<f32> {
    let dim = |l: u32| p.dims[(l / 4) as usize][(l % 4) as usize] as usize;
    let plane = (p.side * p.side) as usize;
    let fp = (p.height * p.width) as usize;
    let mut out = vec![0.0f32; p.n as usize * 6];
    let crop = CropParams {
        n: 1,
        first: 0,
        side: p.side,
        height: p.height,
        width: p.width,
        scale: p.scale,
        ..Default::default()
    };
    let (g, radius, origin, cell) = (p.g, p.radius, p.origin, p.cell);
    let dec = GridDecoder::from_params(DecodeGridParams { g, radius, origin, cell, ..Default::default() });
    let mut scratch = dec.scratch();
    let mut a = vec![0.0f32; MAX_WIDTH];
    let mut b = vec![0.0f32; MAX_WIDTH];
    for i in 0..p.n as usize {
        let c = cands[p.first as usize + i];
        let f = c[0] as usize;
        super::crop::crop_one(&crop, &q[f * fp..(f + 1) * fp], c[1] / p.width, c[1] % p.width, &mut a[..plane]);
        let mut woff = 0;
        for l in 0..p.layers {
            let (in_f, out_f) = (dim(l), dim(l + 1));
            for o in 0..out_f {
                let row = &weights[woff + o * in_f..][..in_f];
                let mut acc = 0.0f32;
                for (x, w) in a[..in_f].iter().zip(row) {
                    acc += x * w;
                }
                acc += weights[woff + out_f * in_f + o];
                b[o] = if l + 1 < p.layers { acc.max(0.0) } else { acc };
            }
            woff += out_f * in_f + out_f;
            std::mem::swap(&mut a, &mut b);
        }
        let d = dec.row(&a[..dec.k], &mut scratch);
        let row = [d.argmax_xy[0], d.argmax_xy[1], d.mean_xy[0], d.mean_xy[1], d.sigma_px, d.p_max];
        out[i * 6..(i + 1) * 6].copy_from_slice(&row);
    }
    out
}
