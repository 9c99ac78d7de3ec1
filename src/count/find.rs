//! Kernels `count/find`, `count/find_tile` and `count/suppress` (shaders/count/find.wgsl,
//! find_tile.wgsl, suppress.wgsl): candidate centres, their suppression and their stream
//! compaction, in two passes (the second also localizes the kept centres).

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// Mirrors `FindParams` in shaders/count/find_common.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FindParams {
    pub n_frames: u32,
    pub height: u32,
    pub width: u32,
    pub thr_q: i32,
    /// 0: no X-ray rejection.
    pub xray_q: i32,
    pub suppress_px: u32,
    pub capacity: u32,
    /// [`FINDER_SUM3`] or [`FINDER_PIXEL`].
    pub finder: u32,
    /// Pixel finder: a faint centre's pixel must exceed this (q units)...
    pub faint_q: i32,
    /// ...and its 3x3 sum this.
    pub faint_sum_q: i32,
    pub _pad0: u32,
    pub _pad1: u32,
}
const _: () = assert!(std::mem::size_of::<FindParams>() == 48);

/// `FindParams::finder`: centres are local maxima of the 3x3 sums (the EMSim notes' search).
pub const FINDER_SUM3: u32 = 0;
/// `FindParams::finder`: centres are local maxima of the pixel values (as stempy), plus faint ones.
pub const FINDER_PIXEL: u32 = 1;

pub use super::types::Candidate;

/// Most centres a frame can hold: local maxima (of the 3x3 sums or of the pixels) are at least 2
/// pixels apart, so at most one per 2x2 block. Buffers of this size never overflow.
pub fn max_candidates(height: u32, width: u32) -> u64 {
    height.div_ceil(2) as u64 * width.div_ceil(2) as u64
}

#[inline(always)]
fn beats(sa: i32, ia: u32, sb: i32, ib: u32) -> bool {
    sa > sb || (sa == sb && ia < ib)
}

/// The values whose local maxima are centres: the 3x3 sums, or the pixels themselves.
#[inline(always)]
fn keys<'a>(p: &FindParams, q: &'a [i32], s: &'a [i32]) -> &'a [i32] {
    if p.finder == FINDER_PIXEL { q } else { s }
}

/// Whether a centre at interior-or-edge pixel (r, c), already a local maximum, passes the
/// thresholds, and how: `Some(false)` a plain centre, `Some(true)` a faint one (pixel finder:
/// below the background threshold, found through its 3x3 sum; only these are suppressed).
/// The 3x3 sum finder: some pixel of the 3x3 above the background threshold and none above the
/// X-ray threshold. The pixel finder: the pixel not above the X-ray threshold, and either the
/// pixel and its 3x3 sum both above the background threshold, or the pixel above `faint_q` and
/// its 3x3 sum above `faint_sum_q`.
#[inline]
fn classify(p: &FindParams, q: &[i32], s: &[i32], r: i32, c: i32) -> Option<bool> {
    let (h, w) = (p.height as i32, p.width as i32);
    let me = (r * w + c) as usize;
    let xray = |v: i32| p.xray_q > 0 && v > p.xray_q;
    if p.finder == FINDER_PIXEL {
        let (m, sm) = (q[me], s[me]);
        if xray(m) {
            None
        } else if m > p.thr_q && sm > p.thr_q {
            Some(false)
        } else if m > p.faint_q && sm > p.faint_sum_q {
            Some(true)
        } else {
            None
        }
    } else {
        let mut qmax = i32::MIN + 1;
        for rr in (r - 1).max(0)..=(r + 1).min(h - 1) {
            for cc in (c - 1).max(0)..=(c + 1).min(w - 1) {
                qmax = qmax.max(q[(rr * w + cc) as usize]);
            }
        }
        (qmax > p.thr_q && !xray(qmax)).then_some(false)
    }
}

/// The kernel's candidate test for pixel (r, c) of one frame: `None`, or `Some(faint)` (see
/// `classify`).
#[inline]
pub fn candidate(p: &FindParams, q: &[i32], s: &[i32], r: i32, c: i32) -> Option<bool> {
    let (h, w) = (p.height as i32, p.width as i32);
    let k = keys(p, q, s);
    let me = (r * w + c) as u32;
    let km = k[me as usize];
    // Local maximum first (cheap rejections), then the thresholds.
    for dr in -1..=1 {
        let rr = r + dr;
        if rr < 0 || rr >= h {
            continue;
        }
        for dc in -1..=1 {
            let cc = c + dc;
            if cc < 0 || cc >= w {
                continue;
            }
            let n = (rr * w + cc) as u32;
            if n != me && !beats(km, me, k[n as usize], n) {
                return None;
            }
        }
    }
    classify(p, q, s, r, c)
}

/// Whether pixel (r, c) of one frame is a candidate centre (before suppression).
pub fn is_candidate(p: &FindParams, q: &[i32], s: &[i32], r: i32, c: i32) -> bool {
    candidate(p, q, s, r, c).is_some()
}

/// Whether candidate (r, c) survives suppression: with the 3x3 sum finder, no stronger candidate
/// within `suppress_px`; with the pixel finder, plain centres always survive and faint ones
/// when no candidate with a larger pixel value lies within `suppress_px`.
fn survives(p: &FindParams, q: &[i32], s: &[i32], r: i32, c: i32, faint: bool) -> bool {
    if p.finder == FINDER_PIXEL && !faint {
        return true;
    }
    let (h, w) = (p.height as i32, p.width as i32);
    let k = keys(p, q, s);
    let me = (r * w + c) as u32;
    let km = k[me as usize];
    let rad = p.suppress_px as i32;
    for rr in (r - rad).max(0)..=(r + rad).min(h - 1) {
        for cc in (c - rad).max(0)..=(c + rad).min(w - 1) {
            let n = (rr * w + cc) as u32;
            if n != me && beats(k[n as usize], n, km, me) && is_candidate(p, q, s, rr, cc) {
                return false;
            }
        }
    }
    true
}

/// The centres of one frame, in flat-index order: the plain version, [`candidate`] and
/// `survives` at every pixel. Reference for [`find_frame`].
pub fn find_frame_plain(p: &FindParams, q: &[i32], s: &[i32], frame: u32, out: &mut Vec<Candidate>) {
    let (h, w) = (p.height as i32, p.width as i32);
    for r in 0..h {
        for c in 0..w {
            if let Some(faint) = candidate(p, q, s, r, c)
                && survives(p, q, s, r, c, faint)
            {
                let i = (r * w + c) as usize;
                out.push([frame, i as u32, s[i] as u32, 0]);
            }
        }
    }
}

/// The centres of one frame, in flat-index order; same result as [`find_frame_plain`]. Interior
/// rows first get a branch-free local-maximum mask (the tie rule makes it: strictly above the
/// four neighbours with a lower index, at least equal to the four with a higher one), which the
/// compiler vectorizes; only the few local maxima go through the threshold and suppression tests.
pub fn find_frame(p: &FindParams, q: &[i32], s: &[i32], frame: u32, out: &mut Vec<Candidate>) {
    let (h, w) = (p.height as usize, p.width as usize);
    if h < 3 || w < 3 {
        return find_frame_plain(p, q, s, frame, out);
    }
    let k = keys(p, q, s);
    // Pixel finder: a centre's own value passes the lower of its two thresholds; tested in the
    // mask too, since noise makes a local maximum of about one pixel in nine.
    let floor = if p.finder == FINDER_PIXEL { p.thr_q.min(p.faint_q) } else { i32::MIN };
    let mut mask = vec![0u8; w];
    for r in 0..h {
        let interior = r >= 1 && r + 1 < h;
        if interior {
            local_max_row(&k[(r - 1) * w..(r + 2) * w], w, floor, &mut mask);
            // The row's first and last pixels touch the frame edge: the plain test.
            mask[0] = 0;
            mask[w - 1] = 0;
        }
        let mut c = 0;
        while c < w {
            let edge = !interior || c == 0 || c == w - 1;
            // interior: skip 8 columns at a time where the mask is all zero
            if !edge && c + 8 < w && u64::from_ne_bytes(mask[c..c + 8].try_into().unwrap()) == 0 {
                c += 8;
                continue;
            }
            let found = if edge {
                candidate(p, q, s, r as i32, c as i32)
            } else if mask[c] != 0 {
                // the mask already is the local-maximum test: only the thresholds remain
                classify(p, q, s, r as i32, c as i32)
            } else {
                None
            };
            if let Some(faint) = found
                && survives(p, q, s, r as i32, c as i32, faint)
            {
                let i = r * w + c;
                out.push([frame, i as u32, s[i] as u32, 0]);
            }
            c += 1;
        }
    }
}

/// mask[c] = 1 where pixel c of the middle row of `rows` (3 rows of width w) is a local maximum
/// under the tie rule and above `floor`; columns 1..w-1 only.
fn local_max_row(rows: &[i32], w: usize, floor: i32, mask: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { local_max_row_avx2(rows, w, floor, mask) };
        }
    }
    local_max_row_generic(rows, w, floor, mask)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn local_max_row_avx2(rows: &[i32], w: usize, floor: i32, mask: &mut [u8]) {
    local_max_row_generic(rows, w, floor, mask)
}

#[inline(always)]
fn local_max_row_generic(rows: &[i32], w: usize, floor: i32, mask: &mut [u8]) {
    let (up, mid, dn) = (&rows[..w], &rows[w..2 * w], &rows[2 * w..3 * w]);
    for c in 1..w - 1 {
        let v = mid[c];
        let m = (v > floor)
            & (v > up[c - 1])
            & (v > up[c])
            & (v > up[c + 1])
            & (v > mid[c - 1])
            & (v >= mid[c + 1])
            & (v >= dn[c - 1])
            & (v >= dn[c])
            & (v >= dn[c + 1]);
        mask[c] = m as u8;
    }
}

/// CPU twin of `count/find`: every frame's centres, sorted by (frame, pixel), which is the order
/// the host gives the GPU's compacted list after sorting it.
pub fn find_cpu(p: &FindParams, q: &[i32], s: &[i32]) -> Vec<Candidate> {
    let fp = (p.height * p.width) as usize;
    (0..p.n_frames as usize)
        .into_par_iter()
        .flat_map_iter(|f| {
            let mut v = Vec::new();
            find_frame(p, &q[f * fp..(f + 1) * fp], &s[f * fp..(f + 1) * fp], f as u32, &mut v);
            v
        })
        .collect()
}

/// Sorts a compacted candidate list into the canonical (frame, pixel) order.
pub fn sort_candidates(c: &mut [Candidate]) {
    c.sort_unstable_by_key(|x| (x[0], x[1]));
}

/// The device buffers of the two finding passes, besides the counter and the list of kept centres.
pub struct FindBuffers {
    /// [0]: candidates before suppression.
    pre_counter: wgpu::Buffer,
    /// The candidates before suppression, (frame, pixel, s, 0).
    pre: wgpu::Buffer,
    /// One bit per pixel of the batch: a candidate.
    marks: wgpu::Buffer,
    /// `count/suppress`'s indirect dispatch arguments.
    args: wgpu::Buffer,
}

impl FindBuffers {
    /// For batches of up to `n_frames` frames of `height x width` and lists of `capacity` entries.
    pub fn new(
        ctx: &crate::gpu::GpuContext,
        n_frames: u32,
        height: u32,
        width: u32,
        capacity: u64,
    ) -> crate::Result<Self> {
        let px = n_frames as u64 * height as u64 * width as u64;
        Ok(Self {
            pre_counter: ctx.storage("find_pre_counter", 4)?,
            pre: ctx.storage("find_pre", capacity * 16)?,
            marks: ctx.storage("find_marks", px.div_ceil(32) * 4)?,
            args: ctx.storage("suppress_args", 12)?,
        })
    }
}

/// What the first finding pass reads.
pub enum FindInput<'b> {
    /// The run layouts: q from `count/calibrate` and its 3x3 sums from `count/sum3`.
    Sums { q: &'b wgpu::Buffer, s: &'b wgpu::Buffer },
    /// The tile layout: raw frames, which `count/find_tile` (`_u16` for u16 frames packed two per
    /// word) calibrates itself into `q` (uniform `cparams`: `count::calibrate::CalibrateParams`).
    Raw {
        adu: &'b wgpu::Buffer,
        u16: bool,
        dark: &'b wgpu::Buffer,
        gain_map: &'b wgpu::Buffer,
        cparams: &'b wgpu::Buffer,
        q: &'b wgpu::Buffer,
    },
}

impl FindInput<'_> {
    fn q(&self) -> &wgpu::Buffer {
        match self {
            Self::Sums { q, .. } | Self::Raw { q, .. } => q,
        }
    }
}

/// Records both passes of finding for the `p.n_frames` frames of `input`: `count/find` in
/// `layout` (or `count/find_tile`), then `count/suppress` over its list, which appends the kept
/// centres to `cands` (count in `counter[0]`) and their localizations (uniform `lparams`:
/// `LocalizeParams`) to `out`.
#[allow(clippy::too_many_arguments)]
pub fn record_find(
    ctx: &crate::gpu::GpuContext,
    enc: &mut wgpu::CommandEncoder,
    layout: super::CountLayout,
    p: &FindParams,
    input: &FindInput,
    fb: &FindBuffers,
    counter: &wgpu::Buffer,
    cands: &wgpu::Buffer,
    lparams: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> crate::Result<()> {
    let fu = ctx.uniform("find_params", p);
    let mark_words = (p.n_frames as u64 * p.height as u64 * p.width as u64).div_ceil(32);
    enc.clear_buffer(&fb.marks, 0, Some((mark_words * 4).max(4)));
    enc.clear_buffer(&fb.pre_counter, 0, Some(4));
    let threads = layout.threads(p.n_frames, p.height, p.width);
    match *input {
        FindInput::Sums { q, s } => {
            let kernel = layout.find().ok_or_else(|| {
                crate::Error::Other(format!("the {} layout finds on raw frames, not on sums", layout.name()))
            })?;
            ctx.dispatch(
                enc,
                kernel,
                &[
                    ("params", &fu),
                    ("q", q),
                    ("s", s),
                    ("pre_counter", &fb.pre_counter),
                    ("pre", &fb.pre),
                    ("marks", &fb.marks),
                ],
                threads,
            )?;
        }
        FindInput::Raw { adu, u16, dark, gain_map, cparams, q } => {
            let kernel = if u16 { &crate::shaders::COUNT_FIND_TILE_U16 } else { &crate::shaders::COUNT_FIND_TILE };
            let bindings = [
                ("params", &fu),
                ("adu", adu),
                ("dark", dark),
                ("gain_map", gain_map),
                ("q", q),
                ("pre_counter", &fb.pre_counter),
                ("pre", &fb.pre),
                ("marks", &fb.marks),
                ("cparams", cparams),
            ];
            ctx.dispatch(enc, kernel, &bindings, threads)?;
        }
    }
    super::localize::record_indirect(
        ctx,
        enc,
        &crate::shaders::COUNT_SUPPRESS,
        p.capacity,
        &fb.pre_counter,
        &fb.args,
        &[
            ("params", &fu),
            ("q", input.q()),
            ("marks", &fb.marks),
            ("pre_counter", &fb.pre_counter),
            ("pre", &fb.pre),
            ("counter", counter),
            ("cands", cands),
            ("lparams", lparams),
            ("out", out),
        ],
    )?;
    Ok(())
}

/// The buffers of both finding passes run alone (tests): the kept centres' `counter` and list
/// `cands` (filled with 0xdeadbeef before), and what only has to outlive the submission.
#[cfg(feature = "testing")]
pub(crate) struct FindAlone {
    pub counter: wgpu::Buffer,
    pub cands: wgpu::Buffer,
    _keep: (wgpu::Buffer, wgpu::Buffer, FindBuffers),
}

/// Records both finding passes alone for `input` into `enc`, with fresh buffers for the lists,
/// the localizations (threshold 0) and the passes' scratch.
#[cfg(feature = "testing")]
pub(crate) fn record_find_alone(
    ctx: &crate::gpu::GpuContext,
    enc: &mut wgpu::CommandEncoder,
    layout: super::CountLayout,
    p: &FindParams,
    input: &FindInput,
) -> crate::Result<FindAlone> {
    let counter = ctx.upload("counter", &[0u32])?;
    let cands = ctx.upload("cands", &vec![[0xdead_beefu32; 4]; p.capacity.max(1) as usize])?;
    let out = ctx.storage("localized", p.capacity.max(1) as u64 * 48)?;
    let lp =
        super::localize::LocalizeParams { height: p.height, width: p.width, capacity: p.capacity, centroid_thr_q: 0 };
    let lu = ctx.uniform("localize_params", &lp);
    let fb = FindBuffers::new(ctx, p.n_frames, p.height, p.width, p.capacity as u64)?;
    record_find(ctx, enc, layout, p, input, &fb, &counter, &cands, &lu, &out)?;
    Ok(FindAlone { counter, cands, _keep: (out, lu, fb) })
}

/// Runs both finding passes alone on the GPU, `count/find` in the given layout, on the fixed-point
/// frames `q` and their sums `s` (the tile layout gets `q` as raw f32 frames with a calibration
/// that gives them back exactly: offset 0, gain 1/16 ADU per electron, so |q| <= 2^20 is
/// required); returns the sorted list and the raw counter value.
#[cfg(feature = "testing")]
pub fn find_gpu(
    ctx: &crate::gpu::GpuContext,
    layout: super::CountLayout,
    p: &FindParams,
    q: &[i32],
    s: &[i32],
) -> crate::Result<(Vec<Candidate>, u32)> {
    let qb = ctx.upload("q", q)?;
    let sb = ctx.upload("s", s)?;
    let raw: Vec<f32>;
    let (adu, dummy, cu);
    let input = if layout.find().is_some() {
        FindInput::Sums { q: &qb, s: &sb }
    } else {
        assert!(q.iter().all(|v| v.unsigned_abs() <= 1 << 20), "find_gpu: |q| > 2^20 cannot pass the calibration");
        raw = q.iter().map(|&v| v as f32).collect();
        adu = ctx.upload("adu", &raw)?;
        dummy = ctx.storage("dark", 4)?;
        let cp = super::calibrate::CalibrateParams {
            n_values: p.n_frames * p.height * p.width,
            frame_px: p.height * p.width,
            inv_gain: 1.0 / super::calibrate::Q_SCALE, // q = round(16 * adu / 16) = adu, exactly
            ..Default::default()
        };
        cu = ctx.uniform("calibrate_params", &cp);
        FindInput::Raw { adu: &adu, u16: false, dark: &dummy, gain_map: &dummy, cparams: &cu, q: &qb }
    };
    let mut enc = ctx.encoder("find");
    let alone = record_find_alone(ctx, &mut enc, layout, p, &input)?;
    let rc = ctx.readback(&mut enc, &alone.counter, 4);
    let rl = ctx.readback(&mut enc, &alone.cands, p.capacity.max(1) as u64 * 16);
    ctx.submit_and_wait(enc)?;
    let count = rc.read::<u32>(ctx)?[0];
    let mut list: Vec<Candidate> = rl.read(ctx)?;
    list.truncate(count.min(p.capacity) as usize);
    sort_candidates(&mut list);
    Ok((list, count))
}

/// Runs `count/find_tile` (the tile layout's fused calibration and finding) on the frames of
/// `height x width` in `frames` (f32, or u16 uploaded two per word) with a threshold no pixel
/// passes, and reads back the `q` it writes (tests: its calibration against the twin).
#[cfg(feature = "testing")]
pub fn calibrate_gpu_tiles(
    ctx: &crate::gpu::GpuContext,
    p: &super::calibrate::CalibrateParams,
    height: u32,
    width: u32,
    frames: super::types::HostAdu,
    dark: &[f32],
    gain_map: &[f32],
) -> crate::Result<Vec<i32>> {
    let (a, u16) = match frames {
        super::types::HostAdu::F32(adu) => (ctx.upload("adu", adu)?, false),
        super::types::HostAdu::U16(adu) => (ctx.upload("adu_u16", &super::calibrate::u16_words(adu))?, true),
    };
    let d = ctx.upload("dark", if dark.is_empty() { &[0f32][..] } else { dark })?;
    let g = ctx.upload("gain_map", if gain_map.is_empty() { &[1f32][..] } else { gain_map })?;
    let q = ctx.upload("q", &vec![-12345i32; p.n_values as usize])?;
    let cu = ctx.uniform("calibrate_params", p);
    let fp = FindParams {
        n_frames: p.n_values / (height * width),
        height,
        width,
        thr_q: i32::MAX,
        xray_q: 0,
        suppress_px: 1,
        capacity: 1,
        ..Default::default()
    };
    let input = FindInput::Raw { adu: &a, u16, dark: &d, gain_map: &g, cparams: &cu, q: &q };
    let mut enc = ctx.encoder("find_tile calibration");
    let _alone = record_find_alone(ctx, &mut enc, super::CountLayout::Tiles, &fp, &input)?;
    let rb = ctx.readback(&mut enc, &q, p.n_values as u64 * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The masked (vectorized) finder equals the plain one, plateaus (ties) included.
    #[test]
    fn fast_finder_equals_plain() {
        let mut x: u32 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut total = 0;
        for &(h, w, range) in &[(3u32, 3u32, 3i32), (7, 40, 2), (33, 65, 5), (64, 64, 1000)] {
            let q: Vec<i32> = (0..h * w).map(|_| (next() % range as u32) as i32).collect();
            let mut s = vec![0; q.len()];
            crate::count::sum3::sum3_cpu(
                &crate::count::sum3::Sum3Params { n_frames: 1, height: h, width: w, _pad0: 0 },
                &q,
                &mut s,
            );
            for finder in [FINDER_SUM3, FINDER_PIXEL] {
                for (suppress_px, xray_q) in [(0, 0), (1, 0), (2, 0), (3, 0), (2, range * 3 / 4)] {
                    let p = FindParams {
                        n_frames: 1,
                        height: h,
                        width: w,
                        thr_q: range / 2,
                        xray_q,
                        suppress_px,
                        capacity: 0,
                        finder,
                        faint_q: range / 4,
                        faint_sum_q: 4 * range,
                        ..Default::default()
                    };
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    find_frame(&p, &q, &s, 0, &mut a);
                    find_frame_plain(&p, &q, &s, 0, &mut b);
                    assert_eq!(a, b, "{h}x{w} range {range} finder {finder} suppress {suppress_px} xray {xray_q}");
                    total += a.len();
                }
            }
        }
        assert!(total > 100, "the inputs should contain centres ({total})");
    }
}
