//! Kernel `count/sum3` (shaders/count/sum3.wgsl): the 3x3 sum around every pixel.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// Mirrors `Sum3Params` in shaders/count/sum3.wgsl.
/// Its size and member offsets are checked against the WGSL by `tests/shaders.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Sum3Params {
    pub n_frames: u32,
    pub height: u32,
    pub width: u32,
    pub _pad0: u32,
}
const _: () = assert!(std::mem::size_of::<Sum3Params>() == 16);

/// CPU twin of `count/sum3` (pixels outside the frame count as 0), parallel over frames.
pub fn sum3_cpu(p: &Sum3Params, q: &[i32], s: &mut [i32]) {
    let (h, w) = (p.height as usize, p.width as usize);
    let fp = h * w;
    s[..fp * p.n_frames as usize]
        .par_chunks_mut(fp)
        .zip(q.par_chunks(fp))
        .for_each_init(|| vec![0i32; fp], |rows, (sf, qf)| sum3_frame(h, w, qf, sf, rows));
}

/// One frame: row sums into `rows` (scratch, H x W), then column sums of those. Integer
/// arithmetic, so the result equals the kernel's direct 9-term sum.
pub fn sum3_frame(h: usize, w: usize, qf: &[i32], sf: &mut [i32], rows: &mut [i32]) {
    // Row sums of 3 (2 at the edges), then column sums of 3 row sums; the interior loops have no
    // branches, so the compiler vectorizes them. Integer sums: any order gives the same result.
    for r in 0..h {
        let qr = &qf[r * w..(r + 1) * w];
        let out = &mut rows[r * w..(r + 1) * w];
        if w == 1 {
            out[0] = qr[0];
            continue;
        }
        out[0] = qr[0].wrapping_add(qr[1]);
        out[w - 1] = qr[w - 2].wrapping_add(qr[w - 1]);
        for c in 1..w - 1 {
            out[c] = qr[c - 1].wrapping_add(qr[c]).wrapping_add(qr[c + 1]);
        }
    }
    for r in 0..h {
        let out = &mut sf[r * w..(r + 1) * w];
        let cur = &rows[r * w..(r + 1) * w];
        match (r > 0, r + 1 < h) {
            (true, true) => {
                let (up, dn) = (&rows[(r - 1) * w..r * w], &rows[(r + 1) * w..(r + 2) * w]);
                for c in 0..w {
                    out[c] = up[c].wrapping_add(cur[c]).wrapping_add(dn[c]);
                }
            }
            (true, false) => {
                let up = &rows[(r - 1) * w..r * w];
                for c in 0..w {
                    out[c] = up[c].wrapping_add(cur[c]);
                }
            }
            (false, true) => {
                let dn = &rows[(r + 1) * w..(r + 2) * w];
                for c in 0..w {
                    out[c] = cur[c].wrapping_add(dn[c]);
                }
            }
            (false, false) => out.copy_from_slice(cur),
        }
    }
}

/// Runs `count/sum3` alone on the GPU, in the given layout; an error for
/// [`super::CountLayout::Tiles`], whose `count/find_tile` keeps its sums in workgroup memory
/// (they are checked through its candidates and their sums, `find::find_gpu`).
#[cfg(feature = "testing")]
pub fn sum3_gpu(
    ctx: &crate::gpu::GpuContext,
    layout: super::CountLayout,
    p: &Sum3Params,
    q: &[i32],
) -> crate::Result<Vec<i32>> {
    let kernel =
        layout.sum3().ok_or_else(|| crate::Error::Other(format!("the {} layout writes no sums", layout.name())))?;
    let n = (p.n_frames * p.height * p.width) as u64;
    let qb = ctx.upload("q", q)?;
    let sb = ctx.upload("s", &vec![-12345i32; n as usize])?;
    let mut enc = ctx.encoder("sum3");
    let u = ctx.uniform("sum3_params", p);
    ctx.dispatch(
        &mut enc,
        kernel,
        &[("params", &u), ("q", &qb), ("s", &sb)],
        layout.threads(p.n_frames, p.height, p.width),
    )?;
    let rb = ctx.readback(&mut enc, &sb, n * 4);
    ctx.submit_and_wait(enc)?;
    Ok(rb.read(ctx)?)
}
