//! `count --method net --split-pairs`: a found centre whose crop the one-vs-two classifier
//! calls "two electrons" yields two electrons, at the pair localizer's two points.
//!
//! Per found centre (after the single-electron network has placed it):
//! 1. the classifier (`Head::Classes`, trained on crops like the network's, with the second
//!    electron within `max_sep_px` per axis, i.e. close enough for the finder to merge them, and
//!    other electrons elsewhere in the crop) gives `p_two`;
//! 2. if `p_two > threshold`, the pair localizer (`Head::Pair`) gives two points `a`, `b`; the one
//!    nearer the network's estimate replaces it, and the other is added as a new electron, unless
//!    it lies within `dedupe_px` of another centre's estimate in the same frame (that electron was
//!    found on its own: the classifier saw it in the crop). Then the centre keeps its estimate.
//!
//! Both models run on the same crops as the single-electron network (same side and input scale,
//! checked when the models are loaded). This step is host code on the models' outputs (no kernel).

use super::Found;
use crate::net::model::{Head, Model};
use crate::{Error, Result};

/// The default `--split-threshold` and `--split-dedupe-px` (chosen on `eval dose`, docs/pairs.md).
pub const DEFAULT_THRESHOLD: f32 = 0.95;
pub const DEFAULT_DEDUPE_PX: f32 = 3.0;

/// The two models and the split rule.
#[derive(Clone, Debug)]
pub struct PairModels {
    pub classifier: Model,
    pub localizer: Model,
    /// Split when the classifier's probability of two electrons exceeds this.
    pub threshold: f32,
    /// Drop the added electron when another centre's estimate lies this close (pixels).
    pub dedupe_px: f32,
}

impl PairModels {
    /// Checks the roles (a classifier and a pair localizer, not the other way round or a
    /// single-electron model) and that both read the same crops as `net` (the `--model`).
    pub fn new(
        classifier: (Model, &std::path::Path),
        localizer: (Model, &std::path::Path),
        net: &Model,
        threshold: f32,
        dedupe_px: f32,
    ) -> Result<Self> {
        classifier.0.cfg.expect_role(classifier.1, "--pair-classifier", &Head::Classes { n: 2 })?;
        localizer.0.cfg.expect_role(localizer.1, "--pair-localizer", &Head::Pair)?;
        for (flag, (m, path)) in [("--pair-classifier", &classifier), ("--pair-localizer", &localizer)] {
            if m.cfg.input_px != net.cfg.input_px || m.cfg.input_scale != net.cfg.input_scale {
                return Err(Error::invalid(
                    flag,
                    format!(
                        "{}: model '{}' reads {}x{} crops scaled by {}, the network (--model '{}') {}x{} scaled by {}; \
                         they must read the same crops",
                        path.display(),
                        m.cfg.name,
                        m.cfg.input_px,
                        m.cfg.input_px,
                        m.cfg.input_scale,
                        net.cfg.name,
                        net.cfg.input_px,
                        net.cfg.input_px,
                        net.cfg.input_scale
                    ),
                ));
            }
        }
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(Error::invalid("--split-threshold", format!("{threshold}: expected a probability in (0, 1)")));
        }
        if !(dedupe_px >= 0.0 && dedupe_px.is_finite()) {
            return Err(Error::invalid("--split-dedupe-px", format!("{dedupe_px}: expected a distance >= 0 (pixels)")));
        }
        Ok(Self { classifier: classifier.0, localizer: localizer.0, threshold, dedupe_px })
    }
}

/// Loads the classifier and the localizer (default: the shipped `pair-split` and `pair-loc`
/// models) for the network `net`, with the checks of [`PairModels::new`].
pub fn load_pair_models(
    classifier: Option<&std::path::Path>,
    localizer: Option<&std::path::Path>,
    net: &Model,
    threshold: f32,
    dedupe_px: f32,
) -> Result<PairModels> {
    let load = |p: Option<&std::path::Path>, name: &str, flag: &str| -> Result<(Model, std::path::PathBuf)> {
        let path = p.map(|p| p.to_path_buf()).unwrap_or_else(|| crate::shipped_model_path(name));
        if p.is_none() && !path.exists() {
            return Err(Error::invalid(
                flag,
                format!("--split-pairs needs a model: none given and {} does not exist", path.display()),
            ));
        }
        Ok((crate::io::model_file::load(&path, None)?.model, path))
    };
    let (c, cp) = load(classifier, "pair-split", "--pair-classifier")?;
    let (l, lp) = load(localizer, "pair-loc", "--pair-localizer")?;
    PairModels::new((c, &cp), (l, &lp), net, threshold, dedupe_px)
}

/// The split decision for every centre of `found` (sorted by frame), from the classifier's
/// probabilities of two electrons `p_two[i]` and the localizer's outputs `pair[4 i .. 4 i + 4]`
/// (crop coordinates relative to the centre of the centre pixel). Updates `found.net` (the nearer
/// point replaces the estimate of a split centre) and returns, per centre, the added electron's
/// frame position.
pub fn split_pairs(
    found: &mut Found,
    p_two: &[f32],
    pair: &[f32],
    width: u32,
    threshold: f32,
    dedupe_px: f32,
) -> Vec<Option<[f32; 2]>> {
    let n = found.cands.len();
    assert_eq!(found.net.len(), n, "network estimates for every centre");
    assert_eq!(p_two.len(), n);
    assert_eq!(pair.len(), 4 * n);
    let mut added = vec![None; n];
    let d2 = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
    // centres of one frame are contiguous
    let mut lo = 0;
    while lo < n {
        let frame = found.cands[lo][0];
        let mut hi = lo;
        while hi < n && found.cands[hi][0] == frame {
            hi += 1;
        }
        let estimates: Vec<[f32; 2]> = found.net[lo..hi].iter().map(|e| e.xy).collect();
        for i in lo..hi {
            if p_two[i] <= threshold {
                continue;
            }
            let (r, c) = (found.cands[i][1] / width, found.cands[i][1] % width);
            let to_frame = |x: f32, y: f32| [c as f32 + 0.5 + x, r as f32 + 0.5 + y];
            let q = &pair[4 * i..4 * i + 4];
            let (a, b) = (to_frame(q[0], q[1]), to_frame(q[2], q[3]));
            let own = found.net[i].xy;
            let (near, far) = if d2(a, own) <= d2(b, own) { (a, b) } else { (b, a) };
            let taken = estimates.iter().enumerate().any(|(j, e)| j + lo != i && d2(*e, far) <= dedupe_px * dedupe_px);
            if taken {
                continue;
            }
            found.net[i].xy = near;
            added[i] = Some(far);
        }
        lo = hi;
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::infer::NetEstimate;

    fn found(cands: &[[u32; 2]], xy: &[[f32; 2]]) -> Found {
        Found {
            cands: cands.iter().map(|c| [c[0], c[1], 0, 0]).collect(),
            localized: vec![],
            net: xy.iter().map(|&xy| NetEstimate { xy, sigma_px: 0.1, p_max: 1.0 }).collect(),
            split: vec![],
        }
    }

    #[test]
    fn splits_only_above_threshold_and_keeps_the_nearer_point() {
        // width 10: centre 0 at (r 2, c 3) -> pixel centre (3.5, 2.5); centre 1 far away
        let mut f = found(&[[0, 23], [0, 88]], &[[3.6, 2.5], [8.5, 8.5]]);
        let p = [0.9, 0.2];
        let pair = [1.5, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0];
        let added = split_pairs(&mut f, &p, &pair, 10, 0.5, 1.5);
        assert_eq!(added[1], None);
        assert_eq!(f.net[0].xy, [3.6, 2.5]); // nearer point: (3.5 + 0.1, 2.5)
        assert_eq!(added[0], Some([5.0, 2.5]));
        assert_eq!(f.net[1].xy, [8.5, 8.5]);
    }

    #[test]
    fn a_point_on_another_found_electron_is_not_added() {
        let mut f = found(&[[0, 23], [0, 25]], &[[3.5, 2.5], [5.4, 2.5]]);
        let pair = [0.0, 0.0, 1.8, 0.0, 0.0, 0.0, 0.0, 0.0];
        let added = split_pairs(&mut f, &[0.9, 0.1], &pair, 10, 0.5, 1.5);
        assert_eq!(added, vec![None, None]);
        assert_eq!(f.net[0].xy, [3.5, 2.5]);
        // the same centre in another frame than the neighbour: split
        let mut g = found(&[[0, 23], [1, 25]], &[[3.5, 2.5], [5.4, 2.5]]);
        let added = split_pairs(&mut g, &[0.9, 0.1], &pair, 10, 0.5, 1.5);
        assert_eq!(added[0], Some([5.3, 2.5]));
    }
}
