//! A bounds check of DICOM element lengths, before the DICOM parser sees
//! the bytes.
//!
//! The parser (`dicom-parser` 0.10) allocates and zero-fills a value's
//! declared length before reading it, so a file of one kilobyte that
//! declares a 4 GB element makes it touch 4 GB of memory (found by
//! fuzzing, `fuzz/fuzz_targets/preprocess.rs`): on a Raspberry Pi, the
//! out-of-memory killer. Scans are in memory already, so
//! [`check_declared_lengths`] walks every element header (nested sequence
//! items and encapsulated pixel-data fragments included) and refuses any
//! defined length larger than the bytes left. It reads headers only:
//! tag, VR (explicit transfer syntaxes; the standard dictionary's for
//! implicit VR, to find sequences), length.
//!
//! Deflated data sets cannot be walked without inflating them; for those
//! the check covers the file meta group only.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);

/// How the data set after the file meta group is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Explicit VR little endian (and every compressed transfer syntax).
    ExplicitLittle,
    /// Explicit VR big endian (retired).
    ExplicitBig,
    /// Implicit VR little endian.
    ImplicitLittle,
    /// Deflated explicit VR little endian: not walked.
    Deflated,
}

impl Encoding {
    /// The encoding of a transfer syntax UID.
    pub fn of_transfer_syntax(uid: &str) -> Encoding {
        match uid.trim_end_matches(['\0', ' ']) {
            "1.2.840.10008.1.2" => Encoding::ImplicitLittle,
            "1.2.840.10008.1.2.2" => Encoding::ExplicitBig,
            "1.2.840.10008.1.2.1.99" => Encoding::Deflated,
            _ => Encoding::ExplicitLittle,
        }
    }
}

/// Whether an explicit-VR header has a 2-byte reserved field and a 4-byte
/// length, read as the parser reads it: every VR but the short ones of
/// PS3.5 7.1.2, and any two bytes that are not a VR at all, which the
/// parser takes for `UN` (fuzzing found a file whose garbage VR the walker
/// read as short while the parser read a 4 GB length).
fn long_length(vr: [u8; 2]) -> bool {
    use VR::*;
    !matches!(
        VR::from_binary(vr).unwrap_or(UN),
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    big: bool,
}

impl Walker<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn too_long(&self, tag: Tag, length: u32, at: usize) -> String {
        format!(
            "element ({:04X},{:04X}) at byte {at} declares {length} bytes, but only {} are left in the file",
            tag.0,
            tag.1,
            self.bytes.len().saturating_sub(self.pos)
        )
    }

    /// Walk elements from `pos` to the end, or while `group_only` matches.
    /// Returns the value of (0002,0010) if seen.
    fn walk(&mut self, explicit: bool, group_only: Option<u16>) -> Result<Option<String>, String> {
        let mut transfer_syntax = None;
        // Inside encapsulated pixel data, items are raw fragments.
        let mut in_fragments = false;
        while self.pos + 8 <= self.bytes.len() {
            let at = self.pos;
            let tag = Tag(self.u16(at).unwrap_or(0), self.u16(at + 2).unwrap_or(0));
            if group_only.is_some_and(|g| tag.0 != g) {
                break;
            }
            if tag.0 == 0xFFFE {
                // Items and delimiters: a 4-byte length, no VR.
                let length = self.u32(at + 4).unwrap_or(0);
                self.pos += 8;
                match tag {
                    SEQUENCE_DELIMITER => in_fragments = false,
                    ITEM if length != UNDEFINED => {
                        if length as usize > self.bytes.len() - self.pos {
                            return Err(self.too_long(tag, length, at));
                        }
                        if in_fragments {
                            // A compressed fragment: raw bytes, skipped.
                            self.pos += length as usize;
                        }
                        // Otherwise a sequence item: walk into it.
                    }
                    _ => {}
                }
                continue;
            }
            let (vr, length, header) = if explicit {
                let vr = [self.bytes[at + 4], self.bytes[at + 5]];
                if long_length(vr) {
                    let Some(length) = self.u32(at + 8) else {
                        break;
                    };
                    (Some(vr), length, 12)
                } else {
                    (Some(vr), u32::from(self.u16(at + 6).unwrap_or(0)), 8)
                }
            } else {
                (None, self.u32(at + 4).unwrap_or(0), 8)
            };
            self.pos += header;
            if length == UNDEFINED {
                // A sequence, or encapsulated pixel data: walk into it.
                in_fragments = tag == PIXEL_DATA;
                continue;
            }
            if length as usize > self.bytes.len().saturating_sub(self.pos) {
                return Err(self.too_long(tag, length, at));
            }
            let is_sequence = match vr {
                Some(vr) => &vr == b"SQ",
                None => StandardDataDictionary
                    .by_tag(tag)
                    .is_some_and(|e| e.vr().relaxed() == VR::SQ),
            };
            if is_sequence {
                // Defined-length sequence: its items follow, walk into them.
                continue;
            }
            if tag == Tag(0x0002, 0x0010) {
                let value = &self.bytes[self.pos..self.pos + length as usize];
                transfer_syntax = Some(String::from_utf8_lossy(value).into_owned());
            }
            self.pos += length as usize;
        }
        Ok(transfer_syntax)
    }
}

/// Refuse a DICOM file (preamble and `DICM` included) in which an element,
/// item or fragment declares a defined length larger than the bytes left
/// after its header. The reason names the element and its offset.
pub fn check_declared_lengths(file: &[u8]) -> Result<(), String> {
    if file.len() < 132 {
        return Ok(());
    }
    let mut meta = Walker {
        bytes: file,
        pos: 132,
        big: false,
    };
    let ts = meta.walk(true, Some(0x0002))?;
    let encoding = ts
        .as_deref()
        .map_or(Encoding::ExplicitLittle, Encoding::of_transfer_syntax);
    check_data_set(&file[meta.pos..], encoding)
}

/// [`check_declared_lengths`] for a data set alone (no preamble, no meta
/// group), as the DICOM network delivers it.
pub fn check_data_set(data_set: &[u8], encoding: Encoding) -> Result<(), String> {
    let mut walker = Walker {
        bytes: data_set,
        pos: 0,
        big: encoding == Encoding::ExplicitBig,
    };
    match encoding {
        Encoding::Deflated => Ok(()),
        Encoding::ImplicitLittle => walker.walk(false, None).map(|_| ()),
        Encoding::ExplicitLittle | Encoding::ExplicitBig => walker.walk(true, None).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend(vr);
        if long_length(*vr) {
            out.extend([0, 0]);
            out.extend((value.len() as u32).to_le_bytes());
        } else {
            out.extend((value.len() as u16).to_le_bytes());
        }
        out.extend(value);
        out
    }

    #[test]
    fn lengths_within_the_data_pass_and_beyond_it_are_named() {
        let good = [
            explicit((0x0008, 0x0060), b"CS", b"MR"),
            explicit((0x7FE0, 0x0010), b"OB", &[1; 16]),
        ]
        .concat();
        check_data_set(&good, Encoding::ExplicitLittle).unwrap();
        let mut bad = good.clone();
        // The pixel data's length field.
        let at = explicit((0x0008, 0x0060), b"CS", b"MR").len() + 8;
        bad[at..at + 4].copy_from_slice(&0xAD4C_0000u32.to_le_bytes());
        let e = check_data_set(&bad, Encoding::ExplicitLittle).unwrap_err();
        assert!(e.contains("(7FE0,0010)") && e.contains("2907439104"), "{e}");
    }

    /// Two bytes that are no VR: the parser reads a reserved field and a
    /// 4-byte length (as for `UN`), so the walker must too.
    #[test]
    fn an_unknown_vr_has_a_long_length_as_the_parser_reads_it() {
        let mut bad = vec![0x09, 0x00, 0x10, 0x00, 0x01, 0x63, 0, 0];
        bad.extend(0xFB00_0000u32.to_le_bytes());
        bad.extend([7u8; 16]);
        let e = check_data_set(&bad, Encoding::ExplicitLittle).unwrap_err();
        assert!(e.contains("(0009,0010)") && e.contains("4211081216"), "{e}");
        let mut good = bad.clone();
        good[8..12].copy_from_slice(&16u32.to_le_bytes());
        check_data_set(&good, Encoding::ExplicitLittle).unwrap();
    }

    #[test]
    fn nested_items_and_fragments_are_checked() {
        // A sequence of undefined length holding one item with a bad element.
        let inner = explicit((0x0008, 0x0100), b"SH", b"CODE");
        let mut seq = Vec::new();
        seq.extend([0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        seq.extend(UNDEFINED.to_le_bytes());
        seq.extend([0xFE, 0xFF, 0x00, 0xE0]);
        seq.extend((inner.len() as u32).to_le_bytes());
        seq.extend(&inner);
        seq.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        check_data_set(&seq, Encoding::ExplicitLittle).unwrap();
        let mut bad = seq.clone();
        let at = 12 + 8 + 6; // the SH length inside the item
        bad[at..at + 2].copy_from_slice(&0xFFF0u16.to_le_bytes());
        assert!(check_data_set(&bad, Encoding::ExplicitLittle).is_err());

        // Encapsulated pixel data: offset table, one fragment, delimiter.
        let mut pixels = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        pixels.extend(UNDEFINED.to_le_bytes());
        pixels.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        pixels.extend([0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        pixels.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        check_data_set(&pixels, Encoding::ExplicitLittle).unwrap();
        let mut bad = pixels.clone();
        bad[24..28].copy_from_slice(&0x4000_0000u32.to_le_bytes());
        let e = check_data_set(&bad, Encoding::ExplicitLittle).unwrap_err();
        assert!(e.contains("(FFFE,E000)"), "{e}");
    }
}
