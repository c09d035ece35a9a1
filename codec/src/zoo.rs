//! The registry of model architectures a bitstream may name.
//!
//! A stream records which architecture produced it (and a fingerprint of the exact weights,
//! see [`crate::bitstream::Header::weights_hash`]); a decoder refuses streams whose model it does
//! not know rather than decoding garbage. Ids are never reused.

/// A model architecture known to this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelId {
    /// Ember's multi-reference checkerboard model, first generation.
    MrcV1 = 1,
}

impl ModelId {
    /// Every architecture this build can name.
    pub const ALL: [ModelId; 1] = [ModelId::MrcV1];

    /// Looks up the id stored in a stream.
    pub fn from_u16(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|m| *m as u16 == id)
    }

    /// Short name, as printed by `ember info` and used in model file names.
    pub fn name(self) -> &'static str {
        match self {
            ModelId::MrcV1 => "ember-mrc-v1",
        }
    }
}
