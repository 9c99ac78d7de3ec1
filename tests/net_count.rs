//! The network in the counting pipeline: the crop kernel against its twin, `count --method net` on
//! the GPU against the CPU path, and the errors for a model that does not fit.

mod common;

use common::{assert_close, test_context, test_rng};
use emsim::count::find::Candidate;
use emsim::net::crop::{CropParams, crop_cpu, crop_gpu};
use rand::RngExt;
use std::path::Path;
use std::process::Command;

/// `net/decode_grid` against its twin `net::decode::decode` (f64 sums on the host, two-pass f32
/// on the device) on fresh random logits: flat, ordinary and sharply peaked distributions, for
/// the `fast` (24x24 cells over 3x3 px) and `seed` (10x10 over the centre pixel) grids. Tolerance
/// 2e-5 px on positions and sigma, 1e-5 relative on the peak probability.
#[test]
fn decode_grid_gpu_matches_twin() {
    use emsim::net::decode::{DECODED_FLOATS, DecodeGridParams, decode, decode_grid_record, from_decoded_rows};
    use emsim::net::model::ModelConfig;
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("decode_grid");
    for preset in ["fast", "seed"] {
        let cfg = ModelConfig::preset(preset).unwrap();
        let k = cfg.head_outputs();
        let n = 300;
        let logits: Vec<f32> = (0..n)
            .flat_map(|i| {
                let scale = [0.01f32, 1.0, 30.0][i % 3]; // flat, ordinary, peaked
                (0..k).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect::<Vec<_>>()
            })
            .collect();
        let p = DecodeGridParams::new(&cfg, n).unwrap();
        let lb = ctx.upload("logits", &logits).unwrap();
        let ob = ctx.storage("decoded", (n * DECODED_FLOATS * 4) as u64).unwrap();
        let mut enc = ctx.encoder("decode");
        decode_grid_record(&ctx, &mut enc, &p, &lb, &ob).unwrap();
        let rb = ctx.readback(&mut enc, &ob, (n * DECODED_FLOATS * 4) as u64);
        ctx.submit_and_wait(enc).unwrap();
        let gpu = from_decoded_rows(&rb.read::<f32>(&ctx).unwrap());
        let cpu = decode(&cfg, &logits, n);
        assert_eq!(gpu.len(), n);
        for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
            // The cell centre origin + (i + 0.5) * cell may be contracted into one fused
            // multiply-add on a GPU (NVIDIA's driver does: 0.05000001 against 0.050000012): the
            // last bit may differ, nothing more.
            for a in 0..2 {
                assert!((g.argmax_xy[a] - c.argmax_xy[a]).abs() <= 1e-6, "{preset} sample {i}: gpu {g:?} cpu {c:?}");
            }
            for (a, b) in [(g.mean_xy[0], c.mean_xy[0]), (g.mean_xy[1], c.mean_xy[1]), (g.sigma_px, c.sigma_px)] {
                assert!((a - b).abs() <= 2e-5, "{preset} sample {i}: gpu {g:?} cpu {c:?}");
            }
            assert!((g.p_max - c.p_max).abs() <= 1e-5 * c.p_max, "{preset} sample {i}: gpu {g:?} cpu {c:?}");
        }
    }
    // Other heads have no device decoding.
    assert!(DecodeGridParams::new(&ModelConfig::preset("pair-seed").unwrap(), 1).is_none());
}

#[test]
fn crop_gpu_matches_twin_at_edges_and_inside() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("crop");
    let (frames, h, w) = (3usize, 37u32, 53u32);
    let q: Vec<i32> = (0..frames * (h * w) as usize).map(|_| rng.random_range(-400..40_000)).collect();
    let mut cands: Vec<Candidate> =
        (0..40).map(|_| [rng.random_range(0..frames as u32), rng.random_range(0..h * w), 0, 0]).collect();
    cands.push([0, 0, 0, 0]); // corner
    cands.push([2, h * w - 1, 0, 0]); // other corner
    for side in [1usize, 11, 41] {
        let p = CropParams::new(cands.len() - 2, 2, side, h, w, 1e-3);
        let mut cpu = vec![-1.0f32; p.n as usize * side * side];
        crop_cpu(&p, &q, &cands, &mut cpu);
        let gpu = crop_gpu(&ctx, &p, &q, &cands).unwrap();
        // a product of two floats: the same on both paths
        assert_close(&gpu, &cpu, 0.0, 1e-7);
        // the centre pixel of each crop is the candidate's pixel
        let c = side / 2;
        for (i, cand) in cands[2..].iter().enumerate() {
            let want = q[cand[0] as usize * (h * w) as usize + cand[1] as usize] as f32 / 16.0 * 1e-3;
            assert!((cpu[i * side * side + c * side + c] - want).abs() <= 1e-6 * want.abs().max(1.0));
        }
    }
}

fn emsim(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).current_dir(dir).output().expect("run emsim")
}

fn error_line(out: &std::process::Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr);
    s.lines().filter(|l| l.starts_with("emsim: error")).collect::<Vec<_>>().join("\n")
}

/// `count --method net` writes the same electrons and sigmas on the GPU and the CPU path (an
/// untrained `fast` model is enough to compare the paths), and `sigma_px` is in the file.
#[test]
fn count_net_gpu_equals_cpu_and_bad_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = emsim::net::model::Model::new(emsim::net::model::ModelConfig::preset("fast").unwrap(), 5).unwrap();
    emsim::io::model_file::save(&model, None, &d.join("fast.safetensors"), false, "--out").unwrap();
    let o = emsim(
        &["frames", "--frames", "2", "--size", "64x80", "--electrons", "25", "--seed", "4", "--out", "f.h5", "-q"],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut results = Vec::new();
    for precision in ["f32", "f16"] {
        for device in ["cpu", "gpu"] {
            let out = format!("n-{device}-{precision}.h5");
            let o = emsim(
                &[
                    "count",
                    "f.h5",
                    "--method",
                    "net",
                    "--model",
                    "fast.safetensors",
                    "--net-precision",
                    precision,
                    "--out",
                    &out,
                    "--device",
                    device,
                    "-q",
                ],
                d,
            );
            assert!(o.status.success(), "{device} {precision}: {}", String::from_utf8_lossy(&o.stderr));
            let f = hdf5::File::open(d.join(&out)).unwrap();
            let params = emsim::io::h5util::str_attr(&f, "params_json").unwrap();
            let params: serde_json::Value = serde_json::from_str(&params).unwrap();
            assert_eq!(params["net_precision"], precision, "{device}: the file records the activation storage");
            // `fast` is not a perceptron: the GPU runs it layer by layer whatever the adapter
            let kernel = if device == "gpu" { "layers" } else { "auto" };
            assert_eq!(params["net_kernel"], kernel, "{device}: the file records the kernel");
            let col = |n: &str| f.dataset(&format!("electrons/{n}")).unwrap().read_raw::<f32>().unwrap();
            results.push((col("x_px"), col("y_px"), col("sigma_px")));
        }
    }
    let (c, g) = (&results[0], &results[1]);
    assert!(!c.0.is_empty());
    assert_close(&g.0, &c.0, 1e-4, 0.0);
    assert_close(&g.1, &c.1, 1e-4, 0.0);
    assert_close(&g.2, &c.2, 1e-4, 1e-4);
    assert!(c.2.iter().all(|&s| s >= 0.0 && s.is_finite()));
    // f16 activations: the CPU path rounds where the GPU stores f16, so the two agree but for
    // the rare value on an f16 rounding boundary that the two f32 sums send different ways.
    let (c16, g16) = (&results[2], &results[3]);
    assert_eq!(c16.0.len(), c.0.len(), "the network only localizes: the same electrons");
    let d16: Vec<f32> = (0..c.0.len()).map(|i| (g16.0[i] - c16.0[i]).hypot(g16.1[i] - c16.1[i])).collect();
    let close = d16.iter().filter(|&&v| v <= 2e-3).count();
    assert!(
        close * 10 >= 9 * d16.len(),
        "f16: only {close} of {} GPU positions within 0.002 px of the CPU's",
        d16.len()
    );
    assert!(d16.iter().all(|&v| v < 0.5), "f16: GPU and CPU positions {d16:?}");

    // A seed model (41x41 crop) on 32x32 frames: the crop is larger than the frame.
    let seed = emsim::net::model::Model::new(emsim::net::model::ModelConfig::preset("seed").unwrap(), 5).unwrap();
    emsim::io::model_file::save(&seed, None, &d.join("seed.safetensors"), false, "--out").unwrap();
    let o = emsim(&["frames", "--frames", "1", "--size", "32x32", "--electrons", "3", "--out", "small.h5", "-q"], d);
    assert!(o.status.success());
    let o = emsim(
        &["count", "small.h5", "--method", "net", "--model", "seed.safetensors", "--out", "x.h5", "--device", "cpu"],
        d,
    );
    let e = error_line(&o);
    assert!(e.contains("--model") && e.contains("41x41 crop is larger than the 32x32 frame"), "{e}");
    assert!(!d.join("x.h5").exists());
    // A corrupt model file.
    std::fs::write(d.join("bad.safetensors"), b"not a model").unwrap();
    let o = emsim(
        &["count", "f.h5", "--method", "net", "--model", "bad.safetensors", "--out", "x.h5", "--device", "cpu"],
        d,
    );
    let e = error_line(&o);
    assert!(e.contains("bad.safetensors") && e.contains("safetensors"), "{e}");
    // --model without the net method.
    let o = emsim(
        &["count", "f.h5", "--method", "c3x3", "--model", "fast.safetensors", "--out", "x.h5", "--device", "cpu"],
        d,
    );
    assert!(error_line(&o).contains("--model"), "{}", error_line(&o));
    assert!(!d.join("x.h5").exists());
    // --net-precision without the net method, or a precision that does not exist.
    let o =
        emsim(&["count", "f.h5", "--method", "c3x3", "--net-precision", "f16", "--out", "x.h5", "--device", "cpu"], d);
    assert!(error_line(&o).contains("--net-precision"), "{}", error_line(&o));
    let o =
        emsim(&["count", "f.h5", "--method", "net", "--net-precision", "bf16", "--out", "x.h5", "--device", "cpu"], d);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("--net-precision") && e.contains("f32, f16"), "{e}");
    assert!(!d.join("x.h5").exists());
}

/// The shipped `fast` and `fast-neighbours` models (assets/models, trained by `emsim train` on
/// library events, see docs/network.md) load with their
/// presets and, on held-out events of the default library (sigma 20 e), localize better than every
/// classical centroid computed on the same crops.
#[test]
fn shipped_fast_model_beats_the_centroids_on_heldout_events() {
    for (path, preset) in
        [(emsim::shipped_model_path("fast"), "fast"), (emsim::shipped_model_path("fast-neighbours"), "fast-neighbours")]
    {
        shipped_model_beats_the_centroids(&path, preset);
    }
}

fn shipped_model_beats_the_centroids(path: &std::path::Path, preset: &str) {
    use emsim::net::heldout::{HeldoutOptions, heldout_eval};
    let loaded = emsim::io::model_file::load(path, Some(&emsim::net::model::ModelConfig::preset(preset).unwrap()))
        .expect("the shipped model");
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let o = HeldoutOptions { events: 3000, seed: 11, ..Default::default() };
    let r = heldout_eval(&loaded.model, &lib, &o, &emsim::gpu::Device::Cpu).unwrap();
    eprint!("{}", r.table());
    let net = r.records.iter().find(|x| x.method == "net").unwrap().mean_error_px;
    let best = r.records.iter().filter(|x| x.method != "net").map(|x| x.mean_error_px).fold(f64::MAX, f64::min);
    assert!(net < 0.9 * best, "network {net:.4} px vs best centroid {best:.4} px");
    // the knob: a tighter sigma cut never makes the kept electrons worse on average (10% vs 100%)
    assert!(r.knob.first().unwrap().mean_error_px < r.knob.last().unwrap().mean_error_px);
}

/// The fused CPU path of small perceptrons (crops through every layer and the decoding, a few
/// hundred at a time) gives exactly the layer-by-layer forward pass and decoding, for the shipped
/// `tiny` and for a freshly initialised one, on crops from flat to sharply peaked; models that are
/// not perceptrons with a grid head do not take it.
#[test]
fn fused_perceptron_path_equals_the_layer_path() {
    use emsim::net::model::{Model, ModelConfig};
    let mut rng = test_rng("fused_perceptron_path");
    let shipped = emsim::io::model_file::load(&emsim::default_model_path(), None).unwrap().model;
    for model in [shipped, Model::new(ModelConfig::preset("tiny").unwrap(), 4).unwrap()] {
        let side = model.cfg.input_px;
        let n = 1000; // several tasks and a partial one
        let x: Vec<f32> = (0..n * side * side)
            .map(|i| rng.random_range(-0.05f32..0.05) + if i % (side * side) == side * side / 2 { 0.5 } else { 0.0 })
            .collect();
        let fused = model.decode_mlp_cpu(&x, n).expect("tiny is a grid perceptron");
        let out = model.eval_outputs_cpu(&x, n, emsim::net::precision::NetPrecision::F32).unwrap();
        let layered = emsim::net::decode::decode(&model.cfg, &out, n);
        assert_eq!(fused, layered);
    }
    let fast = Model::new(ModelConfig::preset("fast").unwrap(), 4).unwrap();
    assert!(!fast.is_grid_perceptron() && fast.decode_mlp_cpu(&[0.0; 121], 1).is_none());
}

/// The default network of counting (`tiny`, trained on the counter's centres in default frames)
/// places electrons of other default frames closer to the truth than the thresholded 3x3 centroid,
/// at the same recall (the same centres).
#[test]
fn default_network_beats_the_centroid_on_default_frames() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(emsim(&["frames", "--frames", "3", "--seed", "21", "--out", "f.h5", "--device", "cpu", "-q"], d));
    ok(emsim(&["count", "f.h5", "--method", "c3x3t,net", "--out", "c-{method}.h5", "--device", "cpu", "-q"], d));
    ok(emsim(&["eval", "c-c3x3t.h5", "c-net.h5", "--truth", "f.h5", "--json", "e.json"], d));
    let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("e.json")).unwrap()).unwrap();
    let (c, n) = (&e["methods"][0], &e["methods"][1]);
    let (ce, ne) = (c["mean_error_px"].as_f64().unwrap(), n["mean_error_px"].as_f64().unwrap());
    eprintln!("c3x3t {ce:.4} px, net {ne:.4} px");
    assert!(ne < 0.9 * ce, "network {ne:.4} px vs c3x3t {ce:.4} px");
    let recall = |m: &serde_json::Value| m["recall"].as_f64().unwrap();
    assert!((recall(n) - recall(c)).abs() < 0.002, "recall {} vs {}", recall(n), recall(c));
}

/// The seed network on the EMSim notes' 24 JUL test: on held-out events,
/// sigma 20 e, central pixel known, the shipped `seed` model's mean error is no worse than the 3x3
/// centroid's on the same crops.
#[test]
fn shipped_seed_model_is_no_worse_than_the_3x3_centroid() {
    use emsim::net::heldout::{HeldoutOptions, heldout_eval};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/seed.safetensors");
    let loaded = emsim::io::model_file::load(&path, Some(&emsim::net::model::ModelConfig::preset("seed").unwrap()))
        .expect("the shipped seed model");
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let o = HeldoutOptions { events: 2000, seed: 12, ..Default::default() };
    let r = heldout_eval(&loaded.model, &lib, &o, &emsim::gpu::Device::Cpu).unwrap();
    eprint!("{}", r.table());
    let get = |m: &str| r.records.iter().find(|x| x.method == m).unwrap().mean_error_px;
    assert!(get("net") <= get("c3x3"), "network {:.4} px vs 3x3 centroid {:.4} px", get("net"), get("c3x3"));
}

/// `emsim infer`: estimates for crops from a .npy file; crops of the wrong size are refused.
#[test]
fn infer_command_writes_estimates_and_refuses_wrong_crops() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = emsim::shipped_model_path("fast-neighbours");
    let mut crops = ndarray::Array3::<f32>::zeros((5, 11, 11));
    for k in 0..5 {
        crops[[k, 5, 5]] = 400.0;
        crops[[k, 5, 6]] = 100.0 * k as f32; // more charge to the right: the estimate moves right
    }
    ndarray_npy::write_npy(d.join("c.npy"), &crops).unwrap();
    let m = model.to_str().unwrap();
    let o = emsim(&["infer", "--model", m, "--input", "c.npy", "--out", "e.npy"], d);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: ndarray::Array2<f32> = ndarray_npy::read_npy(d.join("e.npy")).unwrap();
    assert_eq!(e.dim(), (5, 4));
    assert!(e[[4, 0]] > e[[0, 0]], "x moves towards the charge: {e:?}");
    assert!(e.iter().all(|v| v.is_finite()));
    let wrong = ndarray::Array3::<f32>::zeros((2, 9, 9));
    ndarray_npy::write_npy(d.join("w.npy"), &wrong).unwrap();
    let o = emsim(&["infer", "--model", m, "--input", "w.npy", "--out", "x.npy"], d);
    let err = error_line(&o);
    assert!(err.contains("w.npy") && err.contains("9x9") && err.contains("11x11"), "{err}");
    assert!(!d.join("x.npy").exists());
}
