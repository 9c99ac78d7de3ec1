//! The generator's CPU path: the kernels' twins (`place`, `accumulate`, `noise`), one frame per
//! task, so that each frame is made, and for `emsim frames` also encoded, while it is in cache.

use std::sync::Mutex;

use rayon::prelude::*;

use super::accumulate::{AccumulateParams, accumulate_cpu};
use super::noise::{NoiseParams, noise_cpu, noise_cpu_u16};
use super::place::{Record, place_cpu};
use super::{Batch, Generator};

/// Per-thread buffers of the CPU path, kept from batch to batch (fresh 1.3 MB buffers for every
/// rayon job would fault in new pages each time).
#[derive(Default)]
pub struct FrameScratch {
    acc: Vec<u32>,
    recs: Vec<Record>,
    frame: Vec<f32>,
    frame_u16: Vec<u16>,
}

/// What a frame's pixels are handed on as: f32 ADU, or u16 for quantized frames.
pub trait FrameValue: Copy + Default + Send + Sync + 'static {
    /// The noise twin that writes this type.
    fn noise(p: &NoiseParams, acc: &[u32], out: &mut [Self]);
    /// This type's frame buffer in a scratch.
    #[doc(hidden)]
    fn buffer(s: &mut FrameScratch) -> &mut Vec<Self>;
}

impl FrameValue for f32 {
    fn noise(p: &NoiseParams, acc: &[u32], out: &mut [f32]) {
        noise_cpu(p, acc, out)
    }
    fn buffer(s: &mut FrameScratch) -> &mut Vec<f32> {
        &mut s.frame
    }
}

impl FrameValue for u16 {
    fn noise(p: &NoiseParams, acc: &[u32], out: &mut [u16]) {
        noise_cpu_u16(p, acc, out)
    }
    fn buffer(s: &mut FrameScratch) -> &mut Vec<u16> {
        &mut s.frame_u16
    }
}

/// A scratch lent from the generator's pool to one rayon job; it goes back when the job drops it.
struct Lease<'p> {
    scratch: FrameScratch,
    pool: &'p Mutex<Vec<FrameScratch>>,
}

impl<'p> Lease<'p> {
    fn new(pool: &'p Mutex<Vec<FrameScratch>>) -> Self {
        let scratch = pool.lock().unwrap().pop().unwrap_or_default();
        Self { scratch, pool }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.lock().unwrap().push(std::mem::take(&mut self.scratch));
    }
}

/// Where each frame's electrons start in a batch's records.
fn offsets(counts: &[u32]) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(counts.len() + 1);
    offsets.push(0);
    for &c in counts {
        offsets.push(offsets.last().unwrap() + c as usize);
    }
    offsets
}

impl Generator<'_> {
    /// The electron records of a batch: one place dispatch per frame (independent, so in
    /// parallel), identical to one for all.
    fn records_cpu(&self, first_frame: u64, counts: &[u32]) -> Vec<Record> {
        (0..counts.len())
            .into_par_iter()
            .flat_map_iter(|f| {
                let p = self.place_params(first_frame + f as u64, 1, counts[f], 0);
                place_cpu(&p, &[0, counts[f]]).into_iter().map(move |mut r| {
                    r[3] = f as u32;
                    r
                })
            })
            .collect()
    }

    /// Frame `f` of a batch into `out`: its records accumulated into the fixed-point `acc`, then
    /// turned into ADU.
    fn frame_cpu<V: FrameValue>(
        &self,
        first_frame: u64,
        records: &[Record],
        f: usize,
        s: &mut FrameScratch,
        out: &mut [V],
    ) {
        let (h, w) = (self.cfg.height, self.cfg.width);
        s.acc.clear();
        s.acc.resize((h * w) as usize, 0);
        s.recs.clear();
        s.recs.extend(records.iter().map(|r| [r[0], r[1], r[2], 0]));
        let p = AccumulateParams {
            n_electrons: records.len() as u32,
            height: h,
            width: w,
            row0: 0,
            band_rows: h,
            ..Default::default()
        };
        accumulate_cpu(&p, &s.recs, &self.packed, &mut s.acc);
        V::noise(&self.noise_params(first_frame + f as u64, 1, 0, h), &s.acc, out);
    }

    /// The CPU path: the batch's frames in one buffer.
    pub(super) fn generate_cpu(&self, first_frame: u64, counts: &[u32]) -> Batch {
        let records = self.records_cpu(first_frame, counts);
        self.frames_cpu(first_frame, counts.to_vec(), records)
    }

    /// The frames of a batch's records (`counts[f]` of them for frame `f`, in frame order), in one
    /// buffer.
    fn frames_cpu(&self, first_frame: u64, counts: Vec<u32>, records: Vec<Record>) -> Batch {
        let frame_px = (self.cfg.height * self.cfg.width) as usize;
        let at = offsets(&counts);
        let mut frames = self.take_buffer(counts.len() * frame_px);
        frames.par_chunks_mut(frame_px).enumerate().for_each_init(
            || Lease::new(&self.scratch),
            |lease, (f, out)| self.frame_cpu(first_frame, &records[at[f]..at[f + 1]], f, &mut lease.scratch, out),
        );
        Batch { first_frame, counts, frames, records }
    }

    /// The CPU path with only the electrons whose incidence point `(x, y)` (pixels, as in the
    /// truth) `keep` accepts: a mask in front of the sensor, such as a knife edge. The electrons
    /// kept, their frames and their records are those [`Generator::generate`] makes, without the
    /// others; `counts` of the batch returned are the electrons kept in each frame.
    pub fn generate_cpu_masked(
        &self,
        first_frame: u64,
        counts: &[u32],
        keep: impl Fn(f32, f32) -> bool + Sync,
    ) -> Batch {
        let lib = self.lib;
        let records: Vec<Record> = self
            .records_cpu(first_frame, counts)
            .into_iter()
            .filter(|r| {
                let e = r[0] as usize;
                keep(r[2] as f32 + lib.incidence_x_px[e], r[1] as f32 + lib.incidence_y_px[e])
            })
            .collect();
        let mut kept = vec![0u32; counts.len()];
        for r in &records {
            kept[r[3] as usize] += 1;
        }
        self.frames_cpu(first_frame, kept, records)
    }

    /// The CPU path with each frame handed to `use_frame(f, frame)` (`f` counted from the batch's
    /// first frame) on the thread that made it, as soon as it is made, instead of kept: what
    /// `use_frame` returns comes back in frame order, beside the batch (whose `frames` is empty).
    /// The frames are the same as [`Generator::generate`]'s, as f32, or as u16 when quantized
    /// (`V = u16` needs `quantize_u16`).
    pub fn generate_cpu_each<V: FrameValue, T: Send>(
        &self,
        first_frame: u64,
        counts: &[u32],
        use_frame: impl Fn(usize, &[V]) -> T + Sync,
    ) -> (Batch, Vec<T>) {
        let frame_px = (self.cfg.height * self.cfg.width) as usize;
        let records = self.records_cpu(first_frame, counts);
        let at = offsets(counts);
        let out = (0..counts.len())
            .into_par_iter()
            .map_init(
                || Lease::new(&self.scratch),
                |lease, f| {
                    let mut frame = std::mem::take(V::buffer(&mut lease.scratch));
                    frame.resize(frame_px, V::default());
                    self.frame_cpu(first_frame, &records[at[f]..at[f + 1]], f, &mut lease.scratch, &mut frame);
                    let t = use_frame(f, &frame);
                    *V::buffer(&mut lease.scratch) = frame;
                    t
                },
            )
            .collect();
        (Batch { first_frame, counts: counts.to_vec(), frames: Vec::new(), records }, out)
    }
}
