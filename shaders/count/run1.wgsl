// count/sum3 and count/find with one pixel per invocation. Keep in sync with
// src/count/mod.rs::CountLayout.
const RUN: u32 = 1u;
const VR: u32 = 0u;
const VC: u32 = 1u;
