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
