//! Just enough HTTP and RFC 6455 to cut a byte stream into units: the HTTP head of the upgrade,
//! then whole WebSocket frames kept as their raw bytes (masked client frames stay masked), and
//! the device id of a `hello`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Largest frame the proxy buffers. Relay frames are far smaller; a larger length is treated
/// as broken framing rather than letting one peer make the proxy allocate without bound.
pub(crate) const MAX_FRAME: u64 = 16 << 20;

/// Longest HTTP head looked for; a stream without `\r\n\r\n` by then is passed through raw.
pub(crate) const MAX_HEAD: usize = 16 << 10;

/// One complete frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Header and payload exactly as received.
    pub(crate) bytes: Vec<u8>,
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    header_len: usize,
    mask: Option<[u8; 4]>,
}

impl Frame {
    /// Text, binary, continuation (and the reserved non-control opcodes).
    pub(crate) fn is_data(&self) -> bool {
        self.opcode & 0x8 == 0
    }

    pub(crate) fn is_close(&self) -> bool {
        self.opcode == 0x8
    }

    /// The payload, unmasked (a copy).
    pub(crate) fn payload(&self) -> Vec<u8> {
        let mut p = self.bytes[self.header_len..].to_vec();
        if let Some(key) = self.mask {
            p.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        }
        p
    }
}

/// Framing the proxy cannot follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("64-bit frame length with the most significant bit set")]
    BadLength,
    #[error("frame of {0} bytes exceeds the proxy's limit of {MAX_FRAME}")]
    TooLarge(u64),
}

/// Incremental parser: bytes in, whole frames out; holds at most one partial frame.
#[derive(Debug, Default)]
pub(crate) struct FrameParser {
    cur: Vec<u8>,
}

/// How many bytes of the current frame are needed: either to learn more of the header, or the
/// total frame length once the header is known.
enum Need {
    Header(usize),
    Total(usize),
}

fn need(cur: &[u8]) -> Result<Need, FrameError> {
    if cur.len() < 2 {
        return Ok(Need::Header(2));
    }
    let len7 = cur[1] & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if cur.len() < 2 + ext {
        return Ok(Need::Header(2 + ext));
    }
    let payload = match ext {
        0 => u64::from(len7),
        2 => u64::from(u16::from_be_bytes([cur[2], cur[3]])),
        _ => u64::from_be_bytes(cur[2..10].try_into().expect("8 bytes")),
    };
    if payload >> 63 == 1 {
        return Err(FrameError::BadLength);
    }
    if payload > MAX_FRAME {
        return Err(FrameError::TooLarge(payload));
    }
    let mask = if cur[1] & 0x80 != 0 { 4 } else { 0 };
    Ok(Need::Total(2 + ext + mask + payload as usize))
}

impl FrameParser {
    /// Takes bytes from the front of `input` into the current frame; returns it once complete.
    /// Call again while `input` is not empty.
    pub(crate) fn next(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        loop {
            let (target, total) = match need(&self.cur)? {
                Need::Header(n) => (n, false),
                Need::Total(n) => (n, true),
            };
            if total && self.cur.len() == target {
                return Ok(Some(self.finish()));
            }
            let take = (target - self.cur.len()).min(input.len());
            if take == 0 {
                return Ok(None);
            }
            self.cur.extend_from_slice(&input[..take]);
            *input = &input[take..];
        }
    }

    /// The bytes of an incomplete frame, if any (the stream ended in the middle of one).
    pub(crate) fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.cur)
    }

    fn finish(&mut self) -> Frame {
        let bytes = std::mem::take(&mut self.cur);
        let ext = match bytes[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = bytes[1] & 0x80 != 0;
        let mask = masked.then(|| bytes[2 + ext..6 + ext].try_into().expect("4 bytes"));
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        Frame { fin: bytes[0] & 0x80 != 0, opcode: bytes[0] & 0x0f, header_len, mask, bytes }
    }
}

/// What the start of a stream says about its HTTP head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// Could still be HTTP; need more bytes.
    Incomplete,
    /// An HTTP head of this many bytes (terminator included).
    Complete(usize),
    /// Not HTTP (or a head too long to be one we care about): pass through raw.
    NotHttp,
}

fn head_end(buf: &[u8]) -> Head {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Head::Complete(i + 4),
        None if buf.len() > MAX_HEAD => Head::NotHttp,
        None => Head::Incomplete,
    }
}

/// A request starts with a method token (upper-case letters).
pub(crate) fn request_head(buf: &[u8]) -> Head {
    match buf.first() {
        Some(b) if !b.is_ascii_uppercase() => Head::NotHttp,
        _ => head_end(buf),
    }
}

/// A response starts with `HTTP/`.
pub(crate) fn response_head(buf: &[u8]) -> Head {
    let n = buf.len().min(5);
    if buf[..n] != b"HTTP/"[..n] { Head::NotHttp } else { head_end(buf) }
}

fn header_lines(head: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let text = std::str::from_utf8(head).unwrap_or("");
    text.split("\r\n").skip(1).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim()))
}

/// `Upgrade: websocket` among the request's headers.
pub(crate) fn is_websocket_upgrade(head: &[u8]) -> bool {
    header_lines(head)
        .any(|(k, v)| k.eq_ignore_ascii_case("upgrade") && v.to_ascii_lowercase().contains("websocket"))
}

/// Status 101 with `Upgrade: websocket`.
pub(crate) fn is_websocket_accept(head: &[u8]) -> bool {
    let status = std::str::from_utf8(head).ok().and_then(|t| t.split(' ').nth(1));
    status == Some("101") && is_websocket_upgrade(head)
}

/// The `did` claim of the token of a `hello` frame (an unfragmented text frame). The token's
/// signature is not checked: the proxy only needs to know which device it is.
pub(crate) fn hello_device(frame: &Frame) -> Option<String> {
    if frame.opcode != 0x1 || !frame.fin {
        return None;
    }
    let hello: serde_json::Value = serde_json::from_slice(&frame.payload()).ok()?;
    if hello.get("type")?.as_str()? != "hello" {
        return None;
    }
    let claims = hello.get("token")?.as_str()?.split('.').nth(1)?;
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let json = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(claims).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    claims.get("did")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame with the given opcode and payload, masked with `mask` if given.
    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(m | n as u8),
            n if n <= 0xffff => {
                out.push(m | 126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        let key = mask.unwrap_or_default();
        if mask.is_some() {
            out.extend(key);
        }
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    fn parse_all(input: &[u8], chunk: usize) -> Vec<Frame> {
        let mut parser = FrameParser::default();
        let mut frames = Vec::new();
        for mut piece in input.chunks(chunk) {
            while let Some(f) = parser.next(&mut piece).unwrap() {
                frames.push(f);
            }
            assert!(piece.is_empty());
        }
        assert!(parser.take_partial().is_empty());
        frames
    }

    #[test]
    fn parses_7_16_and_64_bit_lengths_in_any_chunking() {
        let payloads = [vec![b'a'; 0], vec![b'b'; 125], vec![b'c'; 126], vec![b'd'; 70_000]];
        let mut stream = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            stream.extend(frame(0x2, p, (i % 2 == 0).then_some([1, 2, 3, 4])));
        }
        stream.extend(frame(0x9, b"ping", None));
        for chunk in [1, 3, 7, 4096, stream.len()] {
            let frames = parse_all(&stream, chunk);
            assert_eq!(frames.len(), 5);
            assert_eq!(frames.iter().flat_map(|f| f.bytes.clone()).collect::<Vec<_>>(), stream);
            for (f, p) in frames.iter().zip(&payloads) {
                assert_eq!(&f.payload(), p);
                assert!(f.is_data() && f.fin);
            }
            assert!(!frames[4].is_data());
        }
    }

    #[test]
    fn broken_lengths_are_errors_not_panics() {
        let mut parser = FrameParser::default();
        let mut bad: &[u8] = &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parser.next(&mut bad), Err(FrameError::BadLength));
        let mut parser = FrameParser::default();
        let mut big: &[u8] = &[0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0];
        assert!(matches!(parser.next(&mut big), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn http_heads_are_recognised() {
        let req = b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\nrest";
        assert_eq!(request_head(req), Head::Complete(req.len() - 4));
        assert!(is_websocket_upgrade(req));
        assert_eq!(request_head(b"GET / HT"), Head::Incomplete);
        assert_eq!(request_head(b"\x16\x03\x01"), Head::NotHttp);
        assert!(!is_websocket_upgrade(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";
        assert_eq!(response_head(resp), Head::Complete(resp.len()));
        assert!(is_websocket_accept(resp));
        assert!(!is_websocket_accept(b"HTTP/1.1 400 Bad Request\r\n\r\n"));
        assert_eq!(response_head(b"HTT"), Head::Incomplete);
        assert_eq!(response_head(b"SSH-2.0"), Head::NotHttp);
        assert_eq!(request_head(&vec![b'G'; MAX_HEAD + 1]), Head::NotHttp);
    }

    #[test]
    fn hello_device_reads_did_from_an_unsigned_token() {
        let claims = GeneralPurpose::new(&base64::alphabet::URL_SAFE, GeneralPurposeConfig::new())
            .encode(br#"{"sub":"u1","did":"desk-1"}"#);
        let hello = format!(r#"{{"type":"hello","protocol":"relay.v1","token":"e30.{claims}.sig"}}"#);
        let f = parse_all(&frame(0x1, hello.as_bytes(), Some([9, 8, 7, 6])), 5).remove(0);
        assert_eq!(hello_device(&f).as_deref(), Some("desk-1"));
        for junk in [&b"not json"[..], br#"{"type":"send"}"#, br#"{"type":"hello","token":"x"}"#] {
            let f = parse_all(&frame(0x1, junk, None), 100).remove(0);
            assert_eq!(hello_device(&f), None);
        }
    }
}
