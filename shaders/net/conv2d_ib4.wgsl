// conv2d_bwd_input block width: IB = 4 * IQ = 4 input channels per invocation (C_in <= 4).
const IQ: u32 = 1u;
