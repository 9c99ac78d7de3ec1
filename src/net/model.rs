//! Network models: a config (a list of layers, PyTorch `nn.Sequential` style, plus the head and the
//! crop geometry), the presets, the shape plan for a batch, the parameter tensors with
//! PyTorch-style names (`"0.weight"`, `"2.running_mean"`, ... as `nn.Sequential.state_dict()`
//! names them), and the CPU forward/backward built from the layer twins.

use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use super::Shape4;
use super::batchnorm2d::{BatchNorm2dShape, batchnorm2d_running_cpu};
use super::conv2d::Conv2dShape;
// The CPU path runs the fast layers of `cpu_fast` (im2col + SGEMM convolutions and linear layers,
// one-pass batch statistics, fused backward of `[ReLU ->] BatchNorm2d -> MaxPool2d`), each tested
// against its plain twin in tests/net_cpu_fast.rs; the twins are the GPU kernels' references.
use super::cpu_fast::{
    BatchNorm2dEval, EVAL_CHUNK_ELEMS, batchnorm2d_bwd_input_fast, batchnorm2d_bwd_reduce_fast, batchnorm2d_fwd_fast,
    batchnorm2d_maxpool2d_fwd_fast, batchnorm2d_stats_fast, conv2d_bwd_input_fast, conv2d_bwd_weight_fast,
    conv2d_fwd_fast, dropout_bwd_fast, dropout_fwd_fast, linear_bwd_input_fast, linear_bwd_weight_fast,
    linear_fwd_fast, maxpool2d_batchnorm2d_bwd_fast, maxpool2d_bwd_fast, maxpool2d_fwd_fast, maxpool2d_fwd_values_fast,
    relu_batchnorm2d_maxpool2d_eval_fast, relu_batchnorm2d_stats_fast, relu_bwd_fast, relu_fwd_fast, zeroed,
};
use super::dropout::DropoutCfg;
use super::init::he_normal;
use super::linear::LinearShape;
use super::maxpool2d::MaxPool2dShape;
use super::precision::{NetPrecision, half_activations, round_f16};
use crate::{Error, Result};

pub const SCHEMA: &str = "emsim-model/1";

/// The body of the `count --split-pairs` models (11x11 crops): conv 16 k3 pad 1, BN, ReLU, conv 32 k3, BN, ReLU, max-pool 2, flatten,
/// dense 64, ReLU, dense `outputs`.
fn crop_body(outputs: usize) -> Vec<LayerSpec> {
    use LayerSpec::*;
    vec![
        Conv2d { out_channels: 16, kernel: 3, padding: 1, stride: 1 },
        BatchNorm2d { eps: 1e-5, momentum: 0.1 },
        Relu,
        Conv2d { out_channels: 32, kernel: 3, padding: 0, stride: 1 },
        BatchNorm2d { eps: 1e-5, momentum: 0.1 },
        Relu,
        MaxPool2d { kernel: 2, stride: None },
        Flatten,
        Linear { out_features: 64 },
        Relu,
        Linear { out_features: outputs },
    ]
}

fn one() -> usize {
    1
}
fn bn_eps() -> f32 {
    1e-5
}
fn bn_momentum() -> f32 {
    0.1
}

/// One layer of the sequence (serde tag `type`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    Conv2d {
        out_channels: usize,
        kernel: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "one")]
        stride: usize,
    },
    Relu,
    BatchNorm2d {
        #[serde(default = "bn_eps")]
        eps: f32,
        #[serde(default = "bn_momentum")]
        momentum: f32,
    },
    MaxPool2d {
        kernel: usize,
        #[serde(default)]
        stride: Option<usize>,
    },
    Dropout {
        p: f32,
    },
    Flatten,
    Linear {
        out_features: usize,
    },
}

/// What the network predicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Head {
    /// A softmax over a `G x G` grid of cells, `G = span_px * cells_per_px`, covering the `span_px`
    /// x `span_px` pixels centred on the crop's centre pixel; trained with cross-entropy on the cell
    /// that holds the true incidence point.
    Grid { cells_per_px: usize, span_px: usize },
    /// Regression of the incidence point `(x, y)` relative to the centre of the crop's centre pixel,
    /// in pixels; trained with mean squared error.
    Xy,
    /// A softmax over `n` classes: the number of electrons minus one (0 = one electron,
    /// 1 = two); trained with cross-entropy on one- or two-electron samples (`ModelConfig::pairs`).
    Classes { n: usize },
    /// Regression of two incidence points `(x1, y1, x2, y2)` (crop pixels relative to the centre of
    /// the centre pixel) for a two-electron cluster; trained with the permutation-invariant squared
    /// error (`net/pair_mse`): the order of the two points carries no meaning.
    Pair,
}

impl Head {
    /// `"grid"`, `"xy"`, `"classes"` or `"pair"` (the serde tag), for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Head::Grid { .. } => "grid",
            Head::Xy => "xy",
            Head::Classes { .. } => "classes",
            Head::Pair => "pair",
        }
    }

    /// What a model with this head is for, in words (for bad-input errors).
    pub fn role(&self) -> &'static str {
        match self {
            Head::Grid { .. } | Head::Xy => "a single-electron localizer",
            Head::Classes { .. } => "a one-vs-two-electron classifier",
            Head::Pair => "a two-electron localizer",
        }
    }
}

/// Training samples with one or two electrons (and optionally extra electrons elsewhere in the
/// patch), made by `net/make_pairs` (see [`super::pairs::PairSpec`]); the patch is the model's
/// input (`input_px`, `shift_px`, `input_scale`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSamples {
    /// Probability of a two-electron sample.
    pub p_two: f32,
    /// The second electron's pixel is at an integer offset in `[-max_sep_px, max_sep_px]^2`
    /// (not `(0, 0)`) from the first's.
    pub max_sep_px: u32,
    /// Mean number (Poisson) of extra electrons outside that box, and their cap.
    #[serde(default)]
    pub extra_mean: f32,
    #[serde(default)]
    pub extra_max: u32,
}

/// A model: layers, head and crop geometry. Stored as JSON in the safetensors metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub schema: String,
    pub name: String,
    /// Side of the square input crop, pixels (odd: the centre pixel is `input_px / 2`).
    pub input_px: usize,
    /// Training samples put the pixel of incidence at a random integer offset in
    /// `[-shift_px, shift_px]` (both axes) from the crop centre.
    pub shift_px: usize,
    /// Network input = charge (electrons) x this.
    pub input_scale: f32,
    pub head: Head,
    pub layers: Vec<LayerSpec>,
    /// Train on one-or-two-electron samples (`net/make_pairs`) instead of single events
    /// (`net/make_batch`); required by the `classes` and `pair` heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PairSamples>,
}

impl ModelConfig {
    /// The preset names.
    pub const PRESETS: &'static [&'static str] = &[
        "seed",
        "seed-84",
        "fast",
        "fast-neighbours",
        "pair-seed",
        "pair-compact",
        "pair-reg",
        "pair-split",
        "pair-loc",
    ];

    /// A preset by name (see [`ModelConfig::PRESETS`]).
    pub fn preset(name: &str) -> Result<Self> {
        use LayerSpec::*;
        let seed_body = |classes: usize| {
            vec![
                Conv2d { out_channels: 16, kernel: 4, padding: 1, stride: 1 },
                Relu,
                BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                MaxPool2d { kernel: 4, stride: None },
                Conv2d { out_channels: 32, kernel: 3, padding: 1, stride: 1 },
                Relu,
                BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                MaxPool2d { kernel: 3, stride: None },
                Conv2d { out_channels: 64, kernel: 2, padding: 0, stride: 1 },
                Relu,
                BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                MaxPool2d { kernel: 2, stride: None },
                Dropout { p: 0.5 },
                Flatten,
                Linear { out_features: classes },
            ]
        };
        let cfg = match name {
            // The network of the EMSim notes (J. Renner, LBNL, 2021, github jerenner/emsim)
            // exactly: 41x41 in, 10x10 grid in the centre pixel.
            "seed" => ModelConfig {
                schema: SCHEMA.into(),
                name: "seed".into(),
                input_px: 41,
                shift_px: 0,
                input_scale: 1e-3,
                head: Head::Grid { cells_per_px: 10, span_px: 1 },
                layers: seed_body(100),
                pairs: None,
            },
            // 84x84 grid over the central 21x21 pixels, +-10 px shifts.
            "seed-84" => ModelConfig {
                schema: SCHEMA.into(),
                name: "seed-84".into(),
                input_px: 41,
                shift_px: 10,
                input_scale: 1e-3,
                head: Head::Grid { cells_per_px: 4, span_px: 21 },
                layers: seed_body(84 * 84),
                pairs: None,
            },
            // Ours, for full frames: 11x11 crop around the found centre; a 24x24 grid over the 3x3
            // pixels around it (the true entry pixel is the found one or a neighbour).
            "fast" => ModelConfig {
                schema: SCHEMA.into(),
                name: "fast".into(),
                input_px: 11,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Grid { cells_per_px: 8, span_px: 3 },
                layers: vec![
                    Conv2d { out_channels: 16, kernel: 3, padding: 1, stride: 1 },
                    BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                    Relu,
                    Conv2d { out_channels: 32, kernel: 3, padding: 0, stride: 1 },
                    BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                    Relu,
                    MaxPool2d { kernel: 3, stride: None },
                    Flatten,
                    Linear { out_features: 128 },
                    Relu,
                    Linear { out_features: 24 * 24 },
                ],
                pairs: None,
            },
            // `fast` trained among neighbours: 1.2 other electrons on average (capped at 6) in the
            // crop, at least 3 px (per axis) from the one to localize (closer ones are merged by
            // the finder: the pair models' job).
            "fast-neighbours" => ModelConfig {
                name: "fast-neighbours".into(),
                pairs: Some(PairSamples { p_two: 0.0, max_sep_px: 2, extra_mean: 1.2, extra_max: 6 }),
                ..Self::preset("fast")?
            },
            // The MSU multi-electron notebook's one-vs-two classifier (Keras): conv 32 k3, conv 64 k3,
            // max-pool 2, dropout 0.25, Dense(128) (Keras applies Dense to the last axis of a 4-D
            // tensor: a 1x1 convolution), dropout 0.5, flatten, dense 2, softmax; 16x16 patches,
            // the second electron up to 5 px away per axis (then 16 % of the pairs are "hard", the
            // notebook's 15 %; see `net::pair_eval`).
            "pair-seed" => ModelConfig {
                schema: SCHEMA.into(),
                name: "pair-seed".into(),
                input_px: 16,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Classes { n: 2 },
                layers: vec![
                    Conv2d { out_channels: 32, kernel: 3, padding: 0, stride: 1 },
                    Relu,
                    Conv2d { out_channels: 64, kernel: 3, padding: 0, stride: 1 },
                    Relu,
                    MaxPool2d { kernel: 2, stride: None },
                    Dropout { p: 0.25 },
                    Conv2d { out_channels: 128, kernel: 1, padding: 0, stride: 1 },
                    Relu,
                    Dropout { p: 0.5 },
                    Flatten,
                    Linear { out_features: 2 },
                ],
                pairs: Some(PairSamples { p_two: 0.5, max_sep_px: 5, extra_mean: 0.0, extra_max: 0 }),
            },
            // Ours: the same task with fewer weights than `pair-seed` (21k vs 36k): batch norm and
            // two pooling stages.
            "pair-compact" => ModelConfig {
                schema: SCHEMA.into(),
                name: "pair-compact".into(),
                input_px: 16,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Classes { n: 2 },
                layers: vec![
                    Conv2d { out_channels: 16, kernel: 3, padding: 1, stride: 1 },
                    BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                    Relu,
                    MaxPool2d { kernel: 2, stride: None },
                    Conv2d { out_channels: 32, kernel: 3, padding: 1, stride: 1 },
                    BatchNorm2d { eps: 1e-5, momentum: 0.1 },
                    Relu,
                    MaxPool2d { kernel: 2, stride: None },
                    Flatten,
                    Linear { out_features: 32 },
                    Relu,
                    Linear { out_features: 2 },
                ],
                pairs: Some(PairSamples { p_two: 0.5, max_sep_px: 5, extra_mean: 0.0, extra_max: 0 }),
            },
            // The notebook's single-electron regression: conv 32 k3, flatten, dense 512, dense 2,
            // MSE; 16x16 patches of one electron.
            "pair-reg" => ModelConfig {
                schema: SCHEMA.into(),
                name: "pair-reg".into(),
                input_px: 16,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Xy,
                layers: vec![
                    Conv2d { out_channels: 32, kernel: 3, padding: 0, stride: 1 },
                    Relu,
                    Flatten,
                    Linear { out_features: 512 },
                    Relu,
                    Linear { out_features: 2 },
                ],
                pairs: None,
            },
            // For `count --split-pairs`: is there a second electron within 3 px (per axis) of the
            // found one, close enough for the finder to merge them (it drops centres within 2 px
            // of a stronger one; at 3 px a pair is usually found twice, and the split step drops
            // a second point that lands on another found electron)? 11x11 crops like `fast`, with
            // extra electrons outside that box as in frames (1.2 per crop on average: ~0.017
            // electrons per pixel over the 72 pixels outside the box).
            "pair-split" => ModelConfig {
                schema: SCHEMA.into(),
                name: "pair-split".into(),
                input_px: 11,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Classes { n: 2 },
                layers: crop_body(2),
                pairs: Some(PairSamples { p_two: 0.5, max_sep_px: 3, extra_mean: 1.2, extra_max: 6 }),
            },
            // For `count --split-pairs`: the two entry points of a merged pair.
            "pair-loc" => ModelConfig {
                schema: SCHEMA.into(),
                name: "pair-loc".into(),
                input_px: 11,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Pair,
                layers: crop_body(4),
                pairs: Some(PairSamples { p_two: 1.0, max_sep_px: 3, extra_mean: 1.2, extra_max: 6 }),
            },
            other => {
                return Err(Error::invalid(
                    "--preset",
                    format!("'{other}': expected one of {}", Self::PRESETS.join(", ")),
                ));
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a config file (JSON).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let cfg: ModelConfig =
            serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not a model config: {e}")))?;
        cfg.validate().map_err(|e| Error::file(path, e))?;
        Ok(cfg)
    }

    /// Number of outputs of the head: grid cells, 2 (x, y), classes, or 4 (two points).
    pub fn head_outputs(&self) -> usize {
        match self.head {
            Head::Grid { cells_per_px, span_px } => (cells_per_px * span_px).pow(2),
            Head::Xy => 2,
            Head::Classes { n } => n,
            Head::Pair => 4,
        }
    }

    /// Target values per training sample: 4 (two points) for pair samples, else 2.
    pub fn target_dims(&self) -> usize {
        if self.pairs.is_some() { 4 } else { 2 }
    }

    /// Fails unless this model has the role of `want` (a single-electron localizer: grid or xy; a
    /// classifier; a pair localizer), naming the flag, the file and what the model is instead.
    pub fn expect_role(&self, file: &std::path::Path, flag: &str, want: &Head) -> Result<()> {
        let same = std::mem::discriminant(&self.head) == std::mem::discriminant(want)
            || matches!((&self.head, want), (Head::Grid { .. } | Head::Xy, Head::Grid { .. } | Head::Xy));
        if same {
            return Ok(());
        }
        Err(Error::invalid(
            flag,
            format!(
                "{}: expected {}, but model '{}' is {} (head '{}')",
                file.display(),
                want.role(),
                self.name,
                self.head.role(),
                self.head.kind()
            ),
        ))
    }

    /// Checks the geometry and that the layers chain and end in the head's size.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("model '{}'", self.name), m));
        if self.schema != SCHEMA {
            return bad(format!("schema '{}', expected '{SCHEMA}'", self.schema));
        }
        if self.input_px == 0 {
            return bad("input_px must be >= 1".into());
        }
        if matches!(self.head, Head::Grid { .. }) && self.input_px.is_multiple_of(2) {
            return bad(format!("input_px {} must be odd for a grid head", self.input_px));
        }
        match (&self.head, &self.pairs) {
            (Head::Classes { n }, Some(p)) => {
                if *n != 2 {
                    return bad(format!("a classes head needs n = 2 (one or two electrons), got {n}"));
                }
                if p.p_two <= 0.0 || p.p_two >= 1.0 {
                    return bad(format!("a classifier needs pairs.p_two in (0, 1), got {}", p.p_two));
                }
            }
            (Head::Pair, Some(p)) if p.p_two != 1.0 => {
                return bad(format!("a pair localizer trains on pairs only: pairs.p_two must be 1, got {}", p.p_two));
            }
            (Head::Classes { .. } | Head::Pair, None) => {
                return bad(format!("a '{}' head needs pair samples (\"pairs\": {{...}})", self.head.kind()));
            }
            // a localizer trained among neighbours: one electron, extras elsewhere in the crop
            (Head::Grid { .. }, Some(p)) if p.p_two == 0.0 => {}
            (Head::Grid { .. } | Head::Xy, Some(_)) => {
                return bad(format!(
                    "a '{}' head trains on single events: remove \"pairs\" (a grid head may keep them with \
                     p_two = 0, for neighbours only)",
                    self.head.kind()
                ));
            }
            _ => {}
        }
        if self.pairs.is_some() {
            let spec = self.pair_spec(0, 0, 1, 0.0);
            spec.validate().map_err(|e| Error::invalid(format!("model '{}'", self.name), format!("pairs: {e}")))?;
        }
        if let Head::Grid { cells_per_px, span_px } = self.head {
            if cells_per_px == 0 || span_px == 0 || span_px % 2 == 0 || span_px > self.input_px {
                return bad(format!("grid span_px {span_px} must be odd and <= input_px, cells_per_px >= 1"));
            }
            if 2 * self.shift_px + 1 > span_px {
                return bad(format!(
                    "shift_px {} puts the incidence pixel outside the {span_px}-px grid",
                    self.shift_px
                ));
            }
        }
        if !(self.input_scale > 0.0) {
            return bad("input_scale must be > 0".into());
        }
        let plan = self.plan(1)?;
        let last = plan.last().map(|p| p.output).unwrap_or(Shape4::new(1, 1, self.input_px, self.input_px));
        if last.c * last.h * last.w != self.head_outputs() || last.h != 1 || last.w != 1 {
            return bad(format!(
                "the last layer gives {}x{}x{} values, the head needs {}",
                last.c,
                last.h,
                last.w,
                self.head_outputs()
            ));
        }
        Ok(())
    }

    /// The shapes through the network for a batch of `n`.
    pub fn plan(&self, n: usize) -> Result<Vec<LayerPlan>> {
        let mut cur = Shape4::new(n, 1, self.input_px, self.input_px);
        let mut out = Vec::with_capacity(self.layers.len());
        let bad = |i: usize, m: String| Err(Error::invalid(format!("model '{}' layer {i}", self.name), m));
        for (i, l) in self.layers.iter().enumerate() {
            let flat = cur.h == 1 && cur.w == 1;
            let next = match *l {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    if out_channels == 0
                        || kernel == 0
                        || stride == 0
                        || kernel > cur.h + 2 * padding
                        || kernel > cur.w + 2 * padding
                    {
                        return bad(
                            i,
                            format!(
                                "conv2d k{kernel} pad{padding} stride{stride} does not fit a {}x{} input",
                                cur.h, cur.w
                            ),
                        );
                    }
                    Conv2dShape::new(cur, out_channels, kernel, kernel, padding, stride).output()
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let st = stride.unwrap_or(kernel);
                    if kernel == 0 || st == 0 || kernel > cur.h || kernel > cur.w {
                        return bad(i, format!("max-pool {kernel} does not fit a {}x{} input", cur.h, cur.w));
                    }
                    MaxPool2dShape { input: cur, k: kernel, stride: st }.output()
                }
                LayerSpec::Relu | LayerSpec::BatchNorm2d { .. } => cur,
                LayerSpec::Dropout { p } => {
                    if !(0.0..1.0).contains(&p) {
                        return bad(i, format!("dropout p {p} must be in [0, 1)"));
                    }
                    cur
                }
                LayerSpec::Flatten => Shape4::new(n, cur.c * cur.h * cur.w, 1, 1),
                LayerSpec::Linear { out_features } => {
                    if !flat {
                        return bad(i, "linear needs a flat input: put a flatten layer before it".into());
                    }
                    if out_features == 0 {
                        return bad(i, "linear out_features must be >= 1".into());
                    }
                    Shape4::new(n, out_features, 1, 1)
                }
            };
            out.push(LayerPlan { input: cur, output: next });
            cur = next;
        }
        Ok(out)
    }

    /// The grid's side in cells (`G`), or 0 for the other heads.
    pub fn grid_cells(&self) -> usize {
        match self.head {
            Head::Grid { cells_per_px, span_px } => cells_per_px * span_px,
            _ => 0,
        }
    }

    /// Crop coordinate (pixels, x = column) of the grid's left/top edge.
    pub fn grid_origin_px(&self) -> f32 {
        match self.head {
            Head::Grid { span_px, .. } => (self.input_px / 2) as f32 - ((span_px - 1) / 2) as f32,
            _ => 0.0,
        }
    }

    /// The pair-sample spec of this model (`pairs` must be set; else a one-electron spec) for events
    /// `[ev_lo, ev_lo + ev_count)` and read noise `sigma_e`.
    pub fn pair_spec(&self, seed: u64, ev_lo: u32, ev_count: u32, sigma_e: f32) -> super::pairs::PairSpec {
        let p = self.pairs.unwrap_or(PairSamples { p_two: 0.0, max_sep_px: 1, extra_mean: 0.0, extra_max: 0 });
        super::pairs::PairSpec {
            sigma_e,
            p_two: p.p_two,
            max_sep_px: p.max_sep_px,
            shift_px: self.shift_px as u32,
            side: self.input_px as u32,
            input_scale: self.input_scale,
            extra_mean: p.extra_mean,
            extra_max: p.extra_max,
            ..super::pairs::PairSpec::new(seed, ev_lo, ev_count)
        }
    }
}

/// Input and output shape of one layer for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerPlan {
    pub input: Shape4,
    pub output: Shape4,
}

/// One named tensor (PyTorch state-dict name and shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// Trained by the optimizer (weights, biases, gamma, beta); else a buffer (running stats).
    pub trainable: bool,
}

/// Indices into [`Model::tensors`] of one layer's tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerTensors {
    /// Conv/linear weight, batch-norm gamma.
    pub weight: Option<usize>,
    /// Conv/linear bias, batch-norm beta.
    pub bias: Option<usize>,
    pub running_mean: Option<usize>,
    pub running_var: Option<usize>,
}

/// A model: config + tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub cfg: ModelConfig,
    pub tensors: Vec<Tensor>,
    pub layer_tensors: Vec<LayerTensors>,
    /// Batch-norm `num_batches_tracked` (one count for the whole model: every BN layer sees every step).
    pub batches_tracked: i64,
}

impl Model {
    /// A freshly initialised model (He normal weights, zero biases, gamma 1, beta 0, running stats 0/1).
    pub fn new(cfg: ModelConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let plan = cfg.plan(1)?;
        let mut tensors = Vec::new();
        let mut layer_tensors = Vec::new();
        for (i, (l, p)) in cfg.layers.iter().zip(&plan).enumerate() {
            let mut lt = LayerTensors::default();
            let mut push = |suffix: &str, shape: Vec<usize>, data: Vec<f32>, trainable: bool| {
                tensors.push(Tensor { name: format!("{i}.{suffix}"), shape, data, trainable });
                tensors.len() - 1
            };
            match *l {
                LayerSpec::Conv2d { out_channels, kernel, .. } => {
                    let fan_in = p.input.c * kernel * kernel;
                    let len = out_channels * fan_in;
                    let w = he_normal(seed, i as u32, len, fan_in);
                    lt.weight = Some(push("weight", vec![out_channels, p.input.c, kernel, kernel], w, true));
                    lt.bias = Some(push("bias", vec![out_channels], vec![0.0; out_channels], true));
                }
                LayerSpec::Linear { out_features } => {
                    let fan_in = p.input.c;
                    let w = he_normal(seed, i as u32, out_features * fan_in, fan_in);
                    lt.weight = Some(push("weight", vec![out_features, fan_in], w, true));
                    lt.bias = Some(push("bias", vec![out_features], vec![0.0; out_features], true));
                }
                LayerSpec::BatchNorm2d { .. } => {
                    let c = p.input.c;
                    lt.weight = Some(push("weight", vec![c], vec![1.0; c], true));
                    lt.bias = Some(push("bias", vec![c], vec![0.0; c], true));
                    lt.running_mean = Some(push("running_mean", vec![c], vec![0.0; c], false));
                    lt.running_var = Some(push("running_var", vec![c], vec![1.0; c], false));
                }
                _ => {}
            }
            layer_tensors.push(lt);
        }
        Ok(Self { cfg, tensors, layer_tensors, batches_tracked: 0 })
    }

    /// Number of trainable values.
    pub fn n_trainable(&self) -> usize {
        self.tensors.iter().filter(|t| t.trainable).map(|t| t.data.len()).sum()
    }

    fn t(&self, i: Option<usize>) -> &[f32] {
        &self.tensors[i.expect("layer tensor")].data
    }

    /// The inference model with every batch norm that directly follows a convolution folded into
    /// it: `w' = w * g`, `b' = (b - running_mean) * g + beta` with `g = gamma / sqrt(running_var + eps)`
    /// per output channel. Its evaluation-mode output equals this model's (to float rounding); it
    /// has fewer layers, so its tensor names differ (it is not for saving).
    pub fn fold_batchnorm(&self) -> Result<Model> {
        let mut layers = Vec::new();
        let mut tensors: Vec<Tensor> = Vec::new();
        let mut layer_tensors = Vec::new();
        let mut i = 0;
        while i < self.cfg.layers.len() {
            let lt = self.layer_tensors[i];
            let fold = matches!(self.cfg.layers[i], LayerSpec::Conv2d { .. })
                && matches!(self.cfg.layers.get(i + 1), Some(LayerSpec::BatchNorm2d { .. }));
            let j = layers.len();
            let mut nt = LayerTensors::default();
            let mut push = |suffix: &str, t: &Tensor, data: Vec<f32>| {
                tensors.push(Tensor {
                    name: format!("{j}.{suffix}"),
                    shape: t.shape.clone(),
                    data,
                    trainable: t.trainable,
                });
                Some(tensors.len() - 1)
            };
            if fold {
                let LayerSpec::BatchNorm2d { eps, .. } = self.cfg.layers[i + 1] else { unreachable!() };
                let bn = self.layer_tensors[i + 1];
                let (w, b) = (&self.tensors[lt.weight.unwrap()], &self.tensors[lt.bias.unwrap()]);
                let (gamma, beta) = (self.t(bn.weight), self.t(bn.bias));
                let (rm, rv) = (self.t(bn.running_mean), self.t(bn.running_var));
                let per_out = w.data.len() / b.data.len();
                let g: Vec<f32> = (0..b.data.len()).map(|o| gamma[o] / (rv[o] + eps).sqrt()).collect();
                let wd = w.data.iter().enumerate().map(|(k, &v)| v * g[k / per_out]).collect();
                let bd = (0..b.data.len()).map(|o| (b.data[o] - rm[o]) * g[o] + beta[o]).collect();
                nt.weight = push("weight", w, wd);
                nt.bias = push("bias", b, bd);
                layers.push(self.cfg.layers[i].clone());
                layer_tensors.push(nt);
                i += 2;
                continue;
            }
            for (slot, suffix) in [
                (lt.weight, "weight"),
                (lt.bias, "bias"),
                (lt.running_mean, "running_mean"),
                (lt.running_var, "running_var"),
            ] {
                if let Some(k) = slot {
                    let idx = push(suffix, &self.tensors[k], self.tensors[k].data.clone());
                    match suffix {
                        "weight" => nt.weight = idx,
                        "bias" => nt.bias = idx,
                        "running_mean" => nt.running_mean = idx,
                        _ => nt.running_var = idx,
                    }
                }
            }
            layers.push(self.cfg.layers[i].clone());
            layer_tensors.push(nt);
            i += 1;
        }
        let cfg = ModelConfig { layers, ..self.cfg.clone() };
        cfg.validate()?;
        Ok(Model { cfg, tensors, layer_tensors, batches_tracked: self.batches_tracked })
    }

    /// Forward pass on the CPU, with the fast layers of [`super::cpu_fast`] (tested against the
    /// twins). `train`: batch statistics (and running-average update), dropout with the mask of
    /// `(seed, step)`; returns every layer's output and what backward needs. Else (evaluation
    /// mode): running statistics and no dropout; the batch runs through the whole network in
    /// chunks of a few samples (whose activations stay in the cache), and only the network's output
    /// is kept: `outs` has one entry per layer, all empty but the last, and `aux` is all
    /// [`Aux::None`].
    pub fn forward_cpu(&mut self, x: &[f32], n: usize, train: bool, seed: u64, step: u64) -> Result<Activations> {
        let plan = self.cfg.plan(n)?;
        super::check_len("model input", x.len(), n * self.cfg.input_px * self.cfg.input_px);
        if !train {
            let mut outs: Vec<Vec<f32>> = plan.iter().map(|_| Vec::new()).collect();
            if let Some(last) = outs.last_mut() {
                *last = self.eval_cpu(x, n, &plan, &vec![false; plan.len()]);
            }
            return Ok(Activations { n, outs, aux: vec![Aux::None; plan.len()] });
        }
        let mut outs: Vec<Vec<f32>> = Vec::with_capacity(plan.len());
        let mut aux: Vec<Aux> = Vec::with_capacity(plan.len());
        // Batch statistics of the next layer (a batch norm) computed with a ReLU's output.
        let mut stats_ahead: Option<(Vec<f32>, Vec<f32>)> = None;
        let mut i = 0;
        while i < plan.len() {
            let p = plan[i];
            let input: &[f32] = if i == 0 { x } else { &outs[i - 1] };
            let mut y = zeroed::<f32>(p.output.len());
            let lt = self.layer_tensors[i];
            let mut a = Aux::None;
            // The output of layer i + 1 when computed with layer i's (a max-pool after a batch norm).
            let mut pooled = None;
            match self.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    conv2d_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), &mut y);
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n, in_f: p.input.c, out_f: out_features };
                    linear_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), &mut y);
                }
                LayerSpec::Relu => {
                    if let Some(&LayerSpec::BatchNorm2d { eps, .. }) = self.cfg.layers.get(i + 1) {
                        // ReLU -> BatchNorm2d: the statistics in the same pass.
                        let s = BatchNorm2dShape { x: p.output, eps };
                        let (mut mean, mut var) = (vec![0.0; s.x.c], vec![0.0; s.x.c]);
                        relu_batchnorm2d_stats_fast(&s, input, &mut y, &mut mean, &mut var);
                        stats_ahead = Some((mean, var));
                    } else {
                        relu_fwd_fast(input, &mut y);
                    }
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                    let mut idx = zeroed::<u32>(p.output.len());
                    maxpool2d_fwd_fast(&s, input, &mut y, &mut idx);
                    a = Aux::Idx(idx);
                }
                LayerSpec::BatchNorm2d { eps, momentum } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let (mean, var) = stats_ahead.take().unwrap_or_else(|| {
                        let (mut mean, mut var) = (vec![0.0; s.x.c], vec![0.0; s.x.c]);
                        batchnorm2d_stats_fast(&s, input, &mut mean, &mut var);
                        (mean, var)
                    });
                    let (g, b) = (self.t(lt.weight), self.t(lt.bias));
                    if let Some(&LayerSpec::MaxPool2d { kernel, stride }) = self.cfg.layers.get(i + 1) {
                        // BatchNorm2d -> MaxPool2d: the pooling in the same pass.
                        let pool = MaxPool2dShape { input: p.output, k: kernel, stride: stride.unwrap_or(kernel) };
                        let q = plan[i + 1].output.len();
                        let (mut yp, mut idx) = (zeroed::<f32>(q), zeroed::<u32>(q));
                        batchnorm2d_maxpool2d_fwd_fast(&s, &pool, input, &mean, &var, g, b, &mut y, &mut yp, &mut idx);
                        pooled = Some((yp, idx));
                    } else {
                        batchnorm2d_fwd_fast(&s, input, &mean, &var, g, b, &mut y);
                    }
                    let (rm, rv) = (lt.running_mean.unwrap(), lt.running_var.unwrap());
                    let mut run_mean = std::mem::take(&mut self.tensors[rm].data);
                    let mut run_var = std::mem::take(&mut self.tensors[rv].data);
                    batchnorm2d_running_cpu(&s, momentum, &mean, &var, &mut run_mean, &mut run_var);
                    self.tensors[rm].data = run_mean;
                    self.tensors[rv].data = run_var;
                    a = Aux::Stats { mean, var };
                }
                LayerSpec::Dropout { p: prob } => {
                    dropout_fwd_fast(&DropoutCfg { n: y.len(), p: prob, seed, step, layer: i as u32 }, input, &mut y);
                }
                LayerSpec::Flatten => y.copy_from_slice(input),
            }
            outs.push(y);
            aux.push(a);
            i += 1;
            if let Some((yp, idx)) = pooled {
                outs.push(yp);
                aux.push(Aux::Idx(idx));
                i += 1;
            }
        }
        if self.cfg.layers.iter().any(|l| matches!(l, LayerSpec::BatchNorm2d { .. })) {
            self.batches_tracked += 1;
        }
        Ok(Activations { n, outs, aux })
    }

    /// The evaluation-mode output of `n` samples with the activations between layers stored as
    /// `precision` says: with f16, rounded to f16 wherever the GPU's f16 path stores f16
    /// ([`super::precision`]), so this is the twin of [`super::gpu_net::GpuNet::new_inference`].
    pub fn eval_outputs_cpu(&self, x: &[f32], n: usize, precision: NetPrecision) -> Result<Vec<f32>> {
        let plan = self.cfg.plan(n)?;
        super::check_len("model input", x.len(), n * self.cfg.input_px * self.cfg.input_px);
        Ok(self.eval_cpu(x, n, &plan, &half_activations(&self.cfg.layers, precision == NetPrecision::F16)))
    }

    /// Evaluation-mode forward pass of `n` samples (`plan` non-empty): the batch is cut into
    /// chunks of at most [`EVAL_CHUNK_ELEMS`] values per layer output, and each chunk runs through
    /// the whole network in one task with two reused scratch buffers. Returns the last output.
    fn eval_cpu(&self, x: &[f32], n: usize, plan: &[LayerPlan], half: &[bool]) -> Vec<f32> {
        let per_sample = |s: Shape4| s.c * s.h * s.w;
        let (px, out_per) = (per_sample(plan[0].input), per_sample(plan[plan.len() - 1].output));
        let widest = plan.iter().map(|p| per_sample(p.output)).max().unwrap_or(1).max(1);
        let chunk = (EVAL_CHUNK_ELEMS / widest).clamp(1, n.max(1));
        let mut out = zeroed::<f32>(n * out_per);
        if out.is_empty() {
            return out;
        }
        out.par_chunks_mut(chunk * out_per).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |(a, b), (ci, o)| {
                let k = o.len() / out_per;
                self.eval_chunk(&x[ci * chunk * px..][..k * px], k, plan, half, (a, b), o);
            },
        );
        out
    }

    /// [`Self::eval_cpu`] of one chunk of `k` samples: `x` in, `out` the last layer's output;
    /// `a` holds the current activation, `b` receives the next one (then they swap).
    fn eval_chunk(
        &self,
        x: &[f32],
        k: usize,
        plan: &[LayerPlan],
        half: &[bool],
        (a, b): (&mut Vec<f32>, &mut Vec<f32>),
        out: &mut [f32],
    ) {
        fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            &mut v[..len]
        }
        let last = plan.len() - 1;
        // Length of the current activation in `a`; None: the current activation is `x`.
        let mut cur: Option<usize> = None;
        let mut i = 0;
        while i < plan.len() {
            let si = Shape4 { n: k, ..plan[i].input };
            let input: &[f32] = cur.map_or(x, |len| &a[..len]);
            let layer = &self.cfg.layers[i];
            if matches!(layer, LayerSpec::Flatten | LayerSpec::Dropout { .. }) {
                // The identity in evaluation mode.
                if i == last {
                    out.copy_from_slice(input);
                }
                i += 1;
                continue;
            }
            // `[ReLU ->] [BatchNorm2d ->] MaxPool2d` (at least two of them) runs as one step, pooled
            // first: layers i..=end.
            let relu = matches!(layer, LayerSpec::Relu);
            let j = i + relu as usize;
            let bn = matches!(self.cfg.layers.get(j), Some(LayerSpec::BatchNorm2d { .. }));
            let q = j + bn as usize;
            let fused = (relu || bn) && matches!(self.cfg.layers.get(q), Some(LayerSpec::MaxPool2d { .. }));
            let end = if fused { q } else { i };
            let so = Shape4 { n: k, ..plan[end].output };
            let y: &mut [f32] = if end == last { &mut *out } else { grow(b, so.len()) };
            let lt = self.layer_tensors[i];
            match *layer {
                _ if fused => {
                    let LayerSpec::MaxPool2d { kernel, stride } = self.cfg.layers[q] else { unreachable!() };
                    let pool = MaxPool2dShape { input: si, k: kernel, stride: stride.unwrap_or(kernel) };
                    let bn = match self.cfg.layers[j] {
                        LayerSpec::BatchNorm2d { eps, .. } if bn => {
                            let lt = self.layer_tensors[j];
                            Some(BatchNorm2dEval {
                                s: BatchNorm2dShape { x: si, eps },
                                mean: self.t(lt.running_mean),
                                var: self.t(lt.running_var),
                                gamma: self.t(lt.weight),
                                beta: self.t(lt.bias),
                            })
                        }
                        _ => None,
                    };
                    relu_batchnorm2d_maxpool2d_eval_fast(&pool, relu, bn, input, y);
                }
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(si, out_channels, kernel, kernel, padding, stride);
                    conv2d_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), y);
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n: k, in_f: si.c, out_f: out_features };
                    linear_fwd_fast(&s, input, self.t(lt.weight), self.t(lt.bias), y);
                }
                LayerSpec::Relu => relu_fwd_fast(input, y),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: si, k: kernel, stride: stride.unwrap_or(kernel) };
                    maxpool2d_fwd_values_fast(&s, input, y);
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: si, eps };
                    let (rm, rv) = (self.t(lt.running_mean), self.t(lt.running_var));
                    batchnorm2d_fwd_fast(&s, input, rm, rv, self.t(lt.weight), self.t(lt.bias), y);
                }
                LayerSpec::Flatten | LayerSpec::Dropout { .. } => unreachable!("skipped above"),
            }
            if half[end] {
                // What the GPU's f16 store keeps (the layers fused here commute with the rounding:
                // ReLU and max-pool select, and batch norm is monotone per channel).
                round_f16(y);
            }
            if end != last {
                std::mem::swap(a, b);
                cur = Some(so.len());
            }
            i = end + 1;
        }
    }

    /// Backward pass on the CPU (fast layers) from `dout` = dL/d(last output), after a
    /// training-mode forward pass. Returns the gradient of every trainable tensor (same order as
    /// `tensors`; empty for buffers). A `[ReLU ->] BatchNorm2d -> MaxPool2d` run of layers goes
    /// backward in one fused pass ([`maxpool2d_batchnorm2d_bwd_fast`]).
    pub fn backward_cpu(
        &self,
        x: &[f32],
        act: &Activations,
        dout: &[f32],
        seed: u64,
        step: u64,
    ) -> Result<Vec<Vec<f32>>> {
        let n = act.n;
        let plan = self.cfg.plan(n)?;
        let needs_train = || Error::Other("backward needs a training-mode forward".into());
        if act.outs.len() != plan.len() || act.outs.iter().zip(&plan).any(|(o, p)| o.len() != p.output.len()) {
            return Err(needs_train());
        }
        let mut grads: Vec<Vec<f32>> = self.tensors.iter().map(|_| Vec::new()).collect();
        let mut dy = dout.to_vec();
        let mut i = plan.len();
        while i > 0 {
            i -= 1;
            let p = plan[i];
            let input: &[f32] = if i == 0 { x } else { &act.outs[i - 1] };
            let lt = self.layer_tensors[i];
            if let LayerSpec::MaxPool2d { kernel, stride } = self.cfg.layers[i]
                && i >= 1
                && let LayerSpec::BatchNorm2d { eps, .. } = self.cfg.layers[i - 1]
            {
                // [ReLU ->] BatchNorm2d -> MaxPool2d, fused.
                let relu = i >= 2 && matches!(self.cfg.layers[i - 2], LayerSpec::Relu);
                let pool = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                let bn = BatchNorm2dShape { x: plan[i - 1].input, eps };
                let bn_x: &[f32] = if i == 1 { x } else { &act.outs[i - 2] };
                let Aux::Idx(idx) = &act.aux[i] else { unreachable!("max-pool indices") };
                let Aux::Stats { mean, var } = &act.aux[i - 1] else { return Err(needs_train()) };
                let blt = self.layer_tensors[i - 1];
                let c = bn.x.c;
                let (mut dg, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
                let mut dx = zeroed::<f32>(bn.x.len());
                maxpool2d_batchnorm2d_bwd_fast(
                    &pool,
                    &bn,
                    relu,
                    bn_x,
                    mean,
                    var,
                    self.t(blt.weight),
                    idx,
                    &dy,
                    &mut dg,
                    &mut dbeta,
                    &mut dx,
                );
                grads[blt.weight.unwrap()] = dg;
                grads[blt.bias.unwrap()] = dbeta;
                dy = dx;
                i = if relu { i - 2 } else { i - 1 };
                continue;
            }
            if matches!(self.cfg.layers[i], LayerSpec::Flatten) {
                continue; // dx = dy
            }
            let mut dx = zeroed::<f32>(if i == 0 && matches!(self.cfg.layers[0], LayerSpec::Conv2d { .. }) {
                0 // the input gradient of the first convolution is not needed
            } else {
                p.input.len()
            });
            match self.cfg.layers[i] {
                LayerSpec::Conv2d { out_channels, kernel, padding, stride } => {
                    let s = Conv2dShape::new(p.input, out_channels, kernel, kernel, padding, stride);
                    let (mut dw, mut db) = (vec![0.0; s.weight().len()], vec![0.0; out_channels]);
                    conv2d_bwd_weight_fast(&s, input, &dy, &mut dw, &mut db);
                    if i > 0 {
                        conv2d_bwd_input_fast(&s, self.t(lt.weight), &dy, &mut dx);
                    }
                    grads[lt.weight.unwrap()] = dw;
                    grads[lt.bias.unwrap()] = db;
                }
                LayerSpec::Linear { out_features } => {
                    let s = LinearShape { n, in_f: p.input.c, out_f: out_features };
                    let (mut dw, mut db) = (vec![0.0; out_features * p.input.c], vec![0.0; out_features]);
                    linear_bwd_weight_fast(&s, input, &dy, &mut dw, &mut db);
                    linear_bwd_input_fast(&s, self.t(lt.weight), &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dw;
                    grads[lt.bias.unwrap()] = db;
                }
                LayerSpec::Relu => relu_bwd_fast(&act.outs[i], &dy, &mut dx),
                LayerSpec::MaxPool2d { kernel, stride } => {
                    let s = MaxPool2dShape { input: p.input, k: kernel, stride: stride.unwrap_or(kernel) };
                    let Aux::Idx(idx) = &act.aux[i] else { unreachable!("max-pool indices") };
                    maxpool2d_bwd_fast(&s, idx, &dy, &mut dx);
                }
                LayerSpec::BatchNorm2d { eps, .. } => {
                    let s = BatchNorm2dShape { x: p.input, eps };
                    let Aux::Stats { mean, var } = &act.aux[i] else { return Err(needs_train()) };
                    let c = p.input.c;
                    let (mut dg, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
                    batchnorm2d_bwd_reduce_fast(&s, input, mean, var, &dy, &mut dg, &mut dbeta);
                    let g = self.t(lt.weight);
                    batchnorm2d_bwd_input_fast(&s, input, mean, var, g, &dg, &dbeta, &dy, &mut dx);
                    grads[lt.weight.unwrap()] = dg;
                    grads[lt.bias.unwrap()] = dbeta;
                }
                LayerSpec::Dropout { p: prob } => {
                    dropout_bwd_fast(&DropoutCfg { n: dy.len(), p: prob, seed, step, layer: i as u32 }, &dy, &mut dx);
                }
                LayerSpec::Flatten => unreachable!("handled above"),
            }
            dy = dx;
        }
        Ok(grads)
    }
}

/// What a layer's forward pass keeps for its backward pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Aux {
    None,
    /// Max-pool arg-max indices.
    Idx(Vec<u32>),
    /// Batch-norm batch statistics (biased variance).
    Stats {
        mean: Vec<f32>,
        var: Vec<f32>,
    },
}

/// Every layer's output of one forward pass.
#[derive(Clone, Debug)]
pub struct Activations {
    pub n: usize,
    pub outs: Vec<Vec<f32>>,
    pub aux: Vec<Aux>,
}

impl Activations {
    /// The network's output (logits or x, y).
    pub fn last(&self) -> &[f32] {
        self.outs.last().map(|v| v.as_slice()).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_chain_to_their_heads() {
        for name in ModelConfig::PRESETS {
            let cfg = ModelConfig::preset(name).unwrap();
            let plan = cfg.plan(3).unwrap();
            let last = plan.last().unwrap().output;
            assert_eq!(last.c, cfg.head_outputs(), "{name}");
        }
        let seed = ModelConfig::preset("seed").unwrap();
        let plan = seed.plan(2).unwrap();
        // 41 -> conv k4 pad1 -> 40 -> pool4 -> 10 -> conv k3 pad1 -> 10 -> pool3 -> 3 -> conv k2 -> 2 -> pool2 -> 1
        assert_eq!(plan[0].output, Shape4::new(2, 16, 40, 40));
        assert_eq!(plan[3].output, Shape4::new(2, 16, 10, 10));
        assert_eq!(plan[7].output, Shape4::new(2, 32, 3, 3));
        assert_eq!(plan[8].output, Shape4::new(2, 64, 2, 2));
        assert_eq!(plan[11].output, Shape4::new(2, 64, 1, 1));
        assert_eq!(plan[14].output, Shape4::new(2, 100, 1, 1));
        let m = Model::new(seed, 1).unwrap();
        let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(&names[..6], &["0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var"]);
        assert_eq!(m.tensors[0].shape, vec![16, 1, 4, 4]);
        assert_eq!(names.last(), Some(&"14.bias"));
    }

    #[test]
    fn folding_batch_norm_keeps_the_output() {
        let mut m = Model::new(ModelConfig::preset("fast").unwrap(), 3).unwrap();
        // non-trivial statistics and affine parameters
        for (k, t) in m.tensors.iter_mut().enumerate() {
            if t.name.ends_with("running_var") || (t.name.ends_with("weight") && t.shape.len() == 1) {
                t.data.iter_mut().enumerate().for_each(|(i, v)| *v = 0.5 + 0.1 * ((i + k) % 7) as f32);
            } else if t.name.ends_with("running_mean") || t.name.ends_with("bias") {
                t.data.iter_mut().enumerate().for_each(|(i, v)| *v = 0.05 * ((i + k) % 5) as f32 - 0.1);
            }
        }
        let folded = m.fold_batchnorm().unwrap();
        assert_eq!(folded.cfg.layers.len(), m.cfg.layers.len() - 2, "both conv+BN pairs folded");
        let n = 3;
        let x: Vec<f32> = (0..n * 121).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.3) * 2.0).collect();
        let a = m.clone().forward_cpu(&x, n, false, 0, 0).unwrap();
        let b = folded.clone().forward_cpu(&x, n, false, 0, 0).unwrap();
        let scale = a.last().iter().fold(0.0f32, |s, &v| s.max(v.abs()));
        for (u, v) in a.last().iter().zip(b.last()) {
            assert!((u - v).abs() <= 1e-4 * scale.max(1.0), "{u} vs {v}");
        }
        // the seed network has BN after ReLU: nothing to fold
        let seed = Model::new(ModelConfig::preset("seed").unwrap(), 1).unwrap();
        assert_eq!(seed.fold_batchnorm().unwrap().cfg.layers.len(), seed.cfg.layers.len());
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let mut cfg = ModelConfig::preset("fast").unwrap();
        cfg.layers.pop();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("head needs 576"), "{e}");
        let mut cfg = ModelConfig::preset("seed").unwrap();
        cfg.input_px = 40;
        assert!(cfg.validate().unwrap_err().to_string().contains("odd"));
        assert!(ModelConfig::preset("big").unwrap_err().to_string().contains("--preset"));
    }
}
