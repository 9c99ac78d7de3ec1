//! `emsim train` from the command line: a small run on the CPU twins and on the GPU gives the same
//! log, `--resume` continues, and bad input gets a one-line error and leaves nothing behind.

use std::path::Path;

mod common;
use common::cli::{emsim, names, stderr_line};

const SMALL: &[&str] = &[
    "train",
    "--preset",
    "fast",
    "--batch",
    "16",
    "--train-samples",
    "64",
    "--val-samples",
    "32",
    "--seed",
    "3",
    "--quiet",
];

fn run(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = SMALL.to_vec();
    a.extend_from_slice(extra);
    emsim(&a, dir)
}

#[test]
fn train_small_run_cpu_and_gpu_agree_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(d, &["--epochs", "2", "--device", "cpu", "--out", "c.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(names(d), ["c.ckpt.safetensors", "c.csv", "c.png", "c.safetensors"]);
    let csv = std::fs::read_to_string(d.join("c.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[2].is_finite() && r[2] > 0.0), "{csv}");

    // The GPU path gives the same per-epoch losses (to float tolerance).
    if std::env::var("EMSIM_ALLOW_NO_GPU").as_deref() != Ok("1") || !emsim::gpu::list_adapters().is_empty() {
        let o = run(d, &["--epochs", "2", "--out", "g.safetensors"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let g = std::fs::read_to_string(d.join("g.csv")).unwrap();
        for (a, b) in csv.lines().skip(1).zip(g.lines().skip(1)) {
            let (a, b): (Vec<f64>, Vec<f64>) = (
                a.split(',').map(|v| v.parse().unwrap()).collect(),
                b.split(',').map(|v| v.parse().unwrap()).collect(),
            );
            // Losses agree to float tolerance; accuracies and the mean error of an untrained net
            // depend on arg-maxes that a last-bit difference can flip for a sample or two.
            for (k, tol) in [(2, 2e-3), (4, 2e-3), (3, 0.07), (5, 0.07), (6, 0.05)] {
                assert!((a[k] - b[k]).abs() <= tol * a[k].abs().max(1.0), "column {k}: cpu {} gpu {}", a[k], b[k]);
            }
        }
    }

    // Resume from the checkpoint for a third epoch.
    let o = run(
        d,
        &["--epochs", "3", "--device", "cpu", "--resume", "c.ckpt.safetensors", "--out", "c.safetensors", "--force"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv3 = std::fs::read_to_string(d.join("c.csv")).unwrap();
    assert_eq!(csv3.lines().count(), 4, "{csv3}");
    assert!(csv3.starts_with(&csv), "the first two epochs are kept as they were");
}

#[test]
fn train_bad_input_is_one_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["--preset", "huge", "--out", "m.safetensors"], "--preset"),
        (&["--batch", "0", "--out", "m.safetensors"], "--batch"),
        (&["--train-samples", "5", "--out", "m.safetensors"], "--train-samples"),
        (&["--holdout", "1.5", "--out", "m.safetensors"], "--holdout"),
        (&["--lr-schedule", "linear", "--out", "m.safetensors"], "--lr-schedule"),
        (&["--optimizer", "sgd", "--out", "m.safetensors"], "--optimizer"),
        (&["--library", "missing.h5", "--out", "m.safetensors"], "missing.h5"),
        (&["--out", "nodir/m.safetensors"], "does not exist"),
    ];
    for (extra, want) in cases {
        let mut a = vec!["train", "--device", "cpu", "--quiet"];
        a.extend_from_slice(extra);
        let o = emsim(&a, d);
        assert!(!o.status.success(), "{extra:?} should fail");
        let e = stderr_line(&o);
        assert_eq!(e.lines().count(), 1, "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(e.contains(want), "{extra:?}: '{e}' should name {want}");
        assert!(names(d).is_empty(), "{extra:?} left {:?}", names(d));
    }
    // Resuming from a model of another preset names the mismatch.
    let o = run(d, &["--epochs", "1", "--device", "cpu", "--out", "f.safetensors"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = emsim(
        &["train", "--preset", "seed", "--resume", "f.ckpt.safetensors", "--out", "s.safetensors", "--device", "cpu"],
        d,
    );
    let e = stderr_line(&o);
    assert!(e.contains("f.ckpt.safetensors") && e.contains("'fast'") && e.contains("expected 'seed'"), "{e}");
    // A model file is not a checkpoint.
    let o = run(d, &["--epochs", "2", "--device", "cpu", "--resume", "f.safetensors", "--out", "f2.safetensors"]);
    assert!(stderr_line(&o).contains("not a checkpoint"), "{}", stderr_line(&o));
    assert!(!d.join("f2.safetensors").exists());
}

/// A model from a config file (a small regression net, the MSU multi-electron notebook's kind of head):
/// trains, and a config that does not chain to its head is refused naming the file.
#[test]
fn train_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = r#"{"schema": "emsim-model/1", "name": "tiny-xy", "input_px": 7, "shift_px": 0, "input_scale": 0.001,
        "head": {"type": "xy"},
        "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
                   {"type": "linear", "out_features": 2}]}"#;
    std::fs::write(d.join("tiny.json"), cfg).unwrap();
    let o = emsim(
        &[
            "train",
            "--config",
            "tiny.json",
            "--batch",
            "16",
            "--train-samples",
            "64",
            "--val-samples",
            "16",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            "t.safetensors",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = emsim::io::model_file::load(&d.join("t.safetensors"), None).unwrap().model;
    assert_eq!(m.cfg.name, "tiny-xy");
    assert_eq!(m.tensors[0].shape, vec![4, 1, 3, 3]);
    assert_eq!(m.tensors[2].shape, vec![2, 100]);
    std::fs::write(d.join("bad.json"), cfg.replace("\"out_features\": 2", "\"out_features\": 3")).unwrap();
    let o = emsim(&["train", "--config", "bad.json", "--device", "cpu", "--out", "b.safetensors"], d);
    let e = stderr_line(&o);
    assert!(e.contains("bad.json") && e.contains("head needs 2"), "{e}");
}

/// `train --frames`: crops of a frames dataset with truth. A sample's crop is the frame's charge
/// around the true electron's pixel (shifted by at most `shift_px`), its target the true point
/// relative to the crop's centre pixel; the CPU and GPU paths train to the same losses; a pair
/// model or a frames file without truth is refused.
#[test]
fn train_from_frames_cuts_the_right_crops_and_paths_agree() {
    use emsim::net::frames_data::FrameSamples;
    use emsim::net::model::ModelConfig;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = emsim(
        &[
            "frames", "--frames", "6", "--size", "64x64", "--dose", "0.01", "--seed", "8", "--out", "f.h5", "--device",
            "cpu", "-q",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fs = FrameSamples::load(&d.join("f.h5"), None, 0.34, Default::default()).unwrap();
    let ((lo, n), (vlo, vn)) = fs.split();
    assert_eq!(lo, 0);
    assert_eq!(lo + n, vlo);
    assert!(n > 0 && vn > 0);
    assert!(fs.frame[..vlo as usize].iter().all(|&f| f < 4) && fs.frame[vlo as usize..].iter().all(|&f| f >= 4));
    let cfg = ModelConfig::preset("fast").unwrap();
    let b = fs.batch(&cfg, 3, (lo, n), 0, 50);
    let side = cfg.input_px;
    for s in 0..50 {
        let (e, cx, cy) = fs.choice(3, cfg.shift_px, (lo, n), s as u64);
        assert!(e < vlo as usize, "training samples come from the training frames");
        let (tx, ty) = (b.target[2 * s], b.target[2 * s + 1]);
        assert_eq!((tx, ty), (fs.x_px[e] - (cx as f32 + 0.5), fs.y_px[e] - (cy as f32 + 0.5)));
        assert!(tx.abs() <= 1.5 && ty.abs() <= 1.5, "within shift_px = 1 of the centre pixel: ({tx}, {ty})");
        let plane = &fs.frames_e[fs.frame[e] as usize * 64 * 64..][..64 * 64];
        for i in 0..side as i64 {
            for j in 0..side as i64 {
                let (r, c) = (cy - (side / 2) as i64 + i, cx - (side / 2) as i64 + j);
                let want = if (0..64).contains(&r) && (0..64).contains(&c) {
                    plane[(r * 64 + c) as usize] * cfg.input_scale
                } else {
                    0.0
                };
                assert_eq!(b.x[s * side * side + (i as usize) * side + j as usize], want);
            }
        }
    }
    // training on both paths
    let args = |dev: &str, out: &str| -> Vec<String> {
        [
            "train",
            "--preset",
            "fast",
            "--frames",
            "f.h5",
            "--holdout",
            "0.34",
            "--epochs",
            "1",
            "--batch",
            "16",
            "--train-samples",
            "64",
            "--val-samples",
            "32",
            "--seed",
            "2",
            "--quiet",
            "--device",
            dev,
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run_args = |a: Vec<String>| emsim(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>(), d);
    let o = run_args(args("cpu", "c.safetensors"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_args(args("gpu", "g.safetensors"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = |f: &str| -> Vec<f64> {
        let t = std::fs::read_to_string(d.join(f)).unwrap();
        t.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect()
    };
    let (c, g) = (row("c.csv"), row("g.csv"));
    for k in [2, 4] {
        assert!((c[k] - g[k]).abs() <= 2e-3 * c[k].abs().max(1.0), "column {k}: cpu {} gpu {}", c[k], g[k]);
    }
    // refused: a pair model; --frames with --library
    let o = emsim(&["train", "--preset", "pair-split", "--frames", "f.h5", "--out", "p.safetensors"], d);
    assert!(stderr_line(&o).contains("--frames"), "{}", stderr_line(&o));
    assert!(!d.join("p.safetensors").exists());
    let o = emsim(&["train", "--frames", "f.h5", "--library", "x.h5", "--out", "p.safetensors"], d);
    assert!(!o.status.success());
}

/// `train --frames --crop-centres found`: the crops are centred where `emsim count` finds electrons
/// (each centre is one of its centres, in the same frame), one sample per true electron that
/// `emsim eval` matches to those centres, training frames before held-out frames.
#[test]
fn found_centres_are_the_counters_matched_to_the_truth() {
    use emsim::net::frames_data::{CropCentres, FrameSamples};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let frames = ["frames", "--frames", "6", "--size", "96x96", "--dose", "0.01", "--seed", "8", "--out", "f.h5"];
    let o = emsim(&[&frames[..], &["--device", "cpu", "-q"]].concat(), d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fs = FrameSamples::load(&d.join("f.h5"), None, 0.34, CropCentres::Found).unwrap();
    assert_eq!(fs.centre_px.len(), fs.x_px.len());
    let o = emsim(&["count", "f.h5", "--method", "c3x3t", "--out", "c.h5", "--device", "cpu", "-q"], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let counts = emsim::eval::read::read_counts(&d.join("c.h5")).unwrap();
    let f = hdf5::File::open(d.join("c.h5")).unwrap();
    let (row, col) = (
        f.dataset("electrons/row").unwrap().read_raw::<u32>().unwrap(),
        f.dataset("electrons/col").unwrap().read_raw::<u32>().unwrap(),
    );
    let found: std::collections::HashSet<(u32, i32, i32)> =
        (0..row.len()).map(|i| (counts.frame[i], col[i] as i32, row[i] as i32)).collect();
    for (i, &(c, r)) in fs.centre_px.iter().enumerate() {
        assert!(found.contains(&(fs.frame[i], c, r)), "sample {i}: centre ({c}, {r}) is not a found centre");
        let (dx, dy) = (fs.x_px[i] - (c as f32 + 0.5), fs.y_px[i] - (r as f32 + 0.5));
        assert!(dx.abs() < 3.0 && dy.abs() < 3.0, "sample {i}: the truth is ({dx}, {dy}) px from its centre");
    }
    let o = emsim(&["eval", "c.h5", "--truth", "f.h5", "--json", "e.json"], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("e.json")).unwrap()).unwrap();
    assert_eq!(e["methods"][0]["n_matched"], fs.x_px.len());
    let ((_, n), (vlo, vn)) = fs.split();
    assert!(n > 0 && vn > 0 && fs.frame[..vlo as usize].iter().all(|&f| f < 4));
    // a sample's crop is centred on its found centre, whatever the shift
    let (e0, cx, cy) = fs.choice(3, 1, (0, n), 5);
    assert_eq!((cx, cy), (fs.centre_px[e0].0 as i64, fs.centre_px[e0].1 as i64));
}
