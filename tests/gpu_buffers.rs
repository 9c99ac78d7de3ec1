//! Uploads and readbacks through the reused staging buffers (`src/gpu/buffers.rs`): large writes
//! go through a mappable buffer copied on all cores, readbacks reuse a pool. Round trips of
//! fresh random data, repeated so that pooled buffers are reused, at sizes on both sides of the
//! thresholds (4 MiB uploads, 2 MiB parallel copies).

mod common;

use common::{test_context, test_rng};
use rand::RngExt;

#[test]
fn large_uploads_and_readbacks_round_trip() {
    let Some(ctx) = test_context() else { return };
    let mut rng = test_rng("large_uploads_and_readbacks_round_trip");
    let dst = ctx.storage("dst", 24 << 20).unwrap();
    // below and above the staged-upload threshold, and a shrinking size that reuses a larger
    // pooled buffer
    for words in [1000usize, (4 << 20) / 4 + 7, (6 << 20) / 4, (5 << 20) / 4 + 3, (24 << 20) / 4] {
        let data: Vec<u32> = (0..words).map(|_| rng.random()).collect();
        ctx.write(&dst, &data);
        let mut enc = ctx.encoder("round trip");
        let rb = ctx.readback(&mut enc, &dst, (words * 4) as u64);
        ctx.submit_and_wait(enc).unwrap();
        let mut back = vec![7u32; 3]; // a reused vector with stale contents
        rb.read_into(&ctx, &mut back).unwrap();
        assert_eq!(back.len(), words);
        assert!(back == data, "{words} words: round trip differs");
    }
    // Two writes before one submission keep their order: the second wins.
    let a: Vec<u32> = vec![1; (5 << 20) / 4];
    let b: Vec<u32> = vec![2; (5 << 20) / 4];
    ctx.write(&dst, &a);
    ctx.write(&dst, &b);
    let mut enc = ctx.encoder("order");
    let rb = ctx.readback(&mut enc, &dst, (b.len() * 4) as u64);
    ctx.submit_and_wait(enc).unwrap();
    assert!(rb.read::<u32>(&ctx).unwrap() == b);
}
