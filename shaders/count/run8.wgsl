// count/sum3 and count/find on runs of 8 pixels of a row per invocation (the layout for CPU
// adapters such as lavapipe). Keep in sync with src/count/mod.rs::CountLayout.
const RUN: u32 = 8u;
const VR: u32 = 0u;
const VC: u32 = 1u;
