// Shared by count/sum3 and count/find (prepended in src/shaders.rs): one invocation per run of RUN
// pixels, along a row (VR = 0, VC = 1) or down a column (VR = 1, VC = 0), so the window around the
// run is loaded once for all its pixels. Pixel m of a run is (r0 + VR * m, c0 + VC * m). RUN, VR
// and VC come from count/run1.wgsl, run8.wgsl or col8.wgsl, prepended before this piece. Uses the
// kernel's uniform `params` (fields n_frames, height, width).

const STEP_R: u32 = VR * (RUN - 1u) + 1u;   // rows a run spans
const STEP_C: u32 = VC * (RUN - 1u) + 1u;   // columns a run spans
const WIN_R: u32 = STEP_R + 2u;             // the window of the run's 3x3 neighbourhoods
const WIN_C: u32 = STEP_C + 2u;

struct Run {
    frame: u32,
    base: u32,     // flat index of the frame's first pixel
    r0: i32,       // first pixel of the run
    c0: i32,
}

// The run of invocation t, in `run`; false past the last run of the last frame. Consecutive
// invocations take consecutive runs of a row of runs.
fn pixel_run(t: u32, run: ptr<function, Run>) -> bool {
    let rows = (params.height + STEP_R - 1u) / STEP_R;   // rows of runs per frame
    let cols = (params.width + STEP_C - 1u) / STEP_C;    // runs per row of runs
    let row = t / cols;                                  // frame * rows + row of runs
    if (row >= params.n_frames * rows) {
        return false;
    }
    let f = row / rows;
    *run = Run(f, f * params.height * params.width, i32((row % rows) * STEP_R), i32((t % cols) * STEP_C));
    return true;
}
