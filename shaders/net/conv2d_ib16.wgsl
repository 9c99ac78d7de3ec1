// conv2d_bwd_input block width: IB = 4 * IQ = 16 input channels per invocation.
const IQ: u32 = 4u;
