//! What a listener hands a transport that sends bytes (see `Listener::poll_wire`): bytes
//! for the wire as they are, or a chunk the transport may send straight from the session's
//! file (zero-copy, e.g. `sendfile(2)`), described here and never read here.
//!
//! A chunk is described as a file range only for the single listener of a session (see
//! [`Framing::files`](super::Framing)): listeners of a shared session share its framed
//! blocks instead. (Sending from the file to any listener whose block no other listener
//! sat in cost 3.2-3.6x the CPU of the shared blocks on a file with 1,000 staggered
//! listeners: BENCHMARKS.md, "Distinct files with sendfile".) The description carries the chunk's bytes as the
//! session read them too, so a transport that cannot send from the file (or finds it shorter
//! than when the block was read) sends exactly what the Bytes path would have sent.

use bytes::Bytes;

/// One piece of what `Listener::poll_wire` hands out.
#[derive(Debug, Clone)]
pub enum WirePiece {
    /// Bytes to send as they are: a chunk's prefix, a chunk, or a slice of a wire block.
    Bytes(Bytes),
    /// A chunk behind its prefix, which the transport may send from the file.
    File(FileChunk),
}

/// A chunk of a session's file with the bytes that go before it.
#[derive(Debug, Clone)]
pub struct FileChunk {
    /// The chunk's prefix (its Socket.IO header and frame headers), sent first.
    pub prefix: Bytes,
    /// Offset of the chunk in the session's file.
    pub at: u64,
    /// The chunk as the session read it into its block: `chunk.len()` bytes from `at`.
    pub chunk: Bytes,
}

/// Where `Listener::poll_wire` puts its pieces: a list of plain bytes (every file chunk
/// becomes its prefix and its bytes) or a list of [`WirePiece`]s.
pub trait WireOut {
    /// Appends bytes to send as they are.
    fn push_bytes(&mut self, bytes: Bytes);
    /// Appends a chunk that may be sent from the file.
    fn push_file(&mut self, chunk: FileChunk);
}

impl WireOut for Vec<Bytes> {
    fn push_bytes(&mut self, bytes: Bytes) {
        self.push(bytes);
    }

    fn push_file(&mut self, chunk: FileChunk) {
        self.push(chunk.prefix);
        self.push(chunk.chunk);
    }
}

impl WireOut for Vec<WirePiece> {
    fn push_bytes(&mut self, bytes: Bytes) {
        self.push(WirePiece::Bytes(bytes));
    }

    fn push_file(&mut self, chunk: FileChunk) {
        self.push(WirePiece::File(chunk));
    }
}
