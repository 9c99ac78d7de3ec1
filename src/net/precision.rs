//! Inference with f16 activations (`--net-precision f16`): the layers between the network's
//! input and output store their activations as f16 on the GPU, halving the memory traffic
//! between kernels; weights, the input crops and the last layer's output stay f32, and every
//! kernel computes in f32 (it converts on load and rounds once on store). Training is always f32.
//!
//! The forward kernels come in four storage variants (`shaders/shared/act_*.wgsl`, registered by
//! `act_kernels!` in `src/shaders.rs`). Their CPU twin is the f32 twin of the layer with its
//! output rounded to the nearest f16 ([`round_f16`]) wherever the GPU stores f16: the input
//! values are f16 already, and f16 -> f32 is exact.

use crate::shaders::Kernel;
use half::f16;

/// Storage of the activations between layers at inference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetPrecision {
    /// f32 everywhere (the default; the only choice on the CPU path and for training).
    #[default]
    F32,
    /// f16 activations between layers, on adapters with `SHADER_F16` (f32 elsewhere).
    F16,
}

impl NetPrecision {
    /// The names `--net-precision` takes.
    pub const NAMES: [&'static str; 2] = ["f32", "f16"];

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

impl std::str::FromStr for NetPrecision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            _ => Err(format!("expected f32 or f16, got {s:?}")),
        }
    }
}

/// Storage types of one layer kernel's input `x` and output `y` (true: f16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActIo {
    pub x16: bool,
    pub y16: bool,
}

impl ActIo {
    pub const F32: Self = Self { x16: false, y16: false };

    /// The kernel for this storage: `plain` (f32 / f32) or one of the `f16` variants
    /// (`act_kernels!` order: x32 y16, x16 y16, x16 y32).
    pub fn pick(self, plain: &'static Kernel, f16: &'static [Kernel; 3]) -> &'static Kernel {
        match (self.x16, self.y16) {
            (false, false) => plain,
            (false, true) => &f16[0],
            (true, true) => &f16[1],
            (true, false) => &f16[2],
        }
    }

    /// Bytes of `len` input / output elements.
    pub fn x_bytes(self, len: usize) -> u64 {
        elem_bytes(self.x16, len)
    }
    pub fn y_bytes(self, len: usize) -> u64 {
        elem_bytes(self.y16, len)
    }
}

/// Bytes of `len` elements of f16 (`half`) or f32.
pub fn elem_bytes(half: bool, len: usize) -> u64 {
    len as u64 * if half { 2 } else { 4 }
}

/// Rounds every value to the nearest f16 (ties to even; beyond the f16 range, +-inf), in place:
/// what a kernel's f16 store keeps.
pub fn round_f16(v: &mut [f32]) {
    for x in v {
        *x = f16::from_f32(*x).to_f32();
    }
}

/// The f16 bit patterns of `v` (for uploads to f16 buffers).
pub fn to_f16_bits(v: &[f32]) -> Vec<u16> {
    v.iter().map(|&x| f16::from_f32(x).to_bits()).collect()
}

/// f16 bit patterns back to f32 (exact).
pub fn from_f16_bits(v: &[u16]) -> Vec<f32> {
    v.iter().map(|&b| f16::from_bits(b).to_f32()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_f16_values_and_rounds_to_nearest() {
        let mut v = vec![1.0, 0.5, -2.0, 1.0 + 1.0 / 1024.0, 1.0 + 1.0 / 4096.0, 65504.0, 1e6];
        round_f16(&mut v);
        assert_eq!(v[..4], [1.0, 0.5, -2.0, 1.0 + 1.0 / 1024.0]);
        assert_eq!(v[4], 1.0, "below half an ulp rounds down");
        assert_eq!(v[5], 65504.0);
        assert!(v[6].is_infinite());
        let bits = to_f16_bits(&[0.1, -3.5]);
        assert_eq!(from_f16_bits(&bits), [f16::from_f32(0.1).to_f32(), -3.5]);
    }

    #[test]
    fn precision_parses() {
        assert_eq!("f16".parse::<NetPrecision>(), Ok(NetPrecision::F16));
        assert!("bf16".parse::<NetPrecision>().unwrap_err().contains("f32 or f16"));
    }
}
