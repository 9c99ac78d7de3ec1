//! Kernel `frames/place` (shaders/frames/place.wgsl): draws each electron's library event and pixel.

use bytemuck::{Pod, Zeroable};

use crate::rng::{below, counter, philox4x32_10, streams};

/// Mirrors `PlaceParams` in shaders/frames/place.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct PlaceParams {
    pub n_electrons: u32,
    pub n_frames: u32,
    pub first_frame_lo: u32,
    pub first_frame_hi: u32,
    pub key_lo: u32,
    pub key_hi: u32,
    pub n_events: u32,
    pub height: u32,
    pub width: u32,
    pub electron_base: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<PlaceParams>() == 48);

impl PlaceParams {
    pub fn first_frame(&self) -> u64 {
        self.first_frame_lo as u64 | (self.first_frame_hi as u64) << 32
    }
}

/// A placed electron: `[event, row, col, frame_local]`.
pub type Record = [u32; 4];

/// CPU twin of `frames/place`: one record per electron `i < n_electrons`; `frame_offsets` are the
/// dispatch's per-frame electron prefix sums (`n_frames + 1` entries).
pub fn place_cpu(p: &PlaceParams, frame_offsets: &[u32]) -> Vec<Record> {
    let key = [p.key_lo, p.key_hi];
    let mut out = Vec::with_capacity(p.n_electrons as usize);
    for f in 0..p.n_frames as usize {
        let frame = p.first_frame() + f as u64;
        for i in frame_offsets[f]..frame_offsets[f + 1].min(p.n_electrons) {
            let e = p.electron_base + i - frame_offsets[f];
            let r = philox4x32_10(counter(e, frame, streams::PLACE), key);
            out.push([below(r[0], p.n_events), below(r[1], p.height), below(r[2], p.width), f as u32]);
        }
    }
    out
}

/// Runs `frames/place` alone on the GPU (tests and benches; [`super::Generator`] fuses the stages).
#[cfg(feature = "testing")]
pub fn place_gpu(ctx: &crate::gpu::GpuContext, p: &PlaceParams, frame_offsets: &[u32]) -> crate::Result<Vec<Record>> {
    let offsets = ctx.upload("frame_offsets", frame_offsets)?;
    let records = ctx.storage("records", p.n_electrons as u64 * 16)?;
    let params = ctx.uniform("place_params", p);
    let mut enc = ctx.encoder("place");
    ctx.dispatch(
        &mut enc,
        &crate::shaders::FRAMES_PLACE,
        &[("params", &params), ("frame_offsets", &offsets), ("records", &records)],
        p.n_electrons as u64,
    )?;
    let rb = ctx.readback(&mut enc, &records, p.n_electrons as u64 * 16);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}
