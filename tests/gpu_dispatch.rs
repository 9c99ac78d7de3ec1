//! `GpuContext::dispatch` refuses buffers whose names differ from the kernel's registry entry.

mod common;

use common::test_context;

#[test]
fn dispatch_with_misnamed_buffers_panics_with_the_binding() {
    let Some(ctx) = test_context() else { return };
    let k = &emsim::shaders::FRAMES_PLACE;
    let params = ctx.storage("params", 48).unwrap();
    let offsets = ctx.storage("offsets", 16).unwrap();
    let records = ctx.storage("records", 16).unwrap();
    let mut enc = ctx.encoder("misnamed");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.dispatch(&mut enc, k, &[("params", &params), ("offsets", &offsets), ("records", &records)], 1)
    }));
    let payload = result.expect_err("a dispatch with a misnamed buffer must be refused");
    let msg = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(msg, "kernel frames/place: binding 1 is 'frame_offsets', but the dispatch passed 'offsets'");
}
