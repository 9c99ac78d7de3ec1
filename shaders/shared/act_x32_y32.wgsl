// Activation storage types of an inference-forward kernel (prepended first in src/shaders.rs): the
// input `x` and output `y` arrays hold `xt` and `yt`; arithmetic is f32 (`f32(x[i])` on load,
// `yt(v)` on store). This piece: f32 in, f32 out (training and the default inference path).
alias xt = f32;
alias yt = f32;
