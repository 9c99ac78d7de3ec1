//! `--preview out.png`: a log-scale image of a frame with the truth points in red.

use std::path::Path;

use crate::{Error, Result};

/// Writes frame `values` (`height x width`, ADU) as a log-scale grey PNG with `points` (x, y in
/// pixels) marked red. `offset_adu`/`gain` turn ADU back into electrons before the log.
pub fn write_preview(
    path: &Path,
    values: &[f32],
    height: u32,
    width: u32,
    offset_adu: f32,
    gain: f32,
    points: &[(f32, f32)],
) -> Result<()> {
    let log: Vec<f32> = values.iter().map(|&v| (((v - offset_adu) / gain).max(0.0)).ln_1p()).collect();
    let max = log.iter().cloned().fold(0.0f32, f32::max).max(1e-6);
    let mut img = image::RgbImage::new(width, height);
    for (i, p) in img.pixels_mut().enumerate() {
        let g = (log[i] / max * 255.0) as u8;
        *p = image::Rgb([g, g, g]);
    }
    for &(x, y) in points {
        let (c, r) = (x.floor() as i64, y.floor() as i64);
        if c >= 0 && r >= 0 && (c as u32) < width && (r as u32) < height {
            img.put_pixel(c as u32, r as u32, image::Rgb([255, 0, 0]));
        }
    }
    let tmp = crate::io::atomic::Output::new(path, true, "--preview")?;
    img.save_with_format(tmp.tmp(), image::ImageFormat::Png).map_err(|e| Error::file(path, e))?;
    tmp.commit()?;
    Ok(())
}
