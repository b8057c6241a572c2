//! Decode limits: how much a decoder may allocate for one untrusted file.
//!
//! Read by both decoders, [`crate::preprocess`] (JPEG, PNG, …) and
//! [`crate::dicom`], so it sits below both (`preprocess` re-exports it).

/// Bounds on what the decoder may allocate. Images beyond them are refused
/// before decoding (decompression bombs, absurd dimensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width or height accepted, in pixels.
    pub max_side: u32,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    /// 16384 px a side and 256 MiB: far above any MRI slice, far below what
    /// would hurt a Raspberry Pi.
    fn default() -> Self {
        DecodeLimits {
            max_side: 16_384,
            max_alloc_bytes: 256 << 20,
        }
    }
}
