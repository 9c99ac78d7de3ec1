enable f16;
// Activation storage types (see act_x32_y32.wgsl): f16 in, f16 out. Needs the adapter's SHADER_F16.
alias xt = f16;
alias yt = f16;
