enable f16;
// Activation storage types (see act_x32_y32.wgsl): f16 in, f32 out. Needs the adapter's SHADER_F16.
alias xt = f16;
alias yt = f32;
