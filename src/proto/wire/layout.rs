//! The payload layouts, each written once as a table of fields at byte ranges (smoltcp's
//! `field` modules), from which [`layout!`] generates the struct, the layout's length, and
//! both directions: `read` (decode) and `write` (encode). The ranges are checked when the
//! crate compiles: each is as long as its field's type, and together they tile the fixed
//! part without gap or overlap, so a table cannot disagree with itself.
//!
//! A layout covers a payload's fixed fields; what may follow them (a name, a text, file
//! bytes) is its [`Tail`], judged by the decoder in `mod.rs`. Offsets are relative to the
//! start of the payload, as in protocol.md §4.

use byteorder::{ByteOrder, NetworkEndian};

/// A fixed-size big-endian integer field.
pub(super) trait Field: Copy {
    /// Its size in bytes.
    const SIZE: usize;
    /// Reads it from exactly `SIZE` bytes.
    fn get(bytes: &[u8]) -> Self;
    /// Writes it into exactly `SIZE` bytes.
    fn put(self, bytes: &mut [u8]);
}

impl Field for u8 {
    const SIZE: usize = 1;
    fn get(bytes: &[u8]) -> Self {
        bytes[0]
    }
    fn put(self, bytes: &mut [u8]) {
        bytes[0] = self;
    }
}

macro_rules! int_field {
    ($ty:ty, $size:literal, $read:ident, $write:ident) => {
        impl Field for $ty {
            const SIZE: usize = $size;
            fn get(bytes: &[u8]) -> Self {
                NetworkEndian::$read(bytes)
            }
            fn put(self, bytes: &mut [u8]) {
                NetworkEndian::$write(bytes, self)
            }
        }
    };
}

int_field!(u16, 2, read_u16, write_u16);
int_field!(u32, 4, read_u32, write_u32);
int_field!(u64, 8, read_u64, write_u64);

/// Whether `ranges` (start, end, field size) tile `0..end` in order: each starts where the
/// previous ended and is as long as its field.
pub(super) const fn tiles(ranges: &[(usize, usize, usize)]) -> bool {
    let mut at = 0;
    let mut i = 0;
    while i < ranges.len() {
        let (start, end, size) = ranges[i];
        if start != at || end - start != size {
            return false;
        }
        at = end;
        i += 1;
    }
    true
}

/// Declares a payload layout: `Name { field: type = start..end, ... }`.
macro_rules! layout {
    (
        $(#[$meta:meta])*
        $name:ident { $( $field:ident: $ty:ty = $start:literal..$end:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(super) struct $name {
            $( pub(super) $field: $ty, )*
        }

        impl $name {
            /// Bytes of the fixed fields.
            pub(super) const LEN: usize = {
                let ends = [0 $(, $end)*];
                ends[ends.len() - 1]
            };

            /// Reads the fields from the front of `payload`, which holds at least `LEN` bytes.
            pub(super) fn read(payload: &[u8]) -> Self {
                Self { $( $field: <$ty as Field>::get(&payload[$start..$end]), )* }
            }

            /// Writes the fields into the front of `payload`, which holds at least `LEN` bytes.
            pub(super) fn write(&self, payload: &mut [u8]) {
                $( <$ty as Field>::put(self.$field, &mut payload[$start..$end]); )*
            }
        }

        const _: () = assert!(
            tiles(&[ $( ($start, $end, <$ty as Field>::SIZE) ),* ]),
            concat!("the ranges of ", stringify!($name), " do not tile its payload"),
        );
    };
}

/// What may follow a payload's fixed fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tail {
    /// Nothing: the payload is exactly the fixed fields.
    None,
    /// A file name: 1 ..= `MAX_NAME_LEN` bytes.
    Name,
    /// An error text: 0 ..= `MAX_ERROR_TEXT` bytes.
    Text,
    /// File bytes: at least one.
    Bytes,
    /// A selective-acknowledgment bitmap: 0 ..= `MAX_BITMAP` bytes, the last not zero.
    Bitmap,
}

layout! {
    /// List (§4.1).
    List { chunk: u16 = 0..2 }
}

layout! {
    /// Get (§4.2), before the name.
    Get { chunk: u16 = 0..2, offset: u64 = 2..10 }
}

layout! {
    /// Put (§4.3), before the name.
    Put { chunk: u16 = 0..2, size: u64 = 2..10, flags: u8 = 10..11 }
}

layout! {
    /// Sum (§22.1), before the name.
    Sum { chunk: u16 = 0..2, algo: u8 = 2..3 }
}

layout! {
    /// Accept (§4.4).
    Accept { token: u32 = 0..4, chunk: u16 = 4..6, size: u64 = 6..14, offset: u64 = 14..22 }
}

layout! {
    /// Done (§4.7).
    Done { size: u64 = 0..8, crc: u32 = 8..12 }
}

layout! {
    /// Error (§4.8), before the text.
    Error { code: u16 = 0..2 }
}

layout! {
    /// List of version 2 (§20.1): the window asked for after the chunk.
    ListWindowed { chunk: u16 = 0..2, window: u16 = 2..4 }
}

layout! {
    /// Get of version 2 (§20.1), before the name.
    GetWindowed { chunk: u16 = 0..2, window: u16 = 2..4, offset: u64 = 4..12 }
}

layout! {
    /// Put of version 2 (§20.1), before the name.
    PutWindowed { chunk: u16 = 0..2, window: u16 = 2..4, size: u64 = 4..12, flags: u8 = 12..13 }
}

layout! {
    /// Accept of version 2 (§20.1): the window granted after the chunk.
    AcceptWindowed {
        token: u32 = 0..4,
        chunk: u16 = 4..6,
        window: u16 = 6..8,
        size: u64 = 8..16,
        offset: u64 = 16..24,
    }
}

/// The Put flag that asks to replace an existing file; every other bit must be 0.
pub(super) const PUT_FLAG_OVERWRITE: u8 = 0x01;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_the_lengths_of_protocol_md() {
        assert_eq!(List::LEN, 2);
        assert_eq!(Get::LEN, 10);
        assert_eq!(Put::LEN, 11);
        assert_eq!(Sum::LEN, 3);
        assert_eq!(Accept::LEN, 22);
        assert_eq!(Done::LEN, 12);
        assert_eq!(Error::LEN, 2);
        assert_eq!(ListWindowed::LEN, 4);
        assert_eq!(GetWindowed::LEN, 12);
        assert_eq!(PutWindowed::LEN, 13);
        assert_eq!(AcceptWindowed::LEN, 24);
    }

    #[test]
    fn a_gap_or_an_overlap_is_caught() {
        assert!(tiles(&[(0, 2, 2), (2, 10, 8)]));
        assert!(!tiles(&[(0, 2, 2), (3, 11, 8)]));
        assert!(!tiles(&[(0, 2, 2), (1, 9, 8)]));
        assert!(!tiles(&[(0, 4, 2)]));
    }

    #[test]
    fn read_returns_what_write_wrote() {
        let accept = Accept {
            token: 0xBEEF,
            chunk: 1430,
            size: 1000,
            offset: 7,
        };
        let mut bytes = [0u8; Accept::LEN];
        accept.write(&mut bytes);
        assert_eq!(Accept::read(&bytes), accept);
    }
}
