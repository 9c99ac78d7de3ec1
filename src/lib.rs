//! emsim: direct-electron-detector simulation, counting and localization on the GPU (wgpu/WGSL),
//! with a CPU twin of every kernel.
//!
//! Stages, in the order data flows (docs/architecture.md): [`events`] (single-electron event
//! libraries: Monte Carlo transport, charge collection), [`frames`] (detector frames + truth),
//! [`count`] (finding and localizing electrons), [`net`] (the localization networks: layers,
//! training, inference), [`eval`] (scoring against the truth), with [`bench`](mod@bench) beside them.
//! Infrastructure: [`gpu`] (device, kernels, buffers), [`shaders`] (kernel registry), [`io`]
//! (file formats), [`rng`] (counter-based random numbers).

pub mod bench;
pub mod count;
pub mod error;
pub mod eval;
pub mod events;
pub mod frames;
pub mod gpu;
pub mod io;
pub mod net;
pub mod rng;
pub mod shaders;

pub use error::{Error, Result};

/// `"emsim <version>"`, stored in every output file.
pub fn generator() -> String {
    format!("emsim {}", env!("CARGO_PKG_VERSION"))
}

/// The peak resident memory of this process so far, MiB (Linux: `VmHWM` of `/proc/self/status`;
/// None elsewhere). Reported by `count --json` and `eval --json`, for sizing cluster jobs.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// The default network for `count --method net` (the trained `tiny` preset), in `assets/models/`.
pub fn default_model_path() -> std::path::PathBuf {
    shipped_model_path("tiny")
}

/// The default network with pair splitting (`count --method net --split-pairs`, `eval dose`): the
/// trained `fast-neighbours` preset, whose 11x11 crops the shipped pair models read too.
pub fn default_split_model_path() -> std::path::PathBuf {
    shipped_model_path("fast-neighbours")
}

/// A model shipped in `assets/models/` (`<name>.safetensors`).
pub fn shipped_model_path(name: &str) -> std::path::PathBuf {
    assets_dir().join(format!("models/{name}.safetensors"))
}

/// The default event library shipped in `assets/`.
pub fn default_library_path() -> std::path::PathBuf {
    assets_dir().join("events/default-300kev.h5")
}

/// Where the shipped assets are: `$EMSIM_ASSETS` when set (a binary copied to another machine or
/// installed away from its source tree), else the source tree's `assets/`.
pub fn assets_dir() -> std::path::PathBuf {
    match std::env::var_os("EMSIM_ASSETS") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"),
    }
}
