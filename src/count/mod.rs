//! `emsim count`: finds the electrons in frames and localizes each one.
//!
//! Pipeline per batch of frames (GPU kernels, each with its CPU twin in this module):
//! 1. `count/calibrate`: ADU -> fixed-point charge q (1/16 electron), dark and gain map applied.
//! 2. `count/sum3`: the 3x3 sum s around every pixel.
//! 3. `count/find`: candidates, listed and marked. The pixel finder (default, `--finder pixel`):
//!    local maxima of q, as stempy's counter, whose pixel and 3x3 sum are above the background
//!    threshold, or faint ones (pixel and 3x3 sum above their own thresholds). The 3x3-sum
//!    finder (`--finder sum3`, the EMSim notes' search): local maxima of s with a pixel above the
//!    background threshold. Neither keeps a pixel above the X-ray threshold.
//!
//! (On GPUs, the tile layout does 1-3 in one kernel, `count/find_tile`, from the raw frames.)
//! 4. `count/args` + `count/suppress`: indirect dispatch over the candidates; suppression of weaker
//!    candidates nearby (the pixel finder: of faint ones only), stream compaction, and every classical method (max pixel, 3x3 / 5x5
//!    centroid, thresholded or not) for each centre kept.
//!
//! Only the compacted list and its estimates come back to the host (one round trip per batch).
//! The list is sorted by (frame, pixel) there, so the output does not depend on the device.

pub mod calibrate;
mod config;
mod counter;
pub mod find;
pub mod isolated;
mod layout;
pub mod localize;
pub mod run;
pub mod split;
pub mod stempy;
pub mod sum3;
pub mod types;

pub use config::*;
pub use counter::*;
pub use layout::*;
pub use types::HostAdu;

use find::Candidate;
use localize::Localized;

/// The found electrons of one batch, sorted by (frame, pixel).
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub cands: Vec<Candidate>,
    pub localized: Vec<Localized>,
    /// The network's estimates, one per candidate (empty without a network).
    pub net: Vec<crate::net::infer::NetEstimate>,
    /// With `--split-pairs`: per candidate, the frame position of the second electron its
    /// cluster was split into (empty without splitting).
    pub split: Vec<Option<[f32; 2]>>,
}

impl Found {
    /// The electron split off centre `i` (`--split-pairs`), if any.
    pub fn split_off(&self, i: usize) -> Option<[f32; 2]> {
        self.split.get(i).copied().flatten()
    }

    /// Electrons the network method reports: one per centre plus the split-off ones.
    pub fn net_electrons(&self) -> usize {
        self.cands.len() + self.split.iter().filter(|s| s.is_some()).count()
    }
}
