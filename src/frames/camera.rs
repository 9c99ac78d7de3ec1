//! Readouts of real cameras: the gain, dark level and read noise that make simulated frames look
//! like the camera's own files (integer ADU, u16).
//!
//! `4dcamera`, the NCEM 4D Camera at 300 kV: dark level 20.55 ADU and read noise 1.79 ADU as
//! measured on the camera's frames (Renner et al. 2025, arXiv:2511.03933), and a gain that puts
//! the peak of the 3x3 charge of `emsim events --preset 4dcamera` at the camera's 19.8 ADU
//! (`emsim events response`: 390.7 e- for a 100,000-event library, so 19.8 / 390.7 ADU/e-).

use crate::{Error, Result};

/// Known camera names.
pub const KNOWN_CAMERAS: &[&str] = &["4dcamera"];

/// A camera's readout.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Camera {
    pub name: &'static str,
    /// Pixel pitch of the sensor, um (the event library must have it).
    pub pitch_um: f64,
    pub gain_adu_per_e: f32,
    pub dark_adu: f32,
    pub read_noise_adu: f32,
}

/// Peak of the 3x3 charge of the `4dcamera` preset's events, e- (see the module documentation).
pub const FOUR_D_CAMERA_PEAK_3X3_E: f32 = 390.7;

/// The NCEM 4D Camera at 300 kV.
pub const FOUR_D_CAMERA: Camera = Camera {
    name: "4dcamera",
    pitch_um: 10.0,
    gain_adu_per_e: 19.8 / FOUR_D_CAMERA_PEAK_3X3_E,
    dark_adu: 20.55,
    read_noise_adu: 1.79,
};

impl Camera {
    /// The readout named `name` (`--camera`).
    pub fn named(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "4dcamera" | "4d-camera" | "4d_camera" => Ok(FOUR_D_CAMERA),
            _ => Err(Error::invalid(
                "--camera",
                format!("unknown camera '{name}', expected one of {}", KNOWN_CAMERAS.join(", ")),
            )),
        }
    }

    /// Read noise in electrons.
    pub fn read_noise_e(&self) -> f32 {
        self.read_noise_adu / self.gain_adu_per_e
    }

    /// Checks that a library of pixel pitch `pitch_um` is this camera's (errors name `--library`).
    pub fn check_library_pitch(&self, pitch_um: f64, library: &str) -> Result<()> {
        if (pitch_um - self.pitch_um).abs() > 1e-6 * self.pitch_um {
            return Err(Error::invalid(
                "--library",
                format!(
                    "{library} has {pitch_um} um pixels, the {} has {} um: make one with \
                     `emsim events --preset {}`",
                    self.name, self.pitch_um, self.name
                ),
            ));
        }
        Ok(())
    }
}
