//! Kernel `frames/accumulate` (shaders/frames/accumulate.wgsl): adds each placed electron's event
//! pixels into the frame, in fixed point (`charge_e * FIXED_SCALE` as u32), with integer atomics.

use bytemuck::{Pod, Zeroable};

use super::place::Record;

/// Fixed-point scale of accumulated charge: 1/256 electron resolution, up to 16.7 million
/// electrons per pixel per frame. Keep in sync with `FIXED_SCALE_INV` in shaders/frames/noise.wgsl.
pub const FIXED_SCALE: f32 = 256.0;

/// Mirrors `AccumulateParams` in shaders/frames/accumulate.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AccumulateParams {
    pub n_electrons: u32,
    pub height: u32,
    pub width: u32,
    pub row0: u32,
    pub band_rows: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<AccumulateParams>() == 32);

/// An event library as the kernels read it: CSR offsets and packed pixels
/// `[dx as i16 | (dy as i16) << 16, round(charge_e * FIXED_SCALE)]`.
#[derive(Clone, Debug)]
pub struct PackedLibrary {
    pub offsets: Vec<u32>,
    pub pixels: Vec<[u32; 2]>,
}

impl PackedLibrary {
    pub fn new(lib: &crate::io::library::EventLibrary) -> Self {
        let offsets = lib.offsets.iter().map(|&o| o as u32).collect();
        let pixels = (0..lib.charge_e.len())
            .map(|j| [pack_offset(lib.dx_px[j], lib.dy_px[j]), to_fixed(lib.charge_e[j])])
            .collect();
        Self { offsets, pixels }
    }

    pub fn n_events(&self) -> u32 {
        self.offsets.len() as u32 - 1
    }
}

pub fn pack_offset(dx: i32, dy: i32) -> u32 {
    (dx as i16 as u16 as u32) | ((dy as i16 as u16 as u32) << 16)
}

pub fn unpack_offset(v: u32) -> (i32, i32) {
    ((v & 0xffff) as u16 as i16 as i32, (v >> 16) as u16 as i16 as i32)
}

/// Charge in electrons to fixed point (round to nearest).
pub fn to_fixed(charge_e: f32) -> u32 {
    (charge_e as f64 * FIXED_SCALE as f64).round() as u32
}

/// How many electrons ahead [`accumulate_cpu`] fetches events.
const AHEAD: usize = 8;

/// A hint to bring the cache line of `x` in (nothing where there is no such instruction).
#[inline(always)]
fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; `x` is a valid reference (SSE is baseline on x86_64).
    unsafe {
        std::arch::x86_64::_mm_prefetch(x as *const T as *const i8, std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// CPU twin of `frames/accumulate`: adds `records` into `acc` (`n_frames * band_rows * width`
/// u32, row band `[row0, row0 + band_rows)`), with wrapping integer adds like the atomics.
pub fn accumulate_cpu(p: &AccumulateParams, records: &[Record], lib: &PackedLibrary, acc: &mut [u32]) {
    let band = (p.band_rows * p.width) as usize;
    let (lo, hi) = (p.row0 as i32, (p.row0 + p.band_rows) as i32);
    let records = &records[..p.n_electrons as usize];
    for (i, rec) in records.iter().enumerate() {
        // Each electron reads a random event of a library larger than the core's cache: ask for
        // the event `AHEAD` electrons on now, so that its pixels are there when its turn comes.
        if let Some(next) = records.get(i + AHEAD) {
            let start = lib.offsets[next[0] as usize] as usize;
            let end = lib.offsets[next[0] as usize + 1] as usize;
            for j in (start..end).step_by(8) {
                prefetch(&lib.pixels[j]);
            }
        }
        let [event, row, col, f] = *rec;
        let base = f as usize * band;
        for px in &lib.pixels[lib.offsets[event as usize] as usize..lib.offsets[event as usize + 1] as usize] {
            let (dx, dy) = unpack_offset(px[0]);
            let (r, c) = (row as i32 + dy, col as i32 + dx);
            if r >= lo && r < hi && c >= 0 && c < p.width as i32 {
                let idx = base + (r - lo) as usize * p.width as usize + c as usize;
                acc[idx] = acc[idx].wrapping_add(px[1]);
            }
        }
    }
}

/// Runs `frames/accumulate` alone on the GPU, adding into a copy of `acc`.
#[cfg(feature = "testing")]
pub fn accumulate_gpu(
    ctx: &crate::gpu::GpuContext,
    p: &AccumulateParams,
    records: &[Record],
    lib: &PackedLibrary,
    acc: &[u32],
) -> crate::Result<Vec<u32>> {
    let rec = ctx.upload("records", records)?;
    let offs = ctx.upload("event_offsets", &lib.offsets)?;
    let pix = ctx.upload("event_pixels", &lib.pixels)?;
    let acc_buf = ctx.upload("acc", acc)?;
    let params = ctx.uniform("accumulate_params", p);
    let mut enc = ctx.encoder("accumulate");
    ctx.dispatch(
        &mut enc,
        &crate::shaders::FRAMES_ACCUMULATE,
        &[("params", &params), ("records", &rec), ("event_offsets", &offs), ("event_pixels", &pix), ("acc", &acc_buf)],
        p.n_electrons as u64,
    )?;
    let rb = ctx.readback(&mut enc, &acc_buf, acc.len() as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}
