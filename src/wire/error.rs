//! The one error type of the wire layer: small, `Copy`, and precise enough to log.

/// What went wrong while decoding or encoding a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ErrorKind {
    /// The datagram ended before the field did.
    #[error("truncated")]
    Truncated,
    /// The datagram does not start the way this message must (prefix, opcode or header text).
    #[error("bad header")]
    BadHeader,
    /// Bytes follow a message whose protocol has no room for them.
    #[error("trailing bytes")]
    TrailingBytes,
    /// A NUL-terminated string has no NUL.
    #[error("missing NUL terminator")]
    MissingNul,
    /// A field that must be a number is not one, or does not fit its type.
    #[error("bad number")]
    BadNumber,
    /// A field that must be an IP address (and port) is not one.
    #[error("bad address")]
    BadAddress,
    /// A field holds a byte its grammar forbids.
    #[error("forbidden byte")]
    BadByte,
    /// A field or collection is larger than the documented bound.
    #[error("too long")]
    TooLong,
    /// An infostring is malformed (no leading `\`, or a key without a value).
    #[error("malformed infostring")]
    BadInfostring,
    /// A required key or token is absent.
    #[error("missing")]
    Missing,
    /// A value is outside the set the protocol defines.
    #[error("bad value")]
    BadValue,
    /// The output buffer or packet has no room for what was to be written.
    #[error("no room in output")]
    NoRoom,
}

/// A decoding or encoding error: what went wrong, in which field, at which byte offset.
///
/// `field` is a static name (e.g. `"seed"`, `"infoResponse.challenge"`) so the type stays `Copy`
/// and logging needs no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{kind} in {field} at byte {offset}")]
pub struct Error {
    pub kind: ErrorKind,
    pub field: &'static str,
    /// Offset into the datagram where the problem was seen (0 when not meaningful).
    pub offset: usize,
}

impl Error {
    pub const fn new(kind: ErrorKind, field: &'static str, offset: usize) -> Self {
        Self {
            kind,
            field,
            offset,
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_and_displays_context() {
        let e = Error::new(ErrorKind::MissingNul, "seed", 2);
        assert_eq!(e.to_string(), "missing NUL terminator in seed at byte 2");
        // Copy and small: a kind, a static str and an offset.
        assert!(core::mem::size_of::<Error>() <= 32);
    }
}
