//! `lossy-proxy`: a UDP relay that impairs traffic between clients and one server (placeholder).

fn main() {}
