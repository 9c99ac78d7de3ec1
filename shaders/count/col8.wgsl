// count/sum3 and count/find on runs of 8 pixels down a column per invocation: neighbouring
// invocations read neighbouring columns, so a GPU's loads coalesce. Keep in sync with
// src/count/mod.rs::CountLayout.
const RUN: u32 = 8u;
const VR: u32 = 1u;
const VC: u32 = 0u;
