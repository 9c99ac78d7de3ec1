//! Streaming driver of emsim count (next).
