//! `udpft-soak`: a bounded soak test of a udpft server (placeholder).

fn main() {}
