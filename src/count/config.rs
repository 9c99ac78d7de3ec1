//! What `emsim count` is asked to do: the methods, the configuration, the network to load and
//! the noise estimate.

use crate::{Error, Result};

use super::*;

/// A localization method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Centre of the brightest pixel of the 3x3 around the found centre.
    MaxPixel,
    C3x3,
    C5x5,
    /// 3x3 centroid of the pixels above the centroid threshold.
    C3x3T,
    C5x5T,
    /// The sub-pixel network (`--model`): probability-weighted mean near the peak of its grid.
    Net,
    /// stempy's classic counter with its own finder (`count::stempy`): every pixel strictly
    /// above its 8 neighbours after the dark and thresholds, at the pixel's centre.
    Stempy,
}

impl Method {
    /// In the order of `Localized::xy`.
    pub const ALL: [Method; 5] = [Method::MaxPixel, Method::C3x3, Method::C5x5, Method::C3x3T, Method::C5x5T];

    pub fn name(self) -> &'static str {
        match self {
            Method::MaxPixel => "max",
            Method::C3x3 => "c3x3",
            Method::C5x5 => "c5x5",
            Method::C3x3T => "c3x3t",
            Method::C5x5T => "c5x5t",
            Method::Net => "net",
            Method::Stempy => "stempy",
        }
    }

    /// Index into `Localized::xy` (the classical methods only).
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&m| m == self).expect("a classical method")
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "net" => return Ok(Method::Net),
            "stempy" => return Ok(Method::Stempy),
            _ => {}
        }
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            Error::invalid(
                "--method",
                format!("unknown method {s:?}; expected one of max, c3x3, c5x5, c3x3t, c5x5t, net, stempy"),
            )
        })
    }
}

/// How centres are found (`--finder`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Finder {
    /// Local maxima of the pixel values, as stempy's counter (electrons 1-2 pixels apart stay
    /// apart), whose pixel and 3x3 sum are above the background threshold; plus the faint ones:
    /// a pixel above `faint_threshold_n_sigma` whose 3x3 sum is above
    /// `faint_sum_threshold_n_sigma`, unless a candidate with a larger pixel lies within
    /// `suppress_px`.
    #[default]
    Pixel,
    /// Local maxima of the 3x3 sums (the EMSim notes' search), a pixel of the 3x3 above the
    /// background threshold; weaker centres within `suppress_px` dropped.
    Sum3,
}

impl Finder {
    /// `--finder` values.
    pub const NAMES: [&'static str; 2] = ["pixel", "sum3"];

    pub fn name(self) -> &'static str {
        match self {
            Finder::Pixel => "pixel",
            Finder::Sum3 => "sum3",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pixel" => Ok(Finder::Pixel),
            "sum3" => Ok(Finder::Sum3),
            _ => Err(Error::invalid("--finder", format!("unknown finder {s:?}; expected pixel or sum3"))),
        }
    }

    /// `FindParams::finder`.
    pub fn code(self) -> u32 {
        match self {
            Finder::Pixel => find::FINDER_PIXEL,
            Finder::Sum3 => find::FINDER_SUM3,
        }
    }
}

/// Finding and localization settings (stempy's names where they exist).
#[derive(Clone, Debug)]
pub struct CountConfig {
    /// Read-noise sigma in electrons; `None`: estimated from the data.
    pub noise_sigma_e: Option<f32>,
    /// How centres are found.
    pub finder: Finder,
    /// Background threshold in units of the noise sigma (stempy: background_threshold_n_sigma).
    pub background_threshold_n_sigma: f32,
    /// Pixel finder: a faint centre's pixel must exceed this many noise sigmas...
    pub faint_threshold_n_sigma: f32,
    /// ...and its 3x3 sum this many (of the pixel's noise sigma).
    pub faint_sum_threshold_n_sigma: f32,
    /// Reject centres with a pixel above this charge (X-ray-like hits); 0 = off.
    pub xray_threshold_e: f32,
    /// Threshold of the thresholded centroids, electrons (the EMSim notes: 40).
    pub centroid_threshold_e: f32,
    /// Weaker centres within this many pixels of a stronger one are dropped.
    pub suppress_px: u32,
    /// Gain in ADU per electron and scalar dark offset (from the frames file unless overridden).
    pub gain_adu_per_e: f32,
    pub offset_adu: f32,
    /// Per-pixel dark reference (ADU) and gain map (multiplier), H x W, optional.
    pub dark: Option<Vec<f32>>,
    pub gain_map: Option<Vec<f32>>,
    /// Frames per batch (0: automatic).
    pub batch_frames: u32,
    /// The network for `Method::Net` (crops around each found centre).
    pub net: Option<crate::net::model::Model>,
    /// Crops per network batch.
    pub net_batch: usize,
    /// Activation storage of the networks (f16 on GPUs with `SHADER_F16`; see
    /// [`crate::net::precision`]). The CPU path rounds as the GPU does, to reproduce it.
    pub net_precision: crate::net::precision::NetPrecision,
    /// `--net-kernel`: how the GPU runs a small perceptron (no pair splitting): as the
    /// one-dispatch kernel `net/mlp_count` (crop, layers and decoding per candidate) or a kernel
    /// per layer. The CPU path always fuses such networks. A counter on the GPU holds the one it
    /// chose (never `Auto`).
    pub net_kernel: NetKernel,
    /// The one-dispatch kernel's lanes share the weights they load by subgroup shuffles where the
    /// adapter has subgroup operations (the default); false: each lane reads every weight itself
    /// (`emsim bench` times both on GPUs with subgroups).
    pub net_subgroups: bool,
    /// `--split-pairs`: the one-vs-two classifier and the pair localizer (needs `net`).
    pub pairs: Option<split::PairModels>,
    /// The GPU kernels' layout; `None`: the adapter's ([`CountLayout::for_adapter`]). The
    /// results are the same in every layout (tests and benchmarks set it).
    pub layout: Option<CountLayout>,
}

/// How the GPU runs a small perceptron (`--net-kernel`); the electrons are the same either way
/// (to 1e-4 px with f32 weights).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetKernel {
    /// The one-dispatch kernel on adapters that run on the CPU (lavapipe), where it measures
    /// faster; a kernel per layer on other GPUs, until the one-dispatch kernel is timed there
    /// (docs/network.md).
    #[default]
    Auto,
    /// A kernel per layer (crops, linear layers, grid decoding).
    Layers,
    /// One kernel per batch: crop, layers and decoding per candidate.
    Fused,
}

impl NetKernel {
    /// The names `--net-kernel` takes, in variant order.
    pub const NAMES: [&'static str; 3] = ["auto", "layers", "fused"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The variant named `name` (one of [`Self::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Auto, Self::Layers, Self::Fused].into_iter().find(|k| k.name() == name)
    }

    /// Whether a small perceptron runs as the one-dispatch kernel on an adapter that runs on the
    /// CPU (`cpu_adapter`, as lavapipe) or not.
    pub fn fused_on(self, cpu_adapter: bool) -> bool {
        match self {
            Self::Auto => cpu_adapter,
            Self::Layers => false,
            Self::Fused => true,
        }
    }
}

/// Background threshold of the defaults, in noise sigmas.
pub const DEFAULT_BACKGROUND_THRESHOLD_N_SIGMA: f32 = 4.0;
/// Faint centres of the pixel finder: pixel threshold in noise sigmas.
pub const DEFAULT_FAINT_THRESHOLD_N_SIGMA: f32 = 3.0;
/// Faint centres of the pixel finder: 3x3-sum threshold in noise sigmas (of one pixel).
pub const DEFAULT_FAINT_SUM_THRESHOLD_N_SIGMA: f32 = 10.0;
/// X-ray rejection of the defaults (0: off), electrons.
pub const DEFAULT_XRAY_THRESHOLD_E: f32 = 0.0;
/// Pixel threshold of the thresholded centroids (the EMSim notes' 40), electrons.
pub const DEFAULT_CENTROID_THRESHOLD_E: f32 = 40.0;
/// Suppression radius of the defaults, pixels.
pub const DEFAULT_SUPPRESS_PX: u32 = 2;
/// Crops per network batch of the defaults.
pub const DEFAULT_NET_BATCH: usize = 2048;

impl Default for CountConfig {
    fn default() -> Self {
        Self {
            noise_sigma_e: None,
            finder: Finder::default(),
            background_threshold_n_sigma: DEFAULT_BACKGROUND_THRESHOLD_N_SIGMA,
            faint_threshold_n_sigma: DEFAULT_FAINT_THRESHOLD_N_SIGMA,
            faint_sum_threshold_n_sigma: DEFAULT_FAINT_SUM_THRESHOLD_N_SIGMA,
            xray_threshold_e: DEFAULT_XRAY_THRESHOLD_E,
            centroid_threshold_e: DEFAULT_CENTROID_THRESHOLD_E,
            suppress_px: DEFAULT_SUPPRESS_PX,
            gain_adu_per_e: 1.0,
            offset_adu: 0.0,
            dark: None,
            gain_map: None,
            batch_frames: 0,
            net: None,
            net_batch: DEFAULT_NET_BATCH,
            net_precision: Default::default(),
            net_kernel: NetKernel::Auto,
            net_subgroups: true,
            layout: None,
            pairs: None,
        }
    }
}

impl CountConfig {
    #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(x > 0.0)` rejects NaN with the values out of range")]
    pub fn validate(&self, height: u32, width: u32) -> Result<()> {
        if let Some(s) = self.noise_sigma_e
            && !(s >= 0.0 && s.is_finite())
        {
            return Err(Error::invalid("--sigma-e", format!("must be >= 0, got {s}")));
        }
        if !(self.background_threshold_n_sigma >= 0.0) {
            return Err(Error::invalid(
                "--background-threshold-n-sigma",
                format!("must be >= 0, got {}", self.background_threshold_n_sigma),
            ));
        }
        for (flag, v) in [
            ("--faint-threshold-n-sigma", self.faint_threshold_n_sigma),
            ("--faint-sum-threshold-n-sigma", self.faint_sum_threshold_n_sigma),
        ] {
            if !(v >= 0.0) {
                return Err(Error::invalid(flag, format!("must be >= 0, got {v}")));
            }
        }
        if !(self.xray_threshold_e >= 0.0) {
            return Err(Error::invalid(
                "--xray-threshold-e",
                format!("must be >= 0 (0 = off), got {}", self.xray_threshold_e),
            ));
        }
        if !(self.centroid_threshold_e >= 0.0) {
            return Err(Error::invalid(
                "--centroid-threshold-e",
                format!("must be >= 0, got {}", self.centroid_threshold_e),
            ));
        }
        if !(self.gain_adu_per_e > 0.0 && self.gain_adu_per_e.is_finite()) {
            return Err(Error::invalid("--gain", format!("must be > 0, got {}", self.gain_adu_per_e)));
        }
        let px = height as usize * width as usize;
        for (flag, m) in [("--dark", &self.dark), ("--gain-map", &self.gain_map)] {
            if let Some(m) = m
                && m.len() != px
            {
                return Err(Error::invalid(
                    flag,
                    format!("has {} values, the frames have {height}x{width} = {px}", m.len()),
                ));
            }
        }
        Ok(())
    }
}

/// Loads the network of `--method net`: `model`, or the shipped default
/// (`crate::default_model_path`, or with pair splitting `crate::default_split_model_path`); it
/// must be a single-electron localizer.
pub fn load_net_model(model: Option<&std::path::Path>, split_pairs: bool) -> Result<crate::net::model::Model> {
    let default = if split_pairs { crate::default_split_model_path() } else { crate::default_model_path() };
    let path = model.map(|p| p.to_path_buf()).unwrap_or(default);
    if model.is_none() && !path.exists() {
        return Err(Error::invalid(
            "--model",
            format!("--method net needs a model: none given and {} does not exist", path.display()),
        ));
    }
    let net = crate::io::model_file::load(&path, None)?.model;
    net.cfg.expect_role(&path, "--model", &crate::net::model::Head::Xy)?;
    Ok(net)
}

/// Frames the read-noise estimate of `emsim count` reads: the first 4.
pub const SIGMA_ESTIMATE_FRAMES: usize = 4;

impl CountConfig {
    /// The read-noise estimate of `emsim count` when no sigma is given: [`estimate_sigma_e`] of
    /// the first [`SIGMA_ESTIMATE_FRAMES`] frames of `adu` (frames of `frame_px` pixels), calibrated
    /// as the kernels do, with this configuration's dark (or offset), gain map and gain.
    pub fn estimate_sigma_from_adu(&self, adu: HostAdu<'_>, frame_px: usize) -> Option<f32> {
        match adu {
            HostAdu::F32(a) => self.estimate_from(a, frame_px),
            HostAdu::U16(a) => self.estimate_from(a, frame_px),
        }
    }

    fn estimate_from<T: Copy + Into<f32>>(&self, adu: &[T], px: usize) -> Option<f32> {
        let k = adu.len().min(SIGMA_ESTIMATE_FRAMES * px);
        estimate_sigma_e(adu[..k].iter().enumerate().map(|(i, &a)| {
            let j = i % px;
            let d = self.dark.as_ref().map_or(self.offset_adu, |d| d[j]);
            let g = self.gain_map.as_ref().map_or(1.0, |g| g[j]);
            (a.into() - d) * g / self.gain_adu_per_e
        }))
    }
}

/// Robust read-noise estimate from calibrated pixel values (electrons): the root mean square of
/// the negative values. Charge only adds, so negative values are (almost) pure noise, and for
/// zero-mean Gaussian noise E[x^2 | x < 0] = sigma^2. None if no value is negative.
pub fn estimate_sigma_e(values_e: impl Iterator<Item = f32>) -> Option<f32> {
    let (mut n, mut s2) = (0u64, 0f64);
    for v in values_e {
        if v < 0.0 {
            n += 1;
            s2 += v as f64 * v as f64;
        }
    }
    (n > 0).then(|| (s2 / n as f64).sqrt() as f32)
}
