//! `emsim events show`: one event as a PNG.
//!
//! The image covers the event's pixels and the pixel of incidence plus a one-pixel margin; each
//! sensor pixel is a `scale` x `scale` block, rows downwards (row offset `dy` grows down), columns
//! to the right. Colour: a viridis-like map of `ln(1 + q) / ln(1 + q_max)` ([`ColorScale::Log`],
//! the default) or of `q / q_max` ([`ColorScale::Linear`]); pixels without charge are black. The
//! incidence point is a small red cross.

use std::path::Path;

use crate::io::library::EventLibrary;
use crate::{Error, Result};

/// Largest image side, pixels (guards against huge `--scale` values).
pub const MAX_IMAGE_SIDE: u64 = 16_384;

/// How charge maps to colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorScale {
    Linear,
    #[default]
    Log,
}

/// Viridis control points (every 1/8).
const VIRIDIS: [[f32; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// Viridis-like colour of `t` in [0, 1].
pub fn colormap(t: f32) -> [u8; 3] {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|k| (a[k] + (b[k] - a[k]) * f).round() as u8)
}

/// Writes event `event` of `lib` as a PNG with the log colour scale (see [`show_event_with`]).
pub fn show_event(lib: &EventLibrary, event: usize, out: &Path, scale: u32) -> Result<()> {
    show_event_with(lib, event, out, scale, ColorScale::Log)
}

/// Renders event `event` into an RGB image (see the module documentation).
pub fn render_event(lib: &EventLibrary, event: usize, scale: u32, color: ColorScale) -> Result<image::RgbImage> {
    let n = lib.len();
    if event >= n {
        let range = if n == 0 { "the library is empty".to_string() } else { format!("expected 0..={}", n - 1) };
        return Err(Error::invalid("--event", format!("event {event} is out of range: {range} ({n} events)")));
    }
    if scale == 0 {
        return Err(Error::invalid(
            "--scale",
            "expected a block size of at least 1 image pixel per sensor pixel, got 0",
        ));
    }
    let r = lib.pixel_range(event);
    let (dx, dy, q) = (&lib.dx_px[r.clone()], &lib.dy_px[r.clone()], &lib.charge_e[r]);
    let (mut x0, mut x1, mut y0, mut y1) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..dx.len() {
        x0 = x0.min(dx[i] as i64);
        x1 = x1.max(dx[i] as i64);
        y0 = y0.min(dy[i] as i64);
        y1 = y1.max(dy[i] as i64);
    }
    let (x0, y0) = (x0 - 1, y0 - 1);
    let (w_px, h_px) = ((x1 + 1 - x0 + 1) as u64, (y1 + 1 - y0 + 1) as u64);
    let (w, h) = (w_px * scale as u64, h_px * scale as u64);
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(Error::invalid(
            "--scale",
            format!(
                "the image would be {w} x {h} pixels ({w_px} x {h_px} sensor pixels at scale {scale}); \
                 expected at most {MAX_IMAGE_SIDE} per side, use a smaller --scale"
            ),
        ));
    }
    let mut grid = vec![0.0f32; (w_px * h_px) as usize];
    for i in 0..dx.len() {
        let (c, rr) = ((dx[i] as i64 - x0) as u64, (dy[i] as i64 - y0) as u64);
        grid[(rr * w_px + c) as usize] += q[i];
    }
    let qmax = grid.iter().copied().fold(0.0f32, f32::max);
    let mut img = image::RgbImage::new(w as u32, h as u32);
    let s = scale as u64;
    for rr in 0..h_px {
        for c in 0..w_px {
            let v = grid[(rr * w_px + c) as usize];
            let rgb = if v > 0.0 && qmax > 0.0 {
                let t = match color {
                    ColorScale::Linear => v / qmax,
                    ColorScale::Log => v.ln_1p() / qmax.ln_1p(),
                };
                colormap(t)
            } else {
                [0, 0, 0]
            };
            for yy in rr * s..(rr + 1) * s {
                for xx in c * s..(c + 1) * s {
                    img.put_pixel(xx as u32, yy as u32, image::Rgb(rgb));
                }
            }
        }
    }
    // The incidence point, in image pixels.
    let px = ((-x0) as f64 + lib.incidence_x_px[event] as f64) * scale as f64;
    let py = ((-y0) as f64 + lib.incidence_y_px[event] as f64) * scale as f64;
    let (cx, cy) = (px.floor() as i64, py.floor() as i64);
    let arm = (scale as i64 / 3).max(2);
    let red = image::Rgb([255u8, 0, 0]);
    let mut put = |x: i64, y: i64| {
        if x >= 0 && y >= 0 && (x as u64) < w && (y as u64) < h {
            img.put_pixel(x as u32, y as u32, red);
        }
    };
    for k in -arm..=arm {
        put(cx + k, cy);
        put(cx, cy + k);
    }
    Ok(img)
}

/// Writes event `event` of `lib` as a PNG to `out` (through a temporary file renamed into place;
/// an existing file is replaced). Errors: `--event` out of range, `--scale` 0 or too large.
pub fn show_event_with(lib: &EventLibrary, event: usize, out: &Path, scale: u32, color: ColorScale) -> Result<()> {
    let img = render_event(lib, event, scale, color)?;
    let tmp = crate::io::atomic::Output::new(out, true, "--out")?;
    img.save_with_format(tmp.tmp(), image::ImageFormat::Png).map_err(|e| Error::file(out, e))?;
    tmp.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::library::LibraryMeta;

    fn lib() -> EventLibrary {
        let mut l = EventLibrary::new(LibraryMeta {
            source: "test".into(),
            pitch_um: 5.0,
            energy_kev: 300.0,
            seed: 0,
            config_json: String::new(),
        });
        l.push(0.5, 0.25, 1.0, 0, 1.0, &[(0, 0, 100.0), (1, 0, 10.0), (-2, 3, 1.0)]);
        l
    }

    #[test]
    fn window_and_cross() {
        let img = render_event(&lib(), 0, 4, ColorScale::Log).unwrap();
        // columns -3..=2, rows -1..=4
        assert_eq!((img.width(), img.height()), (6 * 4, 6 * 4));
        // incidence (0.5, 0.25) in pixel (0, 0) -> image ((3 + 0.5) * 4, (1 + 0.25) * 4) = (14, 5)
        assert_eq!(img.get_pixel(14, 5).0, [255, 0, 0]);
        // the brightest pixel is the top of the map
        assert_eq!(img.get_pixel(3 * 4 + 3, 4 + 3).0, colormap(1.0));
        // empty corner
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert!(render_event(&lib(), 1, 4, ColorScale::Log).is_err());
        assert!(render_event(&lib(), 0, 0, ColorScale::Log).is_err());
        assert!(render_event(&lib(), 0, 100_000, ColorScale::Linear).is_err());
    }
}
