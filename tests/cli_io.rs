//! The dataset path from kernel to file and back: what `emsim frames` writes by default (u16,
//! shuffle + deflate compressed on every core, HDF5 direct chunk writes) is exactly what the
//! generator made, read back both by HDF5's own filter pipeline (as h5py reads it) and by emsim's
//! parallel chunk reader; bad settings, a full disk and interrupts leave nothing behind.

use std::process::Command;

use emsim::frames::{FramesConfig, Generator, Truth};
use emsim::gpu::Device;
use emsim::io::frames_in::FramesReader;
use emsim::io::library::EventLibrary;

mod common;
use common::cli::{SPAWN, emsim, names, spawn, stderr_line};

/// The generator's frames for `cfg` on the CPU path, as the file stores them, and their truth.
fn expected_with_truth(cfg: &FramesConfig, lib: &EventLibrary) -> (Vec<f32>, Truth) {
    let gen_ = Generator::new(cfg.clone(), lib, &Device::Cpu).unwrap();
    let counts: Vec<u32> = (0..cfg.frames).map(|k| cfg.electron_count(k)).collect();
    let batch = gen_.generate(0, &counts).unwrap();
    let truth = Truth::of(&batch, lib, 0);
    (batch.frames, truth)
}

#[test]
fn default_file_holds_exactly_the_generated_frames() {
    let dir = tempfile::tempdir().unwrap();
    let lib = EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    // 40 default frames (two batches); frames of 1100 rows (two chunks of rows, the last one
    // short) as u16 and as f32
    let cases: [(&[&str], FramesConfig); 3] = [
        (&["--frames", "40", "--seed", "3"], FramesConfig { frames: 40, seed: 3, ..Default::default() }),
        (
            &["--frames", "3", "--seed", "4", "--size", "1100x1000", "--electrons", "300", "--electrons-sd", "0"],
            FramesConfig {
                frames: 3,
                seed: 4,
                height: 1100,
                width: 1000,
                electrons: emsim::frames::ElectronCount::Normal { mean: 300.0, sd: 0.0 },
                ..Default::default()
            },
        ),
        (
            &[
                "--frames",
                "2",
                "--seed",
                "5",
                "--size",
                "1100x1000",
                "--electrons",
                "300",
                "--electrons-sd",
                "0",
                "--dtype",
                "f32",
            ],
            FramesConfig {
                frames: 2,
                seed: 5,
                height: 1100,
                width: 1000,
                electrons: emsim::frames::ElectronCount::Normal { mean: 300.0, sd: 0.0 },
                ..Default::default()
            },
        ),
    ];
    for (k, (args, cfg)) in cases.into_iter().enumerate() {
        let f32_frames = args.contains(&"f32");
        let cfg = if f32_frames { cfg } else { FramesConfig { quantize_u16: true, offset_adu: 200.0, ..cfg } };
        let name = format!("f{k}.h5");
        let mut a = vec!["frames", "--device", "cpu", "-q", "--out", &name];
        a.extend_from_slice(args);
        let o = emsim(&a, dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (want, truth) = expected_with_truth(&cfg, &lib);
        let path = dir.path().join(&name);
        let file = hdf5::File::open(&path).unwrap();
        // the truth rows, made beside the writes (frame by frame on the CPU path), are the batch's
        let col = |name: &str| file.dataset(&format!("truth/{name}")).unwrap();
        assert_eq!(col("frame").read_raw::<u32>().unwrap(), truth.frame, "case {k}: truth frame");
        assert_eq!(col("event").read_raw::<u32>().unwrap(), truth.event, "case {k}: truth event");
        assert!(col("x_px").read_raw::<f32>().unwrap() == truth.x_px, "case {k}: truth x_px");
        assert!(col("y_px").read_raw::<f32>().unwrap() == truth.y_px, "case {k}: truth y_px");
        assert!(col("deposit_kev").read_raw::<f32>().unwrap() == truth.deposit_kev, "case {k}: truth deposit_kev");
        let ds = file.dataset("frames").unwrap();
        assert_eq!(
            ds.filters(),
            vec![hdf5::filters::Filter::Shuffle, hdf5::filters::Filter::Deflate(1)],
            "shuffle + deflate, filters plain h5py has"
        );
        // HDF5's own pipeline decodes the chunks emsim compressed
        if f32_frames {
            assert!(ds.read_raw::<f32>().unwrap() == want, "case {k}: f32 frames differ");
        } else {
            let want_u16: Vec<u16> = want.iter().map(|&v| v as u16).collect();
            assert!(ds.read_raw::<u16>().unwrap() == want_u16, "case {k}: u16 frames differ (HDF5's reader)");
            drop((ds, file));
            // emsim's own parallel reader, in batches that cut no chunk and one that does
            let mut r = FramesReader::open(&path, "frames").unwrap();
            assert!(r.is_u16() && r.reads_chunks_directly());
            let px = (cfg.height * cfg.width) as usize;
            let n = cfg.frames as usize;
            let mut got = r.read_u16(0, n - 1).unwrap();
            got.extend(r.read_u16(n as u64 - 1, 1).unwrap());
            assert!(got == want_u16, "case {k}: u16 frames differ (emsim's reader)");
            let f = r.read(1, 1).unwrap();
            assert!(f.iter().zip(&want_u16[px..2 * px]).all(|(a, &b)| *a == b as f32));
        }
    }
    let l = names(dir.path());
    assert!(l.iter().all(|n| !n.starts_with('.')), "temporaries left: {l:?}");
}

/// `--format npy` holds exactly the generated frames and truth too, u16 (two batches) and f32.
#[test]
fn npy_folders_hold_the_generated_frames() {
    use ndarray_npy::ReadNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let lib = EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let read = |p: &str| std::fs::File::open(dir.path().join(p)).unwrap();
    for (dtype, frames) in [("u16", 40u64), ("f32", 3)] {
        let n = frames.to_string();
        let out = format!("n-{dtype}");
        let a = ["frames", "-q", "--device", "cpu", "--format", "npy", "--dtype", dtype, "--frames", &n, "--out", &out];
        let o = emsim(&a, dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let cfg = FramesConfig { frames, ..Default::default() };
        let cfg = if dtype == "u16" { FramesConfig { quantize_u16: true, offset_adu: 200.0, ..cfg } } else { cfg };
        let (want, truth) = expected_with_truth(&cfg, &lib);
        if dtype == "u16" {
            let got = ndarray::Array3::<u16>::read_npy(read(&format!("{out}/frames.npy"))).unwrap();
            assert!(got.iter().zip(&want).all(|(&a, &b)| a as f32 == b) && got.len() == want.len(), "{dtype}");
        } else {
            let got = ndarray::Array3::<f32>::read_npy(read(&format!("{out}/frames.npy"))).unwrap();
            assert!(got.iter().zip(&want).all(|(&a, &b)| a == b) && got.len() == want.len(), "{dtype}");
        }
        let x = ndarray::Array1::<f32>::read_npy(read(&format!("{out}/truth_x_px.npy"))).unwrap();
        assert!(x.to_vec() == truth.x_px, "{dtype}: truth x_px");
    }
}

/// `--compression zstd` and `bslz4`: shuffle + Zstandard as HDF5 filter 32015, bitshuffle + LZ4
/// as filter 32008 (what `hdf5plugin` reads), holding exactly the generated frames, read back by
/// HDF5's own pipeline (through the filters emsim registers) and by emsim's parallel reader.
#[test]
fn zstd_and_bitshuffle_files_hold_the_generated_frames() {
    let dir = tempfile::tempdir().unwrap();
    let lib = EventLibrary::read_h5(&emsim::default_library_path()).unwrap();
    let cfg = FramesConfig { frames: 3, seed: 8, quantize_u16: true, offset_adu: 200.0, ..Default::default() };
    let want: Vec<u16> = expected_with_truth(&cfg, &lib).0.iter().map(|&v| v as u16).collect();
    for (flag, filters) in [
        ("zstd=3", vec![hdf5::filters::Filter::Shuffle, hdf5::filters::Filter::user(32015, &[3])]),
        ("bslz4", vec![hdf5::filters::Filter::user(32008, &[0, 4, 2, 0, 2])]),
    ] {
        let name = format!("{}.h5", &flag[..4]);
        let o =
            emsim(&["frames", "-q", "--frames", "3", "--seed", "8", "--compression", flag, "--out", &name], dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let path = dir.path().join(&name);
        {
            let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
            emsim::io::h5_filters::register().unwrap();
            let file = hdf5::File::open(&path).unwrap();
            let ds = file.dataset("frames").unwrap();
            assert_eq!(ds.filters(), filters, "{flag}");
            assert!(ds.read_raw::<u16>().unwrap() == want, "{flag}: HDF5's pipeline");
        }
        let mut r = FramesReader::open(&path, "frames").unwrap();
        assert!(r.reads_chunks_directly());
        assert!(r.read_u16(0, 3).unwrap() == want, "{flag}: emsim's reader");
    }

    // Chunks of half a row are not read directly: HDF5's pipeline decodes them through the filters
    // emsim registers, which also coded them here (HDF5 compressing through them).
    let vals: Vec<u16> = (0..4 * 30 * 20u32).map(|i| (200 + i.wrapping_mul(2654435761) % 97) as u16).collect();
    for (k, filter) in [hdf5::filters::Filter::user(32015, &[5]), hdf5::filters::Filter::user(32008, &[0, 4, 2, 0, 2])]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("half-rows-{k}.h5"));
        {
            let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
            emsim::io::h5_filters::register().unwrap();
            let f = hdf5::File::create(&path).unwrap();
            let data = ndarray::Array3::from_shape_vec((4, 30, 20), vals.clone()).unwrap();
            let b = f.new_dataset_builder().chunk((1, 30, 10)).set_filters(std::slice::from_ref(&filter));
            b.with_data(&data).create("frames").unwrap();
        }
        let mut r = FramesReader::open(&path, "frames").unwrap();
        assert!(!r.reads_chunks_directly());
        assert!(r.read_u16(0, 4).unwrap() == vals, "HDF5's pipeline through emsim's filter {filter:?}");
    }
}

/// Bitshuffle chunks coded by the reference C library (through `hdf5plugin`, fixture made by
/// `scripts/reference/bitshuffle_fixture.py`): short and full blocks, values left over raw, 2- and
/// 4-byte values, the transpose without LZ4; emsim's decoder reads what was stored beside them.
#[test]
fn bitshuffle_chunks_of_the_reference_library_are_read() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bitshuffle_hdf5plugin.h5");
    for (name, frames) in [("u16_short", 3), ("u16_blocks", 2), ("f32", 2), ("u16_transpose_only", 2)] {
        let mut r = FramesReader::open(&path, name).unwrap();
        assert!(r.reads_chunks_directly(), "{name}");
        let got = r.read(0, frames).unwrap();
        let mut plain = FramesReader::open(&path, &format!("{name}_plain")).unwrap();
        let want = plain.read(0, frames).unwrap();
        assert!(got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}");
    }
}

/// Files from other writers: HDF5's own shuffle + deflate, in chunks of several frames and of
/// rows that do not divide the frame, or no compression, are read in parallel as stored.
#[test]
fn chunks_of_other_layouts_read_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<u16> = (0..5 * 30 * 20u32).map(|i| (200 + i.wrapping_mul(2654435761) % 97) as u16).collect();
    let data = ndarray::Array3::from_shape_vec((5, 30, 20), vals.clone()).unwrap();
    for (k, (chunk, deflate)) in [((2, 16, 20), true), ((1, 7, 20), true), ((3, 30, 20), false)].into_iter().enumerate()
    {
        let path = dir.path().join(format!("o{k}.h5"));
        {
            let _g = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
            let f = hdf5::File::create(&path).unwrap();
            let b = f.new_dataset_builder().chunk(chunk);
            let b = if deflate { b.shuffle().deflate(4) } else { b };
            b.with_data(&data).create("frames").unwrap();
        }
        let mut r = FramesReader::open(&path, "frames").unwrap();
        assert!(r.reads_chunks_directly(), "chunks {chunk:?}");
        for (start, n) in [(0u64, 5usize), (1, 3), (4, 1)] {
            let got = r.read_u16(start, n).unwrap();
            let want = &vals[start as usize * 600..(start as usize + n) * 600];
            assert!(got == want, "chunks {chunk:?}: frames {start}..{}", start as usize + n);
        }
    }
}

#[test]
fn quantized_frames_keep_their_noise_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (&["--offset-adu", "0"][..], "--offset-adu"),
        (&["--quantize-u16", "--offset-adu", "30"][..], "--offset-adu"),
        (&["--dtype", "f16"][..], "--dtype"),
    ] {
        let mut a = vec!["frames", "--frames", "2", "--size", "32x32", "--device", "cpu", "--out", "f.h5"];
        a.extend_from_slice(args);
        let o = emsim(&a, dir.path());
        assert!(!o.status.success(), "{args:?} should be refused");
        let line = stderr_line(&o);
        assert!(line.contains(flag) && line.lines().count() == 1, "{args:?}: {line}");
        assert!(names(dir.path()).is_empty(), "{args:?} left output behind");
    }
    // the default u16 frames are countable: the noise estimate finds the offset
    let o = emsim(
        &["frames", "--frames", "2", "--size", "64x64", "--electrons", "5", "--device", "cpu", "--out", "f.h5", "-q"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = emsim(&["count", "f.h5", "--out", "c.h5", "--device", "cpu", "--json", "-q"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sigma = s["noise_sigma_e"].as_f64().unwrap();
    assert!((sigma - 20.0).abs() < 2.0, "estimated read noise {sigma} e-");
}

#[test]
fn a_run_that_cannot_fit_stops_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let o = emsim(&["frames", "--frames", "1000000000", "--device", "cpu", "--out", "huge.h5"], dir.path());
    assert!(!o.status.success());
    let line = stderr_line(&o);
    assert!(line.contains("not enough space") && line.contains("huge.h5"), "{line}");
    assert!(names(dir.path()).is_empty());
}

/// SIGINT (Ctrl-C) and SIGTERM during `emsim frames`: a one-line message, a failing exit status,
/// and neither the output nor its temporary left in the folder.
#[test]
fn interrupted_runs_leave_nothing_behind() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn(
            Command::new(env!("CARGO_BIN_EXE_emsim"))
                .args(["frames", "--frames", "20000", "--device", "cpu", "--out", "big.h5", "-q"])
                .current_dir(dir.path()),
        );
        // wait until the temporary has data in it
        let t = std::time::Instant::now();
        loop {
            let started = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_string_lossy().starts_with(".big.h5.tmp") && e.metadata().unwrap().len() > 1 << 20
            });
            if started {
                break;
            }
            assert!(t.elapsed().as_secs() < 120, "no temporary appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let o = child.wait_with_output().unwrap();
        assert!(!o.status.success(), "signal {signal}: exit status {:?}", o.status);
        assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
        let left = names(dir.path());
        assert!(left.is_empty(), "signal {signal}: left behind {left:?}");
    }
}

/// `emsim devices` says what `--device auto` picks: a hardware GPU when there is one, otherwise
/// the CPU twins (a software rasterizer such as lavapipe only with --device gpu).
#[test]
fn devices_say_what_auto_picks() {
    let dir = tempfile::tempdir().unwrap();
    let o = emsim(&["devices", "--json"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("error"), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hardware =
        v["adapters"].as_array().unwrap().iter().any(|a| {
            a["device_type"] != "Cpu" && ["vulkan", "metal", "dx12"].contains(&a["backend"].as_str().unwrap())
        });
    assert_eq!(v["auto"]["device"], if hardware { "gpu" } else { "cpu" }, "{v}");
    assert!(v["auto"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    // frames with no --device runs where auto says, and says so
    let o = emsim(&["frames", "--frames", "1", "--size", "16x16", "--out", "f.h5", "--json", "-q"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["path"], v["auto"]["device"]);
}
