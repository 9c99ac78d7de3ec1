//! `net/mlp_count`, counting with a small perceptron in one dispatch: the kernel against its CPU
//! twin, and the twin against the fused CPU path (`Model::decode_mlp_cpu`) on the same crops, for
//! the shipped `tiny` and a freshly initialised one, on frames with clusters, flat noise and
//! candidates at the frame's edges.

mod common;

use common::{test_context, test_rng};
use emsim::count::find::Candidate;
use emsim::net::mlp_gpu::{MlpBuffers, MlpForm, MlpKernelModel, found_all, mlp_count_cpu, mlp_count_record};
use emsim::net::model::{Model, ModelConfig};
use rand::RngExt;

fn models() -> Vec<Model> {
    let shipped = emsim::io::model_file::load(&emsim::default_model_path(), None).unwrap().model;
    vec![shipped, Model::new(ModelConfig::preset("tiny").unwrap(), 9).unwrap()]
}

/// Frames of calibrated charge (1/16 e-) with read noise and a cluster at every 4th candidate.
fn case(rng: &mut impl rand::Rng, frames: usize, h: u32, w: u32, n: usize) -> (Vec<i32>, Vec<Candidate>) {
    let fp = (h * w) as usize;
    let mut q: Vec<i32> = (0..frames * fp).map(|_| rng.random_range(-320..320)).collect();
    let mut cands: Vec<Candidate> =
        (0..n).map(|_| [rng.random_range(0..frames as u32), rng.random_range(0..h * w), 0, 0]).collect();
    cands.push([0, 0, 0, 0]);
    cands.push([frames as u32 - 1, h * w - 1, 0, 0]);
    for c in cands.iter().step_by(4) {
        let (r, col) = ((c[1] / w) as i32, (c[1] % w) as i32);
        for (dr, dc, e) in [(0, 0, 300.0), (0, 1, 120.0), (1, 0, 80.0), (-1, -1, 40.0)] {
            let (rr, cc) = (r + dr, col + dc);
            if rr >= 0 && rr < h as i32 && cc >= 0 && cc < w as i32 {
                q[c[0] as usize * fp + (rr as u32 * w + cc as u32) as usize] += (e * 16.0) as i32;
            }
        }
    }
    (q, cands)
}

#[test]
fn mlp_count_gpu_matches_twin() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("mlp_count_gpu_matches_twin");
    let (frames, h, w) = (3usize, 41u32, 57u32);
    let (q, cands) = case(&mut rng, frames, h, w, 150);
    for model in models() {
        let km = MlpKernelModel::new(&model).expect("tiny fits the kernel");
        // every form the adapter can run (lavapipe has subgroups)
        let forms = [(false, false), (true, false), (false, true), (true, true)]
            .map(|(half, subgroups)| MlpForm { half, subgroups })
            .into_iter()
            .filter(|f| !f.subgroups || ctx.has_subgroups());
        for form in forms {
            let half = form.half;
            // an odd number of candidates for f32 (the kernel counts two per invocation)
            let first = 1 + half as usize;
            let p = km.params(cands.len() - first, first, h, w);
            let cpu = mlp_count_cpu(&p, &q, &cands, &km.twin_weights(half));
            let qb = ctx.upload("q", &q).unwrap();
            let cb = ctx.upload("cands", &cands).unwrap();
            let wb = ctx.upload("weights", &km.kernel_weights(half)).unwrap();
            let ob = ctx.storage("out", (cpu.len() * 4) as u64).unwrap();
            let fb = found_all(&ctx).unwrap();
            let bufs = MlpBuffers { q: &qb, cands: &cb, weights: &wb, out: &ob, found: &fb };
            let mut enc = ctx.encoder("mlp_count");
            mlp_count_record(&ctx, &mut enc, &p, &bufs, form).unwrap();
            let rb = ctx.readback(&mut enc, &ob, (cpu.len() * 4) as u64);
            ctx.submit_and_wait(enc).unwrap();
            let gpu: Vec<f32> = rb.read::<f32>(&ctx).unwrap();
            // The sums of products may be fused (multiply-add) on the device: the logits differ
            // in their last bits, and the decoded values by far less than the tolerance.
            let name = format!("{} {form:?}", model.cfg.name);
            for (i, (g, c)) in gpu.chunks(6).zip(cpu.chunks(6)).enumerate() {
                for k in 0..5 {
                    assert!((g[k] - c[k]).abs() <= 1e-4, "{name} candidate {i}: gpu {g:?} cpu {c:?}");
                }
                assert!((g[5] - c[5]).abs() <= 1e-4 * c[5], "{name} candidate {i}: gpu {g:?} cpu {c:?}");
            }
        }
    }
}

/// The kernel's blocked weights hold every weight once, in f32 exactly and in f16 to f16's
/// rounding, with zeros past each layer's outputs.
#[test]
fn kernel_weights_hold_the_model() {
    let model = Model::new(ModelConfig::preset("tiny").unwrap(), 3).unwrap();
    let km = MlpKernelModel::new(&model).unwrap();
    let (f32w, f16w) = (km.kernel_weights(false), km.kernel_weights(true));
    assert_eq!(f32w.len(), 2 * f16w.len());
    let blocked: Vec<f32> = f32w.iter().map(|&b| f32::from_bits(b)).collect();
    let halves: Vec<f32> =
        f16w.iter().flat_map(|&u| [u & 0xffff, u >> 16]).map(|b| half::f16::from_bits(b as u16).to_f32()).collect();
    let (mut nonzero, mut sum, mut sum_h) = (0usize, 0.0f64, 0.0f64);
    for (&v, &h) in blocked.iter().zip(&halves) {
        nonzero += (v != 0.0) as usize;
        sum += v as f64;
        sum_h += h as f64;
        assert!((v - h).abs() <= v.abs() * 1e-3 + 1e-7, "{v} vs {h}");
    }
    let want: f64 = km.weights.iter().map(|&v| v as f64).sum();
    assert_eq!(nonzero, km.weights.iter().filter(|&&v| v != 0.0).count());
    assert!((sum - want).abs() < 1e-9 * want.abs().max(1.0), "{sum} vs {want}");
    let want_h: f64 = km.twin_weights(true).iter().map(|&v| v as f64).sum();
    assert!((sum_h - want_h).abs() < 1e-9 * want_h.abs().max(1.0), "{sum_h} vs {want_h}");
    // tiny: 81 -> 128 -> 64 -> 144, all multiples of 8: no padding. The first groups: outputs
    // 0..8 of inputs 0 and 1, then outputs 8..16 of input 0 after the 81 inputs of the block.
    assert_eq!(blocked.len(), km.weights.len());
    for j in 0..8 {
        assert_eq!(blocked[j], km.weights[j * 81]);
        assert_eq!(blocked[8 + j], km.weights[j * 81 + 1]);
        assert_eq!(blocked[81 * 8 + j], km.weights[(8 + j) * 81]);
    }
}

#[test]
fn twin_equals_the_fused_cpu_path_on_the_same_crops() {
    let mut rng = test_rng("mlp_count_twin_vs_fused");
    let (frames, h, w) = (2usize, 40u32, 33u32);
    let (q, cands) = case(&mut rng, frames, h, w, 200);
    for model in models() {
        let km = MlpKernelModel::new(&model).unwrap();
        let p = km.params(cands.len(), 0, h, w);
        let twin = mlp_count_cpu(&p, &q, &cands, &km.twin_weights(false));
        let side = model.cfg.input_px;
        let cp = emsim::net::crop::CropParams::new(cands.len(), 0, side, h, w, model.cfg.input_scale);
        let mut crops = vec![0.0f32; cands.len() * side * side];
        emsim::net::crop::crop_cpu(&cp, &q, &cands, &mut crops);
        let fused = model.decode_mlp_cpu(&crops, cands.len()).unwrap();
        for (i, (t, f)) in twin.chunks(6).zip(&fused).enumerate() {
            let want = [f.argmax_xy[0], f.argmax_xy[1], f.mean_xy[0], f.mean_xy[1], f.sigma_px];
            for k in 0..5 {
                assert!((t[k] - want[k]).abs() <= 1e-4, "candidate {i}: twin {t:?} fused {f:?}");
            }
            assert!((t[5] - f.p_max).abs() <= 1e-4 * f.p_max, "candidate {i}: twin {t:?} fused {f:?}");
        }
    }
    // Not a perceptron with a grid head: no kernel model.
    assert!(MlpKernelModel::new(&Model::new(ModelConfig::preset("fast").unwrap(), 1).unwrap()).is_none());
}

/// `emsim count --method net --net-kernel fused` on the GPU finds the same electrons as the CPU
/// path and places them within 1e-4 px (f32 weights) or 5e-3 px (f16 weights); the flag is
/// refused without the network.
#[test]
fn fused_kernel_counts_as_the_cpu_path() {
    let Some(ctx) = test_context() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_emsim")).args(args).current_dir(d).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "frames", "--frames", "3", "--size", "128x96", "--dose", "0.01", "--seed", "4", "--out", "f.h5", "--device",
        "cpu", "-q",
    ]);
    run(&["count", "f.h5", "--method", "net", "--net-kernel", "fused", "--out", "g.h5", "--device", "gpu", "-q"]);
    run(&[
        "count",
        "f.h5",
        "--method",
        "net",
        "--net-kernel",
        "fused",
        "--net-precision",
        "f16",
        "--out",
        "h.h5",
        "--device",
        "gpu",
        "-q",
    ]);
    run(&["count", "f.h5", "--method", "net", "--out", "a.h5", "--device", "gpu", "-q"]);
    run(&["count", "f.h5", "--method", "net", "--out", "c.h5", "--device", "cpu", "-q"]);
    // --net-kernel auto (the default) takes the one-dispatch kernel on adapters that run on the CPU
    let auto = if ctx.adapter.device_type == "Cpu" { "fused" } else { "layers" };
    for (file, kernel) in [("g.h5", "fused"), ("h.h5", "fused"), ("a.h5", auto)] {
        let f = hdf5::File::open(d.join(file)).unwrap();
        let params: serde_json::Value =
            serde_json::from_str(&emsim::io::h5util::str_attr(&f, "params_json").unwrap()).unwrap();
        assert_eq!(params["net_kernel"], kernel, "{file}");
    }
    let c = emsim::eval::read::read_counts(&d.join("c.h5")).unwrap();
    assert!(!c.is_empty());
    // f32 weights: within 1e-4 px; f16 weights: within 5e-3 px (on default frames they move
    // the electrons by 8e-5 px on average, at most 2.3e-3 px, docs/network.md)
    for (file, tol) in [("g.h5", 1e-4), ("a.h5", 1e-4), ("h.h5", 5e-3)] {
        let g = emsim::eval::read::read_counts(&d.join(file)).unwrap();
        assert_eq!((g.offsets.clone(), g.frame.clone()), (c.offsets.clone(), c.frame.clone()), "{file}");
        for i in 0..c.len() {
            let (dx, dy) = ((g.x_px[i] - c.x_px[i]).abs(), (g.y_px[i] - c.y_px[i]).abs());
            assert!(dx <= tol && dy <= tol, "{file} electron {i}: {dx} {dy}");
            let (gs, cs) = (g.sigma_px.as_ref().unwrap()[i], c.sigma_px.as_ref().unwrap()[i]);
            assert!((gs - cs).abs() <= tol, "{file} electron {i}: sigma {gs} vs {cs}");
        }
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_emsim"))
        .args(["count", "f.h5", "--method", "c3x3t", "--net-kernel", "fused", "--out", "x.h5"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--net-kernel"));
    assert!(!d.join("x.h5").exists());
}

/// Each form of the kernel is its own kernel, and only the subgroup forms need `SUBGROUP`.
#[test]
fn forms_pick_their_kernels() {
    let mut names = std::collections::HashSet::new();
    for half in [false, true] {
        for subgroups in [false, true] {
            let k = MlpForm { half, subgroups }.kernel();
            assert_eq!(k.needs_subgroups(), subgroups, "{}", k.name);
            assert!(!k.needs_f16(), "{}: f16 weights are unpacked to f32, no SHADER_F16", k.name);
            assert_eq!(k.name.contains("wf16"), half, "{}", k.name);
            names.insert(k.name);
        }
    }
    assert_eq!(names.len(), 4);
}

/// Counting frames kept on the device with the network (bench stage `count_net_resident`): the
/// kernel reads the finder's list where it lies (its counter through an indirect dispatch) and
/// places every centre as the counter's ordinary path does, within 1e-4 px.
#[test]
fn resident_network_path_places_as_the_ordinary_path() {
    use emsim::count::{CountConfig, Counter, NetKernel};
    use emsim::frames::{ElectronCount, FramesConfig, Generator};
    use emsim::gpu::Device;
    let Some(ctx) = test_context() else { return };
    let lib = emsim::io::library::EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let gpu = Device::Gpu(Box::new(ctx));
    let (h, w, n) = (96u32, 112u32, 4usize);
    let fcfg = FramesConfig {
        frames: n as u64,
        height: h,
        width: w,
        batch_frames: n as u32,
        electrons: ElectronCount::Normal { mean: 90.0, sd: 8.0 },
        ..Default::default()
    };
    let counts: Vec<u32> = (0..n as u64).map(|k| fcfg.electron_count(k)).collect();
    let frames = Generator::new(fcfg, &lib, &Device::Cpu).unwrap().generate(0, &counts).unwrap().frames;
    let net = emsim::count::load_net_model(None, false).unwrap();
    let ccfg =
        CountConfig { net: Some(net), net_kernel: NetKernel::Fused, batch_frames: n as u32, ..Default::default() };
    let counter = Counter::new(ccfg, h, w, 20.0, &gpu).unwrap();
    let want = counter.count(&frames).unwrap();
    assert!(want.cands.len() > 200, "{} centres", want.cands.len());
    let Device::Gpu(c) = &gpu else { unreachable!() };
    let empty = c.upload("empty", &vec![0f32; frames.len()]).unwrap();
    let bufs = [c.upload("frames", &frames).unwrap(), empty];
    // an empty batch between: the list and the rows are the last batch's
    let got = counter.count_resident(&bufs, false, n, 3, true).unwrap();
    assert_eq!(got as usize, want.cands.len());
    let (cands, rows) = counter.resident_net_rows().unwrap();
    assert_eq!(rows.len(), cands.len() * 6);
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by_key(|&i| (cands[i][0], cands[i][1]));
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(cands[i], want.cands[k]);
        let d = &emsim::net::decode::from_decoded_rows(&rows[i * 6..(i + 1) * 6])[0];
        let e = emsim::net::infer::to_frame(d, cands[i][1] / w, cands[i][1] % w);
        let x = &want.net[k];
        assert!((e.xy[0] - x.xy[0]).abs() <= 1e-4 && (e.xy[1] - x.xy[1]).abs() <= 1e-4, "centre {k}");
        assert!((e.sigma_px - x.sigma_px).abs() <= 1e-4, "centre {k}");
    }
    // an empty last batch: nothing found, nothing to read
    assert_eq!(counter.count_resident(&bufs[1..], false, n, 1, true).unwrap(), 0);
    assert!(counter.resident_net_rows().unwrap().0.is_empty());
    // without the one-kernel path the resident count with the network is refused
    let layers = CountConfig {
        net: Some(emsim::count::load_net_model(None, false).unwrap()),
        net_kernel: NetKernel::Layers,
        ..Default::default()
    };
    let counter = Counter::new(layers, h, w, 20.0, &gpu).unwrap();
    assert!(counter.count_resident(&bufs, false, n, 1, true).is_err());
}
