//! Kernel benchmarks: `cargo bench`. Each frames kernel on the GPU (whatever adapter wgpu finds;
//! lavapipe on a machine without a GPU) and its CPU twin, at the default 576x576 frame and
//! density. GPU timings are wall clock from submission through readback (`submit_and_wait`).
//! Under `cargo test --all-targets` criterion runs each bench once, as a smoke test.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emsim::events::parametric::{ParametricModel, parametric_library};
use emsim::frames::accumulate::{AccumulateParams, PackedLibrary, accumulate_cpu, accumulate_gpu};
use emsim::frames::noise::{NoiseParams, noise_cpu, noise_gpu};
use emsim::frames::place::{PlaceParams, place_cpu, place_gpu};
use emsim::gpu::{BackendChoice, GpuContext};

const FRAMES: u32 = 8;
const SIDE: u32 = 576;
const ELECTRONS: u32 = 2927;

fn kernels(c: &mut Criterion) {
    let ctx = GpuContext::new(BackendChoice::Auto).ok();
    if ctx.is_none() {
        eprintln!("no GPU adapter: benchmarking the CPU twins only");
    }
    let lib = PackedLibrary::new(&parametric_library(&ParametricModel::default(), 2000, 1));
    let offsets: Vec<u32> = (0..=FRAMES).map(|f| f * ELECTRONS).collect();
    let place = PlaceParams {
        n_electrons: FRAMES * ELECTRONS,
        n_frames: FRAMES,
        n_events: lib.n_events(),
        height: SIDE,
        width: SIDE,
        ..Default::default()
    };
    let records = place_cpu(&place, &offsets);
    let acc_p = AccumulateParams {
        n_electrons: place.n_electrons,
        height: SIDE,
        width: SIDE,
        band_rows: SIDE,
        ..Default::default()
    };
    let zeros = vec![0u32; (FRAMES * SIDE * SIDE) as usize];
    let mut acc = zeros.clone();
    accumulate_cpu(&acc_p, &records, &lib, &mut acc);
    let noise_p = NoiseParams {
        n_frames: FRAMES,
        width: SIDE,
        band_rows: SIDE,
        sigma_e: 20.0,
        gain_adu_per_e: 1.0,
        ..Default::default()
    }
    .with_groups();
    let out0 = vec![0f32; acc.len()];

    let mut g = c.benchmark_group("frames_kernels_8x576x576");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.sample_size(10);
    g.bench_function("place/cpu", |b| b.iter(|| place_cpu(&place, &offsets)));
    g.bench_function("accumulate/cpu", |b| {
        b.iter(|| {
            let mut a = zeros.clone();
            accumulate_cpu(&acc_p, &records, &lib, &mut a);
            a
        })
    });
    g.bench_function("noise/cpu", |b| {
        b.iter(|| {
            let mut o = out0.clone();
            noise_cpu(&noise_p, &acc, &mut o);
            o
        })
    });
    if let Some(ctx) = &ctx {
        g.bench_function("place/gpu", |b| b.iter(|| place_gpu(ctx, &place, &offsets).unwrap()));
        g.bench_function("accumulate/gpu", |b| b.iter(|| accumulate_gpu(ctx, &acc_p, &records, &lib, &zeros).unwrap()));
        g.bench_function("noise/gpu", |b| b.iter(|| noise_gpu(ctx, &noise_p, &acc, &out0).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
