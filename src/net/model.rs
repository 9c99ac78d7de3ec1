//! Network models: a config (a list of layers, PyTorch `nn.Sequential` style, plus the head and the
//! crop geometry), the presets, the shape plan for a batch, the parameter tensors with
//! PyTorch-style names (`"0.weight"`, `"2.running_mean"`, ... as `nn.Sequential.state_dict()`
//! names them), and the CPU forward/backward built from the layer twins (`model/cpu.rs`); the
//! presets are in `model/presets.rs`.

use serde::{Deserialize, Serialize};

use super::Shape4;
use super::batchnorm2d::{BatchNorm2dShape, batchnorm2d_running_cpu};
use super::conv2d::Conv2dShape;
use super::dropout::DropoutCfg;
use super::init::he_normal;
use super::linear::LinearShape;
use super::maxpool2d::MaxPool2dShape;
use super::precision::{NetPrecision, round_f16};
use crate::{Error, Result};

mod cpu;
mod mlp;
mod presets;

pub const SCHEMA: &str = "emsim-model/1";

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
/// patch), made by `net/make_pairs` (see `net::pairs::PairSpec`); the patch is the model's
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
        "tiny",
        "pair-seed",
        "pair-compact",
        "pair-reg",
        "pair-split",
        "pair-loc",
    ];

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
    #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
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
}

/// Which layer outputs are stored as f16 when `f16`: every one but the last (the network's
/// output stays f32), except that a copy layer (flatten, dropout) keeps its input's storage, so
/// the run of copy layers that ends a network and the layer that feeds it stay f32 too.
pub fn half_activations(layers: &[LayerSpec], f16: bool) -> Vec<bool> {
    let copy = |l: &LayerSpec| matches!(l, LayerSpec::Flatten | LayerSpec::Dropout { .. });
    let mut half = vec![false; layers.len()];
    if !f16 || layers.is_empty() {
        return half;
    }
    let last = layers.len() - 1;
    for (i, l) in layers.iter().enumerate() {
        half[i] = if copy(l) { i > 0 && half[i - 1] } else { i != last };
    }
    let mut i = last;
    while copy(&layers[i]) && i > 0 {
        i -= 1;
        half[i] = false;
    }
    half[last] = false;
    half
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
    fn copy_layers_keep_their_input_storage() {
        use LayerSpec::*;
        let conv = || Conv2d { out_channels: 2, kernel: 3, padding: 1, stride: 1 };
        let lin = || Linear { out_features: 4 };
        assert_eq!(
            half_activations(&[conv(), Relu, Flatten, lin(), Relu, lin()], true),
            [true, true, true, true, true, false]
        );
        assert_eq!(half_activations(&[Flatten, lin(), Relu, lin()], true), [false, true, true, false]);
        assert_eq!(
            half_activations(&[conv(), Relu, lin(), Dropout { p: 0.5 }, Flatten], true),
            [true, true, false, false, false]
        );
        assert_eq!(half_activations(&[conv(), Relu, lin()], false), [false; 3]);
    }

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
