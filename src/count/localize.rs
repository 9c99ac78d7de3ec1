//! Kernels `count/args` and `count/localize` (shaders/count/{args,localize}.wgsl): every classical
//! position estimate around each found centre.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::types::{Candidate, Q_SCALE};

/// Mirrors `ArgsParams` in shaders/count/args.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ArgsParams {
    pub capacity: u32,
    pub wg_size: u32,
    pub per_dim: u32,
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<ArgsParams>() == 16);

/// CPU twin of `count/args`: the indirect dispatch arguments for `n` found centres.
pub fn dispatch_args_cpu(p: &ArgsParams, counter: u32) -> [u32; 3] {
    let n = counter.min(p.capacity);
    let (x, y) = crate::gpu::dispatch::workgroup_grid(n as u64, p.wg_size, p.per_dim).expect("fits");
    [x, y, 1]
}

/// Records `count/args` (the workgroups for the first `min(counter[0], capacity)` entries of a
/// list, into `args`) and the indirect dispatch of `kernel` over them with `bindings` (named as for
/// [`crate::gpu::GpuContext::dispatch`]); returns
/// the arguments' parameters (for [`dispatch_args_cpu`]).
pub fn record_indirect(
    ctx: &crate::gpu::GpuContext,
    enc: &mut wgpu::CommandEncoder,
    kernel: &crate::shaders::Kernel,
    capacity: u32,
    counter: &wgpu::Buffer,
    args: &wgpu::Buffer,
    bindings: &[(&str, &wgpu::Buffer)],
) -> crate::Result<ArgsParams> {
    record_indirect_items(ctx, enc, kernel, kernel.workgroup_size, capacity, counter, args, bindings)
}

/// [`record_indirect`] for a kernel whose workgroups take `per_workgroup` entries of the list
/// each (several per invocation).
#[allow(clippy::too_many_arguments)]
pub fn record_indirect_items(
    ctx: &crate::gpu::GpuContext,
    enc: &mut wgpu::CommandEncoder,
    kernel: &crate::shaders::Kernel,
    per_workgroup: u32,
    capacity: u32,
    counter: &wgpu::Buffer,
    args: &wgpu::Buffer,
    bindings: &[(&str, &wgpu::Buffer)],
) -> crate::Result<ArgsParams> {
    let ap = ArgsParams { capacity, wg_size: per_workgroup, per_dim: ctx.workgroups_per_dim(), _pad0: 0 };
    let au = ctx.uniform("args_params", &ap);
    ctx.dispatch(enc, &crate::shaders::COUNT_ARGS, &[("params", &au), ("counter", counter), ("args", args)], 1)?;
    ctx.dispatch_indirect(enc, kernel, bindings, args)?;
    Ok(ap)
}

/// Mirrors `LocalizeParams` in shaders/count/localize.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LocalizeParams {
    pub height: u32,
    pub width: u32,
    pub capacity: u32,
    pub centroid_thr_q: i32,
}
const _: () = assert!(std::mem::size_of::<LocalizeParams>() == 16);

/// Every method's estimate for one centre. Keep in sync with `Localized` in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct Localized {
    /// (x, y) in pixels for `Method::ALL` order: max, c3x3, c5x5, c3x3t, c5x5t.
    pub xy: [[f32; 2]; 5],
    pub charge3_e: f32,
    pub charge5_e: f32,
}
const _: () = assert!(std::mem::size_of::<Localized>() == 48);

#[derive(Clone, Copy, Default)]
struct Moments {
    sx: i32,
    sy: i32,
    sq: i32,
}

impl Moments {
    fn add(&mut self, v: i32, dc: i32, dr: i32) {
        self.sx += v * dc;
        self.sy += v * dr;
        self.sq += v;
    }

    fn centroid(&self, r: u32, c: u32) -> [f32; 2] {
        let (x0, y0) = (c as f32 + 0.5, r as f32 + 0.5);
        if self.sq <= 0 {
            return [x0, y0];
        }
        [x0 + ratio(self.sx, self.sq), y0 + ratio(self.sy, self.sq)]
    }
}

/// `a / b` (b > 0) exactly as the kernel computes it, bit for bit on every device: the integer
/// part and 24 fraction bits (truncated) by integer division, then `int + frac * 2^-24` with
/// correctly rounded f32 operations only. Vulkan allows f32 `/` an error of 2.5 ulp and NVIDIA's
/// driver uses it, so a float division made the GPU and its twin differ in the last bit. The
/// truncation costs at most 2^-24 px.
pub fn ratio(a: i32, b: i32) -> f32 {
    debug_assert!(b > 0);
    let (n, d) = (a.unsigned_abs(), b as u32);
    let (whole, rem) = (n / d, n % d);
    let frac = frac24(rem, d); // < 2^24: exact in f32
    let v = whole as f32 + frac as f32 * (1.0 / 16_777_216.0);
    if a < 0 { -v } else { v }
}

/// floor(rem * 2^24 / d) for rem < d: an f64 quotient corrected by one step each way with exact
/// integer products (a u64 division costs several times more; the CPU path runs 8 per electron).
#[inline]
fn frac24(rem: u32, d: u32) -> u64 {
    let num = (rem as u64) << 24;
    let d = d as u64;
    let mut f = (num as f64 / d as f64) as u64; // within one of the floor
    if f * d > num {
        f -= 1;
    } else if (f + 1) * d <= num {
        f += 1;
    }
    f
}

/// The running sums of every method over the 5x5 window around a centre, fed pixel by pixel in
/// row-major order (the kernel's loop body).
struct Window {
    m3: Moments,
    m5: Moments,
    m3t: Moments,
    m5t: Moments,
    /// The brightest pixel of the 3x3 (row-major scan: ties keep the first) and its position.
    best: i32,
    best_r: i32,
    best_c: i32,
}

impl Window {
    fn new(r: i32, c: i32) -> Self {
        let z = Moments::default();
        Self { m3: z, m5: z, m3t: z, m5t: z, best: i32::MIN + 1, best_r: r, best_c: c }
    }

    /// Pixel value `v` at offset (dr, dc) from the centre, i.e. at (rr, cc).
    #[inline(always)]
    fn add(&mut self, v: i32, dr: i32, dc: i32, rr: i32, cc: i32, centroid_thr_q: i32) {
        let above = v > centroid_thr_q;
        self.m5.add(v, dc, dr);
        if above {
            self.m5t.add(v, dc, dr);
        }
        if dr.abs() <= 1 && dc.abs() <= 1 {
            self.m3.add(v, dc, dr);
            if above {
                self.m3t.add(v, dc, dr);
            }
            if v > self.best {
                self.best = v;
                self.best_r = rr;
                self.best_c = cc;
            }
        }
    }

    fn finish(&self, r: u32, c: u32) -> Localized {
        Localized {
            xy: [
                [self.best_c as f32 + 0.5, self.best_r as f32 + 0.5],
                self.m3.centroid(r, c),
                self.m5.centroid(r, c),
                self.m3t.centroid(r, c),
                self.m5t.centroid(r, c),
            ],
            charge3_e: self.m3.sq as f32 * (1.0 / Q_SCALE),
            charge5_e: self.m5.sq as f32 * (1.0 / Q_SCALE),
        }
    }
}

/// All methods around centre (r, c) of one fixed-point frame `q` (H x W): the kernel's body.
pub fn localize_one(q: &[i32], height: u32, width: u32, r: u32, c: u32, centroid_thr_q: i32) -> Localized {
    let (h, w, ri, ci) = (height as i32, width as i32, r as i32, c as i32);
    let mut win = Window::new(ri, ci);
    for dr in -2..=2 {
        let rr = ri + dr;
        if rr < 0 || rr >= h {
            continue;
        }
        for dc in -2..=2 {
            let cc = ci + dc;
            if cc < 0 || cc >= w {
                continue;
            }
            win.add(q[(rr * w + cc) as usize], dr, dc, rr, cc, centroid_thr_q);
        }
    }
    win.finish(r, c)
}

/// [`localize_one`] for the CPU counting path: the same sums in the same order, without the
/// bounds tests for a centre at least 2 pixels from every edge (the usual case); nearer the edge,
/// `localize_one` itself. Tested equal to it.
pub fn localize_fast(q: &[i32], height: u32, width: u32, r: u32, c: u32, centroid_thr_q: i32) -> Localized {
    let (h, w, ri, ci) = (height as usize, width as usize, r as usize, c as usize);
    if ri < 2 || ci < 2 || ri + 2 >= h || ci + 2 >= w {
        return localize_one(q, height, width, r, c, centroid_thr_q);
    }
    let mut win = Window::new(r as i32, c as i32);
    for (k, row) in q[(ri - 2) * w..(ri + 3) * w].chunks_exact(w).enumerate() {
        let dr = k as i32 - 2;
        for (j, &v) in row[ci - 2..ci + 3].iter().enumerate() {
            let dc = j as i32 - 2;
            win.add(v, dr, dc, r as i32 + dr, c as i32 + dc, centroid_thr_q);
        }
    }
    win.finish(r, c)
}

/// CPU twin of `count/localize` over a candidate list (frames of `q` in batch order).
pub fn localize_cpu(p: &LocalizeParams, q: &[i32], cands: &[Candidate]) -> Vec<Localized> {
    let fp = (p.height * p.width) as usize;
    cands
        .par_iter()
        .map(|cand| {
            let f = cand[0] as usize;
            let (r, c) = (cand[1] / p.width, cand[1] % p.width);
            localize_one(&q[f * fp..(f + 1) * fp], p.height, p.width, r, c, p.centroid_thr_q)
        })
        .collect()
}

/// Runs `count/args` + `count/localize` alone on the GPU for a given candidate list.
#[cfg(feature = "testing")]
pub fn localize_gpu(
    ctx: &crate::gpu::GpuContext,
    p: &LocalizeParams,
    q: &[i32],
    cands: &[Candidate],
) -> crate::Result<Vec<Localized>> {
    let qb = ctx.upload("q", q)?;
    let counter = ctx.upload("counter", &[cands.len() as u32])?;
    let cb = ctx.upload("cands", if cands.is_empty() { &[[0u32; 4]][..] } else { cands })?;
    let garbage = Localized { xy: [[-12345.0; 2]; 5], charge3_e: -1.0, charge5_e: -1.0 };
    let out = ctx.upload("localized", &vec![garbage; cands.len().max(1)])?;
    let args = ctx.storage("args", 12)?;
    let lu = ctx.uniform("localize_params", p);
    let mut enc = ctx.encoder("localize");
    let localize = &crate::shaders::COUNT_LOCALIZE;
    let ap = record_indirect(
        ctx,
        &mut enc,
        localize,
        p.capacity,
        &counter,
        &args,
        &[("lparams", &lu), ("q", &qb), ("counter", &counter), ("cands", &cb), ("out", &out)],
    )?;
    let ra = ctx.readback(&mut enc, &args, 12);
    let ro = ctx.readback(&mut enc, &out, cands.len().max(1) as u64 * 48);
    ctx.submit_and_wait(enc)?;
    let got_args: Vec<u32> = ra.read(ctx)?;
    let want = dispatch_args_cpu(&ap, cands.len() as u32);
    if got_args[..] != want[..] {
        return Err(crate::Error::Other(format!("count/args gave {got_args:?}, its twin {want:?}")));
    }
    let mut v: Vec<Localized> = ro.read(ctx)?;
    v.truncate(cands.len());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::ratio;

    /// `ratio` is `a / b` within the truncation (2^-24) plus one rounding of the sum, for the
    /// moments a centroid sees, signs and extremes included.
    #[test]
    fn ratio_is_the_quotient() {
        let cases = [(0, 1), (1, 3), (-1, 3), (2, 3), (-7, 16), (12345, 678), (-2 * 9999, 9999), (i32::MIN, 1)];
        for (a, b) in cases.into_iter().chain((1..2000).map(|k| (k * 7919 % 4001 - 2000, k))) {
            let exact = a as f64 / b as f64;
            let got = ratio(a, b) as f64;
            let tol = 2f64.powi(-24) + exact.abs() * f32::EPSILON as f64;
            assert!((got - exact).abs() <= tol, "{a} / {b}: {got} vs {exact}");
        }
        assert_eq!(ratio(3, 2), 1.5);
        assert_eq!(ratio(-5, 4), -1.25);
    }

    /// `localize_fast` equals `localize_one` everywhere: interior centres, edges and corners, on
    /// random fixed-point frames with negative values (and the thresholded methods' cut).
    #[test]
    fn localize_fast_equals_twin() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        );
        for (h, w) in [(9u32, 11u32), (4, 5), (40, 33)] {
            let q: Vec<i32> = (0..h * w).map(|_| rng.random_range(-2000..40_000)).collect();
            for r in 0..h {
                for c in 0..w {
                    let a = super::localize_fast(&q, h, w, r, c, 640);
                    let b = super::localize_one(&q, h, w, r, c, 640);
                    assert_eq!(
                        (a.xy, a.charge3_e, a.charge5_e),
                        (b.xy, b.charge3_e, b.charge5_e),
                        "({r}, {c}) of {h}x{w}"
                    );
                }
            }
        }
    }

    /// The fast fraction equals the integer long division the kernel does, on fresh random input
    /// across the whole range (d up to 2^31 - 1).
    #[test]
    fn frac24_is_the_floor() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        );
        for k in 0..200_000u32 {
            let d: u32 = if k % 2 == 0 { rng.random_range(1..=i32::MAX as u32) } else { rng.random_range(1..5000) };
            let rem = rng.random_range(0..d);
            assert_eq!(super::frac24(rem, d), ((rem as u64) << 24) / d as u64, "rem {rem} d {d}");
        }
        for d in [1u32, 2, 3, 7, 16, 1 << 20, i32::MAX as u32] {
            for rem in [0, d / 2, d - 1] {
                assert_eq!(super::frac24(rem, d), ((rem as u64) << 24) / d as u64, "rem {rem} d {d}");
            }
        }
    }
}
