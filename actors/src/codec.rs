//! Bytes ↔ values: the one place that uses bincode, and the length-delimited framing of TCP streams.
//!
//! Every TCP frame is `u32 big-endian length ‖ bincode(value)`. The length is checked against the
//! connection's maximum *before* the body is buffered, and bincode decodes with a byte limit, so a
//! hostile length prefix or a hostile vector length cannot make us allocate without bound.

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Upper bound on what bincode may allocate while decoding one value. Frames are smaller still
/// (see `limits.max_frame_bytes`); this is the second fence.
pub const DECODE_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum CodecError {
    // bincode's own errors are kept as values (the source chain), never as text: a decoder's
    // message stays on this side (issue 8), the fixed texts below are what travels.
    #[error("cannot encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("malformed frame: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("frame has {0} trailing bytes")]
    Trailing(usize),
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<DECODE_LIMIT>()
}

/// Encode a value with the project's bincode configuration.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(CodecError::Encode)
}

/// Decode a whole buffer into one value; trailing bytes are an error (no smuggled data).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(CodecError::Decode)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Decode the first value of `bytes`, borrowing from them, and ignore what follows: for reading one
/// field of an unauthenticated value and nothing else (see `handshake::check_request`).
pub fn decode_prefix<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    bincode::serde::borrow_decode_from_slice(bytes, config())
        .map(|(value, _)| value)
        .map_err(CodecError::Decode)
}

/// Length-delimited frames of bincode values: decodes `In`, encodes `Out`.
pub struct FrameCodec<In, Out> {
    inner: LengthDelimitedCodec,
    max: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec refusing frames larger than `max_frame_bytes` in either direction.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            inner: LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(max_frame_bytes)
                .new_codec(),
            max: max_frame_bytes,
            _types: PhantomData,
        }
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        match self.inner.decode(src) {
            Ok(Some(frame)) => decode(&frame).map(Some),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(CodecError::TooLarge {
                size: peek_len(src),
                max: self.max,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

fn peek_len(src: &BytesMut) -> usize {
    src.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .unwrap_or(0)
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let bytes = encode(&item)?;
        if bytes.len() > self.max {
            return Err(CodecError::TooLarge {
                size: bytes.len(),
                max: self.max,
            });
        }
        self.inner
            .encode(Bytes::from(bytes), dst)
            .map_err(CodecError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Frame;

    #[test]
    fn oversize_length_prefix_is_refused_before_buffering() {
        let mut codec = FrameCodec::<Frame, Frame>::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::TooLarge { max: 1024, .. })
        ));
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        assert!(decode::<Frame>(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 9]).is_err());
        let mut ok = encode(&Frame::Error { reason: "x".into() }).unwrap();
        ok.push(0);
        assert!(matches!(decode::<Frame>(&ok), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn huge_declared_vector_length_does_not_allocate() {
        // Variant 1 (Sealed) followed by a vector length of 2^60.
        let mut bytes = vec![0, 0, 0, 1];
        bytes.extend_from_slice(&(1u64 << 60).to_be_bytes());
        assert!(decode::<Frame>(&bytes).is_err());
    }

    #[test]
    fn decode_error_keeps_bincode_error_as_source() {
        use std::error::Error as _;
        let e = decode::<Frame>(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 9]).unwrap_err();
        let source = e.source().expect("a source");
        assert!(source.is::<bincode::error::DecodeError>(), "{e:?}");
        assert_eq!(e.to_string(), format!("malformed frame: {source}"));
    }
}
