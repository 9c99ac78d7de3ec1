//! The simulated 4D Camera against the real one: the single-electron response of a fresh
//! `--preset 4dcamera` library meets the calibration on the camera's measured figures, and
//! `emsim frames --camera 4dcamera` writes frames in the camera's ADU.

use emsim::events::build::{SimulateRequest, simulate_library};
use emsim::events::response::{FOUR_D_CAMERA_300KV, response};
use emsim::frames::camera::FOUR_D_CAMERA;
use emsim::io::frames_in::FramesReader;

mod common;
use common::cli::{emsim, stderr_line};

fn camera_library(count: usize, seed: u64) -> emsim::io::library::EventLibrary {
    let req = SimulateRequest { preset: "4dcamera".into(), count, seed, ..Default::default() };
    simulate_library(&req, false).unwrap()
}

/// Gaussian sigma of the 3x3 fit within 10 % of the camera's 0.5065 px, the 3x3 charge's
/// Landau width-to-peak ratio within 15 % of 4.8 / 19.8, its peak within 10 % of 19.8 ADU at the
/// camera's gain; the analog DQE(0) is printed beside the camera's 0.529.
#[test]
fn fresh_4dcamera_library_meets_the_calibration() {
    let lib = camera_library(30_000, 21);
    let r = response(&lib, Some(FOUR_D_CAMERA.gain_adu_per_e as f64)).unwrap();
    let cam = FOUR_D_CAMERA_300KV;
    let rel = |a: f64, b: f64| (a - b).abs() / b;
    let ratio = cam.width_3x3_adu / cam.peak_3x3_adu;
    println!(
        "sigma {:.4} px (camera {}), width/peak {:.3} (camera {ratio:.3}), peak {:.2} ADU (camera {}), \
         analog DQE(0) {:.3} (camera {})",
        r.gaussian_sigma_px,
        cam.gaussian_sigma_px,
        r.width_to_peak_3x3,
        r.peak_3x3_adu.unwrap(),
        cam.peak_3x3_adu,
        r.analog_dqe0,
        cam.analog_dqe0
    );
    assert!(rel(r.gaussian_sigma_px, cam.gaussian_sigma_px) < 0.10, "sigma {} px", r.gaussian_sigma_px);
    assert!(rel(r.width_to_peak_3x3, ratio) < 0.15, "width/peak {}", r.width_to_peak_3x3);
    assert!(rel(r.peak_3x3_adu.unwrap(), cam.peak_3x3_adu) < 0.10, "peak {:?} ADU", r.peak_3x3_adu);
    assert!(r.analog_dqe0 > 0.3 && r.analog_dqe0 < 0.7, "analog DQE(0) {}", r.analog_dqe0);
    // Not the old, much sharper clusters: a tenth of the centre pixel's charge or more on each
    // side, and a few percent of the charge outside the 3x3.
    let p = &r.mean_pattern_e;
    let side = (2 * r.pattern_half_px + 1) as usize;
    let c = side * (side / 2) + side / 2;
    assert!(p[c + 1] > 0.1 * p[c] && p[c - side] > 0.1 * p[c], "side/centre {}", p[c + 1] / p[c]);
    assert!(r.fraction_in_3x3 < 0.99, "3x3 holds {}", r.fraction_in_3x3);
}

/// Frames with `--camera 4dcamera`: u16, the camera's dark level and read noise in ADU, its gain
/// in the attributes; a library of other pixels is refused with one line.
#[test]
fn camera_frames_are_in_the_cameras_adu() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("cam.h5");
    camera_library(2_000, 3).write_h5(&lib).unwrap();
    let out = emsim(
        &[
            "frames",
            "--camera",
            "4dcamera",
            "--library",
            "cam.h5",
            "--frames",
            "3",
            "--size",
            "256x256",
            "--electrons",
            "200",
            "--electrons-sd",
            "0",
            "--device",
            "cpu",
            "--out",
            "f.h5",
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut r = FramesReader::open(&dir.path().join("f.h5"), "frames").unwrap();
    assert!(r.is_u16());
    let v = r.read_u16(0, 3).unwrap();
    // Pixels far below any electron's signal: the dark level and the read noise (plus the
    // rounding to whole ADU, variance 1/12).
    let dark: Vec<f64> = v.iter().map(|&x| x as f64).filter(|&x| x < 30.0).collect();
    assert!(dark.len() > v.len() * 8 / 10);
    let mean = dark.iter().sum::<f64>() / dark.len() as f64;
    let sd = (dark.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / dark.len() as f64).sqrt();
    let want_sd = (1.79f64.powi(2) + 1.0 / 12.0).sqrt();
    assert!((mean - 20.55).abs() < 0.2, "dark level {mean} ADU");
    assert!((sd - want_sd).abs() < 0.1, "read noise {sd} ADU, expected {want_sd}");
    let file = hdf5::File::open(dir.path().join("f.h5")).unwrap();
    let gain: f32 = file.dataset("frames").unwrap().attr("gain_adu_per_e").unwrap().read_scalar().unwrap();
    assert_eq!(gain, FOUR_D_CAMERA.gain_adu_per_e);
    let bad = emsim(&["frames", "--camera", "4dcamera", "--frames", "1", "--out", "g.h5"], dir.path());
    assert!(!bad.status.success());
    let line = stderr_line(&bad);
    assert!(line.contains("--library") && line.contains("10 um") && !line.contains('\n'), "{line}");
}

/// `emsim events response`: the table, JSON with units in the keys, two PNGs; a bad gain or an
/// empty library is refused with one line.
#[test]
fn response_command_reports_table_json_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    camera_library(3_000, 5).write_h5(&dir.path().join("cam.h5")).unwrap();
    let out =
        emsim(&["events", "response", "cam.h5", "--json", "--gain-adu-per-e", "0.05", "--plot", "resp"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["gaussian_sigma_px", "peak_3x3_e", "width_3x3_e", "analog_dqe0", "swank_factor", "peak_3x3_adu"] {
        assert!(j[key].as_f64().is_some_and(f64::is_finite), "{key}: {}", j[key]);
    }
    assert_eq!(j["events"], 3000);
    assert_eq!(j["mean_pattern_e"].as_array().unwrap().len(), 49);
    assert_eq!(j["reference_4dcamera_300kv"]["gaussian_sigma_px"], 0.5065);
    let peak_e = j["peak_3x3_e"].as_f64().unwrap();
    assert!((j["peak_3x3_adu"].as_f64().unwrap() - 0.05 * peak_e).abs() < 1e-9 * peak_e);
    for png in ["resp-spectrum.png", "resp-profile.png"] {
        let img = image::open(dir.path().join(png)).unwrap();
        assert!(img.width() > 100, "{png}");
    }
    let text = emsim(&["events", "response", "cam.h5"], dir.path());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Gaussian sigma") && text.contains("4D Camera"), "{text}");
    let bad = emsim(&["events", "response", "cam.h5", "--gain-adu-per-e", "0"], dir.path());
    let line = stderr_line(&bad);
    assert!(!bad.status.success() && line.contains("--gain-adu-per-e") && !line.contains('\n'), "{line}");
}
