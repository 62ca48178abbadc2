//! Accepting the `:authority` etcd 3.4's etcdctl sends when an endpoint is a URL.
//!
//! For `endpoint status`, `endpoint hashkv` and `defrag` etcdctl 3.4 dials each
//! endpoint on its own, with the gRPC target `passthrough:///<endpoint>`; given
//! `--endpoints http://host:port`, every request on that connection carries the
//! HTTP/2 `:authority` `http://host:port`. That is not an authority (RFC 3986
//! §3.2), and the h2 crate resets such a stream with PROTOCOL_ERROR, where etcd's
//! Go server never looks at the value.
//!
//! [`LenientAuthority`] sits under hyper on a client connection and mends such a
//! value before h2 reads it: `scheme://host:port` becomes `scheme--@host:port`,
//! the same host and port with the scheme as user information, and the same
//! length. The length matters: both ends keep an HPACK dynamic table whose size
//! counts the octets of each decoded value (RFC 7541 §4.1), so a value of the
//! same length keeps later indexed references (the next requests name the
//! authority by index) pointing at the same entries on both sides. The mended
//! value is written as a plain literal and the HEADERS frame's length adjusted.
//!
//! Everything else passes unchanged: other header fields, other frames, a
//! header block split over CONTINUATION frames, and any connection that does not
//! open with the HTTP/2 client preface (HTTP/1.1 on the same port).

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// Frame: | length: u24 BE | type: u8 | flags: u8 | stream: u32 BE | payload: length bytes |
const FRAME_HEADER: usize = 9;
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// HEADERS frames up to HTTP/2's default SETTINGS_MAX_FRAME_SIZE are looked
/// at (a mended one must stay within it); larger ones pass untouched.
const MAX_FRAME: usize = 16_384;
/// HPACK static table index of `:authority` (RFC 7541 Appendix A).
const AUTHORITY_INDEX: u64 = 1;
/// Bytes asked of the inner stream per read.
const READ_CHUNK: usize = 16 << 10;

/// Where the reader is in the byte stream.
enum Mode {
    /// Matching the HTTP/2 client preface.
    Preface,
    /// Between frames, or `payload_left` bytes into a frame passed as is.
    Frames { payload_left: usize },
    /// Not HTTP/2, or the stream ended: bytes pass untouched.
    Plain,
}

/// A server-side stream whose HTTP/2 request headers get a URL-shaped
/// `:authority` mended (see the module docs). Writes pass straight through.
pub struct LenientAuthority<S> {
    inner: S,
    /// Bytes read from `inner`: `buf[..out]` handed on, `buf[out..scanned]`
    /// checked and ready to hand on, `buf[scanned..]` waiting for the rest of
    /// a frame.
    buf: Vec<u8>,
    out: usize,
    scanned: usize,
    mode: Mode,
    eof: bool,
}

impl<S> LenientAuthority<S> {
    pub fn new(inner: S) -> Self {
        LenientAuthority {
            inner,
            buf: Vec::new(),
            out: 0,
            scanned: 0,
            mode: Mode::Preface,
            eof: false,
        }
    }

    /// Advances `scanned` over every byte that may be handed on, mending
    /// complete HEADERS frames on the way.
    fn scan(&mut self) {
        loop {
            let avail = self.buf.len() - self.scanned;
            match self.mode {
                Mode::Plain => {
                    self.scanned = self.buf.len();
                    return;
                }
                Mode::Preface => {
                    let n = avail.min(PREFACE.len());
                    if self.buf[self.scanned..self.scanned + n] != PREFACE[..n] {
                        self.mode = Mode::Plain;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    self.scanned += n;
                    self.mode = Mode::Frames { payload_left: 0 };
                }
                Mode::Frames { payload_left } if payload_left > 0 => {
                    if avail == 0 {
                        return;
                    }
                    let n = avail.min(payload_left);
                    self.scanned += n;
                    self.mode = Mode::Frames { payload_left: payload_left - n };
                }
                Mode::Frames { .. } => {
                    if avail < FRAME_HEADER {
                        return;
                    }
                    let h = &self.buf[self.scanned..self.scanned + FRAME_HEADER];
                    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    if kind == HEADERS && flags & END_HEADERS != 0 && len <= MAX_FRAME {
                        if avail < FRAME_HEADER + len {
                            return;
                        }
                        let len = mend_headers_frame(&mut self.buf, self.scanned, len, flags);
                        self.scanned += FRAME_HEADER + len;
                    } else {
                        self.scanned += FRAME_HEADER;
                        self.mode = Mode::Frames { payload_left: len };
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        rb: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out < this.scanned {
                let n = (this.scanned - this.out).min(rb.remaining());
                rb.put_slice(&this.buf[this.out..this.out + n]);
                this.out += n;
                if this.out == this.buf.len() {
                    this.buf.clear();
                    this.out = 0;
                    this.scanned = 0;
                    if this.buf.capacity() > 4 * READ_CHUNK {
                        this.buf.shrink_to(READ_CHUNK);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.out > 0 {
                this.buf.drain(..this.out);
                this.scanned -= this.out;
                this.out = 0;
            }
            let start = this.buf.len();
            // Read into the spare capacity as it is: zeroing 16 KiB before every
            // read showed in profiles of small requests.
            this.buf.reserve(READ_CHUNK);
            let mut chunk = ReadBuf::uninit(&mut this.buf.spare_capacity_mut()[..READ_CHUNK]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut chunk);
            let n = chunk.filled().len();
            // SAFETY: `ReadBuf` guarantees its first `filled().len()` bytes were
            // initialized (written by the inner reader), and they lie in the
            // vector's capacity right after its `start` initialized bytes.
            unsafe { this.buf.set_len(start + n) };
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if n == 0 => {
                    // The peer is done: an unfinished frame goes on as it
                    // is, for h2 to report.
                    this.eof = true;
                    this.mode = Mode::Plain;
                    this.scanned = this.buf.len();
                }
                Poll::Ready(Ok(())) => this.scan(),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Mends the `:authority` of the complete HEADERS frame at `buf[at..]` (its
/// payload `len` bytes) in place, if it needs it; returns the frame's payload
/// length afterwards.
fn mend_headers_frame(buf: &mut Vec<u8>, at: usize, len: usize, flags: u8) -> usize {
    let payload = at + FRAME_HEADER;
    let mut block = 0..len;
    if flags & PADDED != 0 {
        let Some(&pad) = buf.get(payload) else { return len };
        if usize::from(pad) + 1 > len {
            return len;
        }
        block = 1..len - usize::from(pad);
    }
    if flags & PRIORITY != 0 {
        block.start += 5;
        if block.start > block.end {
            return len;
        }
    }
    let base = payload + block.start;
    let Some((span, literal)) = authority_fix(&buf[base..payload + block.end]) else {
        return len;
    };
    let new_len = len - span.len() + literal.len();
    if new_len > MAX_FRAME {
        return len;
    }
    buf.splice(base + span.start..base + span.end, literal);
    buf[at..at + 3].copy_from_slice(&(new_len as u32).to_be_bytes()[1..]);
    new_len
}

/// Finds a malformed `:authority` in an HPACK header block: the span of its
/// value's string literal and the literal to put there instead.
fn authority_fix(block: &[u8]) -> Option<(Range<usize>, Vec<u8>)> {
    let mut i = 0;
    while i < block.len() {
        let first = block[i];
        if first & 0x80 != 0 {
            // Indexed field: the table entry was checked when it was added.
            i = integer(block, i, 7)?.1;
            continue;
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            i = integer(block, i, 5)?.1;
            continue;
        }
        // A literal: with incremental indexing (01), without (0000) or never
        // indexed (0001); its name by index or as a literal.
        let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
        let (name_index, mut at) = integer(block, i, prefix)?;
        let is_authority = if name_index == 0 {
            let (huffman, name) = string(block, at)?;
            at = name.end;
            decoded(huffman, &block[name])? == b":authority"
        } else {
            name_index == AUTHORITY_INDEX
        };
        let (huffman, value) = string(block, at)?;
        let end = value.end;
        if is_authority {
            let mended = mend_authority(&decoded(huffman, &block[value])?)?;
            return Some((at..end, plain_literal(&mended)));
        }
        i = end;
    }
    None
}

/// `scheme://host:port` → `scheme--@host:port` when the value is not an
/// authority and that one is; None to leave the value alone.
fn mend_authority(value: &[u8]) -> Option<Vec<u8>> {
    if axum::http::uri::Authority::try_from(value).is_ok() {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = text.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.contains('@') {
        return None;
    }
    let mended = format!("{scheme}--@{rest}");
    axum::http::uri::Authority::try_from(mended.as_str()).ok()?;
    Some(mended.into_bytes())
}

/// An HPACK integer with an `n`-bit prefix starting at `block[at]`: its value
/// and the index after it (RFC 7541 §5.1).
fn integer(block: &[u8], at: usize, n: u32) -> Option<(u64, usize)> {
    let max = (1u64 << n) - 1;
    let mut value = u64::from(*block.get(at)?) & max;
    let mut at = at + 1;
    if value < max {
        return Some((value, at));
    }
    let mut shift = 0;
    loop {
        let b = *block.get(at)?;
        at += 1;
        value += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, at));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// An HPACK string literal starting at `block[at]`: whether it is Huffman
/// coded and the span of its octets (RFC 7541 §5.2).
fn string(block: &[u8], at: usize) -> Option<(bool, Range<usize>)> {
    let huffman = *block.get(at)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= block.len()).then_some((huffman, start..end))
}

fn decoded(huffman: bool, octets: &[u8]) -> Option<Vec<u8>> {
    if !huffman {
        return Some(octets.to_vec());
    }
    let mut out = Vec::with_capacity(octets.len() * 8 / 5);
    httlib_huffman::decode(octets, &mut out, httlib_huffman::DecoderSpeed::FourBits).ok()?;
    Some(out)
}

/// `value` as an HPACK string literal without Huffman coding.
fn plain_literal(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    let mut len = value.len();
    if len < 0x7f {
        out.push(len as u8);
    } else {
        out.push(0x7f);
        len -= 0x7f;
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::Response;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn a_url_becomes_an_authority_of_the_same_length_and_host() {
        let mended = mend_authority(b"http://127.0.0.1:2379").unwrap();
        assert_eq!(mended, b"http--@127.0.0.1:2379");
        assert_eq!(mended.len(), "http://127.0.0.1:2379".len());
        let a = axum::http::uri::Authority::try_from(mended.as_slice()).unwrap();
        assert_eq!((a.host(), a.port_u16()), ("127.0.0.1", Some(2379)));
        let a = axum::http::uri::Authority::try_from(
            mend_authority(b"https://[::1]:2379").unwrap().as_slice(),
        )
        .unwrap();
        assert_eq!((a.host(), a.port_u16()), ("[::1]", Some(2379)));
        // Values that are authorities already, or that cannot be mended.
        for v in
            [&b"127.0.0.1:2379"[..], b"localhost", b"http://h:1/path", b"no scheme/", b"://h:1"]
        {
            assert_eq!(mend_authority(v), None, "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn integers_and_literals_round_trip() {
        for len in [0usize, 1, 126, 127, 128, 300, 20_000] {
            let value = vec![b'a'; len];
            let lit = plain_literal(&value);
            let (huffman, span) = string(&lit, 0).unwrap();
            assert!(!huffman);
            assert_eq!(span, lit.len() - len..lit.len(), "length {len}");
        }
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(integer(&[0x1f, 0x9a, 0x0a], 0, 5), Some((1337, 3)));
        assert_eq!(integer(&[0x1f, 0x9a], 0, 5), None, "truncated");
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// `GET /` on `stream` with the `:authority` literal (indexed name 1,
    /// incremental indexing), Huffman coded or not.
    fn get_with_authority(stream: u32, authority: &[u8], huffman: bool) -> Vec<u8> {
        // :method GET (2), :scheme http (6), :path / (4), all indexed.
        let mut block = vec![0x82, 0x86, 0x84, 0x41];
        if huffman {
            let mut coded = Vec::new();
            httlib_huffman::encode(authority, &mut coded).unwrap();
            let mut lit = plain_literal(&coded);
            lit[0] |= 0x80;
            block.extend_from_slice(&lit);
        } else {
            block.extend_from_slice(&plain_literal(authority));
        }
        frame(HEADERS, END_HEADERS | 0x1, stream, &block)
    }

    /// Serves `GET` with the request's authority host and port as the body, on
    /// a hyper HTTP/2 connection over [`LenientAuthority`]; sends `input` and
    /// returns every DATA payload the server sent, by stream.
    async fn exchange(input: Vec<u8>, streams: usize) -> Vec<(u32, String)> {
        let (client, server) = tokio::io::duplex(1 << 16);
        let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| {
            let a = req.uri().authority().cloned();
            async move {
                let body = match a {
                    Some(a) => format!("{}:{}", a.host(), a.port_u16().unwrap_or(0)),
                    None => "none".to_string(),
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            }
        });
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(LenientAuthority::new(server)), service);
        let served = tokio::spawn(conn);
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(&input).await.unwrap();
        let mut got = Vec::new();
        let mut pending = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut chunk = vec![0u8; 1 << 16];
        while got.len() < streams {
            let n = tokio::time::timeout_at(deadline, rd.read(&mut chunk))
                .await
                .expect("answers within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed early; answers so far: {got:?}");
            pending.extend_from_slice(&chunk[..n]);
            while pending.len() >= FRAME_HEADER {
                let len = usize::from(pending[0]) << 16
                    | usize::from(pending[1]) << 8
                    | usize::from(pending[2]);
                if pending.len() < FRAME_HEADER + len {
                    break;
                }
                let kind = pending[3];
                let stream = u32::from_be_bytes(pending[5..9].try_into().unwrap()) & 0x7fff_ffff;
                if kind == 0x3 {
                    panic!("stream {stream} was reset: {:?}", &pending[9..9 + len]);
                }
                if kind == 0x0 && len > 0 {
                    let body = String::from_utf8(pending[9..9 + len].to_vec()).unwrap();
                    got.push((stream, body));
                }
                pending.drain(..FRAME_HEADER + len);
            }
        }
        served.abort();
        got
    }

    #[tokio::test]
    async fn a_url_authority_is_served_with_its_host_and_port() {
        for huffman in [false, true] {
            let mut input = PREFACE.to_vec();
            input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
            input.extend(get_with_authority(1, b"http://127.0.0.1:2379", huffman));
            // The next request names the authority by its dynamic table
            // index (62): the entry h2 holds must be the mended one.
            input.extend(frame(HEADERS, END_HEADERS | 0x1, 3, &[0x82, 0x86, 0x84, 0xbe]));
            input.extend(get_with_authority(5, b"127.0.0.1:2380", huffman));
            let got = exchange(input, 3).await;
            assert_eq!(
                got,
                vec![
                    (1, "127.0.0.1:2379".to_string()),
                    (3, "127.0.0.1:2379".to_string()),
                    (5, "127.0.0.1:2380".to_string()),
                ],
                "huffman {huffman}"
            );
        }
    }

    #[tokio::test]
    async fn bytes_arriving_one_at_a_time_are_scanned_across_reads() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        input.extend(get_with_authority(1, b"https://127.0.0.1:2379", true));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut lenient = LenientAuthority::new(server);
        let writer = tokio::spawn(async move {
            for b in input {
                client.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let mut seen = Vec::new();
        let mut one = [0u8; 1];
        let expected = PREFACE.len() + FRAME_HEADER + FRAME_HEADER + 4 + 1 + 22;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < expected {
            let n = tokio::time::timeout_at(deadline, lenient.read(&mut one))
                .await
                .unwrap_or_else(|_| panic!("{expected} bytes within 10 s; got {seen:?}"))
                .unwrap();
            assert_eq!(n, 1);
            seen.push(one[0]);
        }
        drop(writer.await.unwrap());
        let headers = &seen[PREFACE.len() + FRAME_HEADER..];
        assert_eq!(headers[..3], [0, 0, 4 + 1 + 22], "frame length adjusted");
        assert_eq!(&headers[FRAME_HEADER + 4..], b"\x16https--@127.0.0.1:2379");
    }

    #[tokio::test]
    async fn http1_passes_untouched() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut lenient = LenientAuthority::new(server);
        let request = b"GET / HTTP/1.1\r\nHost: http://x\r\n\r\n";
        client.write_all(request).await.unwrap();
        drop(client);
        let mut seen = Vec::new();
        lenient.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, request);
    }
}
