//! The networks of a counter on the GPU: the one-dispatch kernel of small perceptrons and the
//! layer-by-layer path (crops, forward passes, grid decoding on the device).

use crate::Result;
use crate::count::find::Candidate;
use crate::gpu::GpuContext;
use crate::net::decode::DECODED_FLOATS;
use crate::net::gpu_net::GpuNet;
use crate::net::mlp_gpu::{
    MlpBuffers, MlpForm, MlpKernelModel, found_all, mlp_count_record, mlp_count_record_indirect,
};

/// Frame size of the batch: height, width.
pub(super) type Size = (u32, u32);

/// A small perceptron on the one-dispatch kernel `net/mlp_count`: its weights on the device,
/// blocked for the kernel, the kernel's form, and the decoded rows of a batch's whole candidate
/// list (one dispatch per batch).
pub(super) struct MlpNet {
    km: MlpKernelModel,
    weights: wgpu::Buffer,
    form: MlpForm,
    /// Candidates a batch's list holds at most.
    capacity: u32,
    /// The kernel's `found` when the host gives the count.
    found_all: wgpu::Buffer,
    /// Indirect dispatch arguments (counting frames kept on the device).
    args: wgpu::Buffer,
    /// 6 decoded floats per candidate of the list.
    rows: wgpu::Buffer,
}

impl MlpNet {
    /// For batches whose candidate lists hold at most `capacity` entries.
    pub(super) fn new(ctx: &GpuContext, km: MlpKernelModel, form: MlpForm, capacity: u64) -> Result<Self> {
        Ok(Self {
            weights: ctx.upload("mlp_weights", &km.kernel_weights(form.half))?,
            km,
            form,
            capacity: capacity as u32,
            found_all: found_all(ctx)?,
            args: ctx.storage("mlp_args", 12)?,
            rows: ctx.storage("mlp_rows", capacity * (DECODED_FLOATS * 4) as u64)?,
        })
    }

    /// The decoded rows of the last batch ([`Self::record_on_device`]).
    pub(super) fn rows(&self) -> &wgpu::Buffer {
        &self.rows
    }

    /// The one-dispatch kernel over the sorted candidates of the batch whose calibrated frames
    /// are in `q` (uploaded into `nc`): 6 decoded floats per candidate, one dispatch and one
    /// readback.
    pub(super) fn decoded(
        &self,
        ctx: &GpuContext,
        (height, width): Size,
        nc: &wgpu::Buffer,
        q: &wgpu::Buffer,
        cands: &[Candidate],
    ) -> Result<Vec<f32>> {
        if cands.len() > self.capacity as usize {
            return Err(crate::Error::Other(format!(
                "net/mlp_count: {} candidates > the list capacity {}: this is a bug, please report it",
                cands.len(),
                self.capacity
            )));
        }
        ctx.write(nc, cands);
        let bufs = MlpBuffers { q, cands: nc, weights: &self.weights, out: &self.rows, found: &self.found_all };
        let p = self.km.params(cands.len(), 0, height, width);
        let mut enc = ctx.encoder("mlp_count");
        mlp_count_record(ctx, &mut enc, &p, &bufs, self.form)?;
        let rb = ctx.readback(&mut enc, &self.rows, (cands.len() * DECODED_FLOATS * 4) as u64);
        ctx.submit_and_wait(enc)?;
        Ok(rb.read::<f32>(ctx)?)
    }

    /// Records the kernel over the finder's list as it lies on the device (`cands`, its counter
    /// `counter`), the rows into [`Self::rows`]: nothing goes through the host.
    pub(super) fn record_on_device(
        &self,
        ctx: &GpuContext,
        enc: &mut wgpu::CommandEncoder,
        (height, width): Size,
        q: &wgpu::Buffer,
        cands: &wgpu::Buffer,
        counter: &wgpu::Buffer,
    ) -> Result<()> {
        let p = self.km.params(self.capacity as usize, 0, height, width);
        let bufs = MlpBuffers { q, cands, weights: &self.weights, out: &self.rows, found: counter };
        mlp_count_record_indirect(ctx, enc, &p, &bufs, self.form, &self.args)
    }
}

/// Networks on the GPU over the sorted candidates of the batch whose calibrated frames are in
/// `q`: per chunk the crops are cut once (kernel `net/crop`) into the first network's input
/// and copied to the others' (they read the same crops: checked when the models are loaded,
/// and they share the capacity), every forward pass runs in the same submission, and the
/// outputs come back, one vector per network: raw, except the first network's when
/// `decoded` is given (a grid head, decoded on the device into 6 floats per crop by
/// `net/decode_grid` instead of reading back every cell's logit).
pub(super) fn net_gpu_outputs(
    ctx: &GpuContext,
    (height, width): Size,
    nets: &[&GpuNet],
    nc: &wgpu::Buffer,
    decoded: Option<&wgpu::Buffer>,
    q: &wgpu::Buffer,
    cands: &[Candidate],
) -> Result<Vec<Vec<f32>>> {
    let first = nets[0];
    let cfg = &first.model.cfg;
    let plane = cfg.input_px * cfg.input_px;
    ctx.write(nc, cands);
    let mut outs: Vec<Vec<f32>> =
        nets.iter().map(|n| Vec::with_capacity(cands.len() * n.model.cfg.head_outputs())).collect();
    for start in (0..cands.len()).step_by(first.capacity) {
        let m = first.capacity.min(cands.len() - start);
        let p = crate::net::crop::CropParams::new(m, start, cfg.input_px, height, width, cfg.input_scale);
        let mut enc = ctx.encoder("net");
        crate::net::crop::crop_record(ctx, &mut enc, &p, q, nc, &first.input)?;
        let mut rbs = Vec::with_capacity(nets.len());
        for (i, net) in nets.iter().enumerate() {
            if i > 0 {
                enc.copy_buffer_to_buffer(&first.input, 0, &net.input, 0, (m * plane * 4) as u64);
            }
            net.record_forward(&mut enc, m, false, 0, 0)?;
            match (i, decoded) {
                (0, Some(dbuf)) => {
                    let dp = crate::net::decode::DecodeGridParams::new(&net.model.cfg, m).expect("grid head");
                    crate::net::decode::decode_grid_record(ctx, &mut enc, &dp, net.output(), dbuf)?;
                    rbs.push(ctx.readback(&mut enc, dbuf, (m * crate::net::decode::DECODED_FLOATS * 4) as u64));
                }
                _ => rbs.push(ctx.readback(&mut enc, net.output(), (m * net.model.cfg.head_outputs() * 4) as u64)),
            }
        }
        ctx.submit_and_wait(enc)?;
        for (out, rb) in outs.iter_mut().zip(rbs) {
            out.extend_from_slice(&rb.read::<f32>(ctx)?);
        }
    }
    Ok(outs)
}
