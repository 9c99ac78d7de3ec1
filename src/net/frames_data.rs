//! Training samples cut from a frames dataset with truth (`emsim train --frames f.h5`): real
//! frames with their neighbours, overlaps and noise, instead of isolated library events.
//!
//! Sample `k` uses the Philox counter `(0, k, SHUFFLE)`: word 0 picks a true electron of the
//! split (`lo + below(w0, count)`), words 1 and 2 the integer shift `(sx, sy)` in `[-shift_px,
//! shift_px]` of the crop's centre pixel from the electron's pixel. The crop is `input_px` square
//! around that centre (pixel `input_px / 2`), in electrons times `input_scale`, zero outside the
//! frame; the target is the electron's point relative to the centre of the centre pixel and the
//! label its grid cell. A sample depends only on its index (not on the batch or device); the
//! crops are cut on the host (like a data loader) and uploaded for the GPU path.
//!
//! Validation and test samples come from the last `holdout` fraction of the frames.
//!
//! With [`CropCentres::Found`] the crops are centred as `emsim count` centres them: the frames are
//! counted (CPU path, default finder, read noise estimated as `count` does), the centres are
//! matched one-to-one to the truth within [`crate::eval::DEFAULT_RADIUS_PX`] by their
//! `c3x3t` positions (`eval`'s matching), and sample `k` picks a matched pair: the crop is
//! centred on the found centre pixel (no shift), the target is its true electron. So the network
//! learns the offsets it will meet when counting, neighbours and merged clusters included.

use super::data::{Batch, GridLabelParams, grid_label_points_cpu};
use super::data::{check_holdout, n_held_out};
use super::model::{Head, ModelConfig};
use crate::io::frames_in::FramesReader;
use crate::rng::{below, counter, key_from_seed, philox4x32_10, streams};
use crate::{Error, Result};

/// Where the training crops of a frames dataset are centred.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CropCentres {
    /// On the true electron's pixel, shifted by up to `shift_px`.
    #[default]
    Truth,
    /// On the centres `emsim count` finds, matched to the truth.
    Found,
}

impl CropCentres {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "truth" => Ok(Self::Truth),
            "found" => Ok(Self::Found),
            _ => Err(Error::invalid("--crop-centres", format!("'{s}': expected truth or found"))),
        }
    }
}

/// Frames in electrons and their truth, in memory.
pub struct FrameSamples {
    pub height: usize,
    pub width: usize,
    /// `n_frames x height x width`, electrons.
    pub frames_e: Vec<f32>,
    /// True electrons, sorted by frame: frame index, x, y (pixels, x = column).
    pub frame: Vec<u32>,
    pub x_px: Vec<f32>,
    pub y_px: Vec<f32>,
    /// Electrons `[0, n_train)` are in the training frames, the rest in the held-out frames.
    pub n_train: usize,
    /// With [`CropCentres::Found`]: the found centre pixel `(column, row)` of each electron
    /// (then the electrons are the matched ones only); empty otherwise.
    pub centre_px: Vec<(i32, i32)>,
}

impl FrameSamples {
    /// Reads `path` (an emsim frames file with `/truth`; ADU converted with its gain and offset),
    /// at most `max_frames` frames, holding out the last `holdout` fraction of them.
    pub fn load(path: &std::path::Path, max_frames: Option<u64>, holdout: f32, centres: CropCentres) -> Result<Self> {
        check_holdout(holdout)?;
        let mut reader = FramesReader::open(path, "frames")?;
        let truth = crate::eval::read::read_truth(path)?;
        let n = reader.meta.n_frames.min(max_frames.unwrap_or(u64::MAX)) as usize;
        let n_val = n_held_out(n, holdout)
            .ok_or_else(|| Error::file(path, format!("{n} frames: too few to hold out {holdout} for validation")))?;
        let (h, w) = (reader.meta.height as usize, reader.meta.width as usize);
        let gain = reader.meta.gain_adu_per_e.unwrap_or(1.0);
        let offset = reader.meta.offset_adu.unwrap_or(0.0);
        let adu = reader.read(0, n)?;
        let frames_e: Vec<f32> = adu.iter().map(|&a| (a - offset) / gain).collect();
        drop(adu);
        let end = truth.offsets[n] as usize;
        let mut s = Self {
            height: h,
            width: w,
            frames_e,
            frame: truth.frame[..end].to_vec(),
            x_px: truth.x_px[..end].to_vec(),
            y_px: truth.y_px[..end].to_vec(),
            n_train: truth.offsets[n - n_val] as usize,
            centre_px: Vec::new(),
        };
        if centres == CropCentres::Found {
            s.match_found_centres(path, n, n - n_val)?;
        }
        if s.n_train == 0 || s.x_px.len() == s.n_train {
            return Err(Error::file(path, "no true electrons in the training or the held-out frames"));
        }
        Ok(s)
    }

    /// Counts the frames and keeps the true electrons matched to a found centre, with the centre.
    fn match_found_centres(&mut self, path: &std::path::Path, n: usize, n_train_frames: usize) -> Result<()> {
        use crate::count::{CountConfig, Counter, HostAdu, Method};
        use crate::eval::matching::{Points, match_points};
        let px = self.height * self.width;
        let cfg = CountConfig::default();
        let sigma = cfg
            .estimate_sigma_from_adu(HostAdu::F32(&self.frames_e), px)
            .ok_or_else(|| Error::file(path, "cannot estimate the read noise to find centres (no pixel below 0 e-)"))?;
        let device = crate::gpu::Device::Cpu;
        let counter = Counter::new(cfg, self.height as u32, self.width as u32, sigma, &device)?;
        let (mut frame, mut x, mut y, mut centre) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut n_train = 0;
        let mut t0 = 0;
        let batch = 16;
        for f0 in (0..n).step_by(batch) {
            let nb = batch.min(n - f0);
            let found = counter.count(&self.frames_e[f0 * px..(f0 + nb) * px])?;
            let cols = crate::count::run::columns(&found, Method::C3x3T, 0, self.width as u32);
            let mut c0 = 0;
            for k in 0..nb {
                let t1 = t0 + self.frame[t0..].iter().take_while(|&&f| f as usize == f0 + k).count();
                let c1 = c0 + cols.frame[c0..].iter().take_while(|&&f| f as usize == k).count();
                let m = match_points(
                    Points::new(&self.x_px[t0..t1], &self.y_px[t0..t1]),
                    Points::new(&cols.x_px[c0..c1], &cols.y_px[c0..c1]),
                    crate::eval::DEFAULT_RADIUS_PX,
                );
                let mut pairs = m.pairs;
                pairs.sort_by_key(|p| p.truth);
                for p in pairs {
                    let (t, c) = (t0 + p.truth as usize, c0 + p.found as usize);
                    frame.push(self.frame[t]);
                    x.push(self.x_px[t]);
                    y.push(self.y_px[t]);
                    centre.push((cols.col[c] as i32, cols.row[c] as i32));
                }
                if f0 + k + 1 == n_train_frames {
                    n_train = x.len();
                }
                (t0, c0) = (t1, c1);
            }
        }
        (self.frame, self.x_px, self.y_px, self.centre_px, self.n_train) = (frame, x, y, centre, n_train);
        Ok(())
    }

    /// Electron ranges `(lo, count)` for training and validation.
    pub fn split(&self) -> ((u32, u32), (u32, u32)) {
        ((0, self.n_train as u32), (self.n_train as u32, (self.x_px.len() - self.n_train) as u32))
    }

    /// Sample `k`'s electron (index into the truth) and crop centre pixel `(column, row)`.
    pub fn choice(&self, seed: u64, shift_px: usize, (lo, count): (u32, u32), k: u64) -> (usize, i64, i64) {
        let r = philox4x32_10(counter(0, k, streams::SHUFFLE), key_from_seed(seed));
        let shift = shift_px as u32;
        let e = (lo + below(r[0], count)) as usize;
        if let Some(&(col, row)) = self.centre_px.get(e) {
            return (e, col as i64, row as i64);
        }
        let sx = below(r[1], 2 * shift + 1) as i64 - shift as i64;
        let sy = below(r[2], 2 * shift + 1) as i64 - shift as i64;
        (e, self.x_px[e].floor() as i64 + sx, self.y_px[e].floor() as i64 + sy)
    }

    /// Samples `first .. first + n` of electrons `[lo, lo + count)`.
    pub fn batch(&self, cfg: &ModelConfig, seed: u64, (lo, count): (u32, u32), first: u64, n: usize) -> Batch {
        let side = cfg.input_px;
        let half = (side / 2) as i64;
        let (h, w) = (self.height as i64, self.width as i64);
        let mut x = vec![0.0f32; n * side * side];
        let mut target = vec![0.0f32; 2 * n];
        for s in 0..n {
            let (e, cx, cy) = self.choice(seed, cfg.shift_px, (lo, count), first + s as u64);
            let (ex, ey) = (self.x_px[e], self.y_px[e]);
            let plane = &self.frames_e[self.frame[e] as usize * self.height * self.width..][..self.height * self.width];
            let crop = &mut x[s * side * side..(s + 1) * side * side];
            for i in 0..side as i64 {
                let row = cy - half + i;
                if row < 0 || row >= h {
                    continue;
                }
                for j in 0..side as i64 {
                    let col = cx - half + j;
                    if col >= 0 && col < w {
                        crop[(i * side as i64 + j) as usize] = plane[(row * w + col) as usize] * cfg.input_scale;
                    }
                }
            }
            target[2 * s] = ex - (cx as f32 + 0.5);
            target[2 * s + 1] = ey - (cy as f32 + 0.5);
        }
        let mut labels = vec![0u32; n];
        if matches!(cfg.head, Head::Grid { .. }) {
            grid_label_points_cpu(&GridLabelParams::new(cfg, n, 2), &target, &mut labels);
        }
        Batch { x, labels, target }
    }
}
