//! The gRPC codec of every generated client and server: prost's, except that a message
//! is encoded into a buffer reserved at its exact size first.
//!
//! tonic hands the encoder a `BytesMut` of 8 KiB; prost writes into it and the buffer
//! doubles as it fills, copying what it holds each time. For a list of a few hundred MiB
//! that is a transient of one and a half times the answer, and a buffer of up to twice
//! the answer kept until the last byte is sent (the frame is a slice of it). Reserved at
//! the message's encoded length, the answer is written once, into memory of its own size.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// prost's codec with exactly sized encode buffers.
#[derive(Debug, Clone)]
pub struct ExactCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for ExactCodec<T, U> {
    fn default() -> Self {
        ExactCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for ExactCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ExactEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ExactEncoder { _pd: PhantomData }
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}

/// Encodes `T` into a buffer reserved at its encoded length.
#[derive(Debug, Clone)]
pub struct ExactEncoder<T> {
    _pd: PhantomData<T>,
}

impl<T: Message> Encoder for ExactEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf).map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}
