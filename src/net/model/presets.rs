//! The model presets: the EMSim notes' network, ours, and the pair-splitting models.

use super::{Head, LayerSpec, ModelConfig, PairSamples, SCHEMA};
use crate::{Error, Result};

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

impl ModelConfig {
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
            // A localizer for the detector's rate: a perceptron on the 9x9 crop, 27,776
            // multiply-adds per electron (81x128 + 128x64 + 64x144), a 3x3 px grid of quarter
            // pixels; the grid's spread keeps the sigma knob.
            "tiny" => ModelConfig {
                schema: SCHEMA.into(),
                name: "tiny".into(),
                input_px: 9,
                shift_px: 1,
                input_scale: 1e-3,
                head: Head::Grid { cells_per_px: 4, span_px: 3 },
                layers: vec![
                    Flatten,
                    Linear { out_features: 128 },
                    Relu,
                    Linear { out_features: 64 },
                    Relu,
                    Linear { out_features: 12 * 12 },
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
}
