//! Evaluation of counted electrons against truth (in progress).
