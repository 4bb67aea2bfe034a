//! One whole Thrift message read off an unframed connection, checked before
//! any decoder sees it.
//!
//! The generated decoders trust the lengths on the wire: a string length is
//! allocated before it is read, a list count becomes `Vec::with_capacity`,
//! and text is taken as UTF-8 unchecked. So each message is first scanned
//! here: every length must fit in the bytes the message really has (at most
//! [`MAX_MESSAGE`]), containers hold at most [`MAX_ELEMENTS`], nesting stays
//! under [`MAX_DEPTH`], and every string is UTF-8. Only a message that passes
//! is decoded, from memory, so a decoding error no longer leaves the stream
//! in the middle of a message.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest message accepted.
pub(super) const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Most elements of one list, set or map.
const MAX_ELEMENTS: usize = 1 << 20;
/// Deepest nesting of structs and containers.
const MAX_DEPTH: usize = 64;

/// Why a message was refused (the connection is closed after it).
#[derive(Debug, thiserror::Error)]
pub(super) enum MessageError {
    #[error("connection closed")]
    Closed,
    #[error("reading the connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed Thrift message: {0}")]
    Malformed(&'static str),
}

enum Stop {
    NeedMore,
    Bad(&'static str),
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Stop> {
        let end = self.at.checked_add(n).ok_or(Stop::Bad("length overflow"))?;
        if end > MAX_MESSAGE {
            return Err(Stop::Bad("message too large"));
        }
        let bytes = self.buf.get(self.at..end).ok_or(Stop::NeedMore)?;
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, Stop> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self, max: usize) -> Result<usize, Stop> {
        usize::try_from(self.i32()?)
            .ok()
            .filter(|n| *n <= max)
            .ok_or(Stop::Bad("length out of range"))
    }

    fn string(&mut self) -> Result<(), Stop> {
        let n = self.len(MAX_MESSAGE)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Stop::Bad("text is not UTF-8"))?;
        Ok(())
    }

    /// Skips one value of Thrift type `t`, checking it.
    fn value(&mut self, t: u8, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad("nested too deep"));
        }
        match t {
            2 | 3 => self.take(1).map(drop),  // bool, byte
            6 => self.take(2).map(drop),      // i16
            8 => self.take(4).map(drop),      // i32
            4 | 10 => self.take(8).map(drop), // double, i64
            16 => self.take(16).map(drop),    // uuid
            11 => self.string(),              // string / binary
            12 => loop {
                // struct: fields until STOP
                let ft = self.u8()?;
                if ft == 0 {
                    return Ok(());
                }
                self.take(2)?;
                self.value(ft, depth + 1)?;
            },
            13 => {
                // map
                let (kt, vt) = (self.u8()?, self.u8()?);
                let n = self.len(MAX_ELEMENTS)?;
                for _ in 0..n {
                    self.value(kt, depth + 1)?;
                    self.value(vt, depth + 1)?;
                }
                Ok(())
            }
            14 | 15 => {
                // set, list
                let et = self.u8()?;
                let n = self.len(MAX_ELEMENTS)?;
                for _ in 0..n {
                    self.value(et, depth + 1)?;
                }
                Ok(())
            }
            _ => Err(Stop::Bad("unknown field type")),
        }
    }
}

/// The length of the whole message at the start of `buf`, if it is all
/// there.
fn scan(buf: &[u8]) -> Result<usize, Stop> {
    let mut c = Cursor { buf, at: 0 };
    if c.i32()? >= 0 {
        return Err(Stop::Bad("not the strict binary protocol (or a framed transport)"));
    }
    let name = c.len(256)?;
    std::str::from_utf8(c.take(name)?).map_err(|_| Stop::Bad("method name is not UTF-8"))?;
    c.i32()?; // sequence id
    c.value(12, 0)?;
    Ok(c.at)
}

/// Reads the next whole, checked message into `buf` and returns its bytes.
pub(super) async fn read<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> Result<BytesMut, MessageError> {
    loop {
        if !buf.is_empty() {
            match scan(buf) {
                Ok(n) => return Ok(buf.split_to(n)),
                Err(Stop::Bad(why)) => return Err(MessageError::Malformed(why)),
                Err(Stop::NeedMore) => {}
            }
        }
        buf.reserve(64 * 1024);
        if reader.read_buf(buf).await? == 0 {
            return Err(if buf.has_remaining() {
                MessageError::Malformed("connection closed inside a message")
            } else {
                MessageError::Closed
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &[u8]) -> Vec<u8> {
        let mut m = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 3, b'f', b'o', b'o', 0, 0, 0, 7];
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn whole_messages_are_read_one_at_a_time() {
        // struct { 1: string "ab" } STOP, twice back to back
        let one = message(&[11, 0, 1, 0, 0, 0, 2, b'a', b'b', 0]);
        let mut wire = one.clone();
        wire.extend_from_slice(&one);
        let (mut reader, mut buf) = (&wire[..], BytesMut::new());
        assert_eq!(&read(&mut reader, &mut buf).await.unwrap()[..], &one[..]);
        assert_eq!(&read(&mut reader, &mut buf).await.unwrap()[..], &one[..]);
        assert!(matches!(read(&mut reader, &mut buf).await, Err(MessageError::Closed)));
    }

    #[tokio::test]
    async fn hostile_lengths_are_refused_before_any_allocation() {
        for (body, why) in [
            (vec![15, 0, 1, 12, 0x7f, 0xff, 0xff, 0xff], "length out of range"),
            (vec![11, 0, 1, 0xff, 0xff, 0xff, 0xff], "length out of range"),
            (vec![11, 0, 1, 0, 0, 0, 2, 0xff, 0xfe, 0], "not UTF-8"),
            (vec![99, 0, 1, 0], "unknown field type"),
        ] {
            let wire = message(&body);
            let err = read(&mut &wire[..], &mut BytesMut::new())
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
        }
        // A list of a million lists, nested: refused by depth, not by memory.
        let mut deep = vec![15, 0, 1];
        for _ in 0..100 {
            deep.extend_from_slice(&[15, 0, 0, 0, 1]);
        }
        let wire = message(&deep);
        let err = read(&mut &wire[..], &mut BytesMut::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested too deep"), "{err}");
        // A message cut short by the peer.
        let cut = message(&[11, 0, 1, 0, 0, 0, 9, b'a']);
        let err = read(&mut &cut[..], &mut BytesMut::new()).await.unwrap_err().to_string();
        assert!(err.contains("inside a message"), "{err}");
    }
}
