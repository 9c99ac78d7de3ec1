//! The GPU timer (timestamp queries, `src/gpu/timing.rs`) used by `bench`: it measures the
//! command buffers submitted while it runs, reports nothing when stopped or unsupported, and does
//! not disturb the work itself.

mod common;

#[test]
fn gpu_timer_measures_submitted_work() {
    let Some(ctx) = common::test_context() else { return };
    let bytes = 32u64 << 20;
    let a = ctx.upload("a", &vec![7u32; (bytes / 4) as usize]).unwrap();
    let b = ctx.storage("b", bytes).unwrap();
    // stopped without a start: nothing
    assert_eq!(ctx.gpu_timer_stop(), None);
    let supported = ctx.gpu_timer_start();
    assert_eq!(supported, ctx.has_timestamps());
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        let mut enc = ctx.encoder("copy");
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        ctx.submit_and_wait(enc).unwrap();
    }
    let wall = t0.elapsed().as_secs_f64();
    let gpu = ctx.gpu_timer_stop();
    if supported {
        let g = gpu.expect("timestamps supported: a GPU time");
        eprintln!("3 copies of {} MiB: gpu {g:.6} s, wall {wall:.6} s", bytes >> 20);
        assert!(g > 0.0, "copies take time: {g}");
        assert!(g <= wall * 1.05 + 1e-4, "GPU time {g} cannot exceed the wall time {wall} around it");
    } else {
        assert_eq!(gpu, None);
    }
    // the work itself is unaffected
    let mut enc = ctx.encoder("read");
    let rb = ctx.readback(&mut enc, &b, 16);
    ctx.submit_and_wait(enc).unwrap();
    assert_eq!(rb.read::<u32>(&ctx).unwrap(), vec![7; 4]);
    // an encoder made before the start is not timed (and does not confuse the next one)
    let mut early = ctx.encoder("early");
    ctx.gpu_timer_start();
    early.copy_buffer_to_buffer(&a, 0, &b, 0, 4);
    ctx.submit_and_wait(early).unwrap();
    let mut enc = ctx.encoder("late");
    enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
    ctx.submit_and_wait(enc).unwrap();
    if supported {
        assert!(ctx.gpu_timer_stop().unwrap() > 0.0);
    }
}

/// Per-kernel times (`bench --kernel-times`): every dispatch made while they run is timed under
/// its kernel's name, the sum fits in the wall time around it, the results are unchanged, and
/// nothing is timed outside a start/stop pair.
#[test]
fn kernel_times_name_every_dispatched_kernel() {
    use emsim::net::linear::{LinearShape, linear_fwd_record};
    use emsim::net::relu::{relu_fwd_cpu, relu_fwd_record};
    let Some(ctx) = common::test_context() else { return };
    assert_eq!(ctx.kernel_times_stop().unwrap(), None, "not started");
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2001) as f32 - 1000.0).collect();
    let (xb, yb) = (ctx.upload("x", &x).unwrap(), ctx.storage("y", 4 * n as u64).unwrap());
    let s = LinearShape::new(64, 32, 16);
    let (w, b) = (ctx.upload("w", &vec![0.5f32; 32 * 16]).unwrap(), ctx.upload("b", &[1.0f32; 16]).unwrap());
    let lb = ctx.storage("ly", 4 * 64 * 16).unwrap();

    let supported = ctx.kernel_times_start();
    assert_eq!(supported, ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY));
    let t0 = std::time::Instant::now();
    let mut enc = ctx.encoder("relu twice, linear once");
    relu_fwd_record(&ctx, &mut enc, n, &xb, &yb).unwrap();
    linear_fwd_record(&ctx, &mut enc, &s, &xb, &w, &b, &lb).unwrap();
    relu_fwd_record(&ctx, &mut enc, n, &xb, &yb).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let times = ctx.kernel_times_stop().unwrap();
    if supported {
        let times = times.expect("timestamps supported: kernel times");
        eprintln!("{times:?} within {wall:.6} s");
        let names: Vec<(&str, u64)> = times.iter().map(|k| (k.kernel, k.dispatches)).collect();
        assert_eq!(names, [("net/relu_fwd", 2), ("net/linear_fwd", 1)], "in order of first dispatch");
        assert!(times.iter().all(|k| k.gpu_s > 0.0), "every kernel takes time: {times:?}");
        let sum: f64 = times.iter().map(|k| k.gpu_s).sum();
        assert!(sum <= wall * 1.05 + 1e-4, "kernel times {sum} s exceed the wall time {wall} s");
    } else {
        assert_eq!(times, None);
    }
    // the work itself is unaffected
    let mut enc = ctx.encoder("read");
    let rb = ctx.readback(&mut enc, &yb, 4 * n as u64);
    ctx.submit_and_wait(enc).unwrap();
    let mut want = vec![0.0; n];
    relu_fwd_cpu(&x, &mut want);
    assert_eq!(rb.read::<f32>(&ctx).unwrap(), want);
    // stopped: a dispatch now is not timed, and the next start begins empty
    let mut enc = ctx.encoder("untimed");
    relu_fwd_record(&ctx, &mut enc, n, &xb, &yb).unwrap();
    ctx.submit_and_wait(enc).unwrap();
    if ctx.kernel_times_start() {
        assert_eq!(ctx.kernel_times_stop().unwrap(), Some(vec![]));
    }
}
