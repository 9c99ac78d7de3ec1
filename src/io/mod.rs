//! File formats: event libraries, frame datasets (HDF5, npy), previews; atomic outputs.

pub mod atomic;
pub mod bitshuffle;
pub mod chunks;
pub mod counts_out;
pub mod deflate;
pub mod frames_in;
pub mod frames_out;
pub mod h5_filters;
pub mod h5util;
pub mod library;
pub mod merge;
pub mod model_file;
pub mod npy;
pub mod preview;
