//! `embedlab-plugin`: the C ABI shared by the embedlab engine and its encoder plugins.
//!
//! A plugin is a `cdylib` exporting one symbol, [`ENTRY_SYMBOL`] (`embedlab_plugin_v1`), whose
//! first job is to say which ABI it speaks. The engine reads [`AbiVersion`] through a function
//! whose signature never changes, refuses a mismatch with a clear message, and only then takes the
//! function table (which grows only by appending fields).
//!
//! This crate currently defines the versioning handshake and the error codes; the function table
//! (create encoder, describe, encode texts and images, destroy) and the safe trait + export macro
//! for plugin authors land with the first real plugin.

/// The exported symbol every plugin defines.
pub const ENTRY_SYMBOL: &[u8] = b"embedlab_plugin_v1\0";

/// The ABI version this crate implements. A major bump breaks compatibility; a minor bump only
/// appends optional entries to the function table.
pub const ABI_VERSION: AbiVersion = AbiVersion { major: 1, minor: 0 };

/// An ABI version as plugins report it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
}

impl AbiVersion {
    /// Whether a host of version `self` can use a plugin of version `plugin`: same major, and the
    /// plugin is not newer than the host's table knows how to read.
    pub fn accepts(self, plugin: AbiVersion) -> bool {
        self.major == plugin.major && plugin.minor <= self.minor
    }
}

/// Status code returned by every ABI function; anything but [`Status::OK`] comes with a message.
///
/// A plain integer rather than a Rust enum: a C plugin may return any value, and an out-of-range
/// discriminant in a `#[repr(C)] enum` would be undefined behaviour on the host side.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    pub const OK: Status = Status(0);
    /// The configuration JSON was invalid or named an unknown model.
    pub const BAD_CONFIG: Status = Status(1);
    /// Model weights could not be found or loaded.
    pub const MODEL_UNAVAILABLE: Status = Status(2);
    /// The input (a text or image batch) was rejected.
    pub const BAD_INPUT: Status = Status(3);
    /// The plugin panicked; the SDK caught the panic at the boundary.
    pub const PANIC: Status = Status(4);
    /// Anything else.
    pub const INTERNAL: Status = Status(5);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_same_major_and_older_minor_only() {
        let host = AbiVersion { major: 1, minor: 2 };
        assert!(host.accepts(AbiVersion { major: 1, minor: 0 }));
        assert!(host.accepts(AbiVersion { major: 1, minor: 2 }));
        assert!(!host.accepts(AbiVersion { major: 1, minor: 3 }));
        assert!(!host.accepts(AbiVersion { major: 2, minor: 0 }));
    }

    #[test]
    fn entry_symbol_is_nul_terminated_for_dlsym() {
        assert_eq!(ENTRY_SYMBOL.last(), Some(&0));
        assert_eq!(
            &ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1],
            b"embedlab_plugin_v1"
        );
    }
}
