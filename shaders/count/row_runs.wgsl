// Shared by count/sum3 and count/find (prepended in src/shaders.rs): one invocation per run of RUN
// pixels of a frame row, so the window around the run is loaded once for all its pixels. Uses the
// kernel's uniform `params` (fields n_frames, height, width).

const RUN: u32 = 8u;   // keep in sync with src/count/mod.rs::ROW_RUN

struct RowRun {
    frame: u32,
    base: u32,     // flat index of the frame's first pixel
    r: i32,        // row
    c0: i32,       // first column of the run
}

// The run of invocation t, in `run`; false past the last row of the last frame.
fn row_run(t: u32, run: ptr<function, RowRun>) -> bool {
    let runs = (params.width + RUN - 1u) / RUN;   // runs per row
    let row = t / runs;                            // frame * height + r
    if (row >= params.n_frames * params.height) {
        return false;
    }
    let f = row / params.height;
    *run = RowRun(f, f * params.height * params.width, i32(row % params.height), i32((t % runs) * RUN));
    return true;
}
