//! Block numbers and their rollover. A transfer counts its blocks with a 64-bit *index*
//! from 1; the wire carries only the low 16 bits, so block 65535 is followed by block 0
//! (the rollover value of tftp-hpa, curl, atftp and busybox), and a file of any size can be
//! sent at any block size. An ACK's 16-bit number is mapped back to the one index it can
//! mean: the window of blocks in flight spans fewer than 65536 blocks, so that is unique.

/// The wire number of block `index` (rolls over from 65535 to 0).
pub fn wire(index: u64) -> u16 {
    index as u16
}

/// The index in `lo..=hi` whose wire number is `number`, if there is one. The range must
/// span at most 65536 indexes (a window is at most 65535 blocks).
pub fn resolve(number: u16, lo: u64, hi: u64) -> Option<u64> {
    let back = u64::from(wire(hi).wrapping_sub(number));
    let index = hi.checked_sub(back)?;
    (index >= lo).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_numbers_roll_over_to_zero() {
        assert_eq!(wire(65_535), 65_535);
        assert_eq!(wire(65_536), 0);
        assert_eq!(wire(65_537), 1);
    }

    #[test]
    fn acks_resolve_within_the_window_across_rollover() {
        assert_eq!(resolve(0, 65_530, 65_540), Some(65_536));
        assert_eq!(resolve(65_535, 65_530, 65_540), Some(65_535));
        assert_eq!(resolve(4, 65_530, 65_540), Some(65_540));
        assert_eq!(resolve(5, 65_530, 65_540), None);
        assert_eq!(resolve(65_529, 65_530, 65_540), None);
        assert_eq!(resolve(3, 0, 2), None);
        assert_eq!(resolve(0, 0, 2), Some(0));
    }
}
