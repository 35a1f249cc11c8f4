//! `udpft-bench`: benchmarks of udpft (placeholder).

fn main() {}
