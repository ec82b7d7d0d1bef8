//! Helpers shared by the fuzz targets: cutting one input into 1-3 pieces at fuzzer-chosen
//! points, so that the incremental ("need more bytes") paths of the parsers are exercised.
//!
//! Owns no parsing of ASF's own formats and must not panic on any input.

/// Bytes at the front of a stream target's input that choose how it is cut (see [`split`]).
pub const CONTROL_LEN: usize = 3;

/// Splits `data` into a stream and its pieces. The first [`CONTROL_LEN`] bytes are control:
/// byte 0 picks 1, 2 or 3 pieces (`b % 3 + 1`), bytes 1 and 2 pick the cut points (scaled to
/// the stream length). The rest is the stream; the pieces concatenate to exactly the stream.
/// Inputs shorter than the control bytes give an empty stream in one piece.
pub fn split(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((control, stream)) = data.split_at_checked(CONTROL_LEN) else {
        return (&[], vec![&[]]);
    };
    let pieces = usize::from(control[0] % 3) + 1;
    let len = stream.len();
    let mut cuts: Vec<usize> = control[1..pieces]
        .iter()
        .map(|&b| usize::from(b) * len / 255)
        .collect();
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(pieces);
    let mut start = 0;
    for cut in cuts {
        out.push(&stream[start..cut]);
        start = cut;
    }
    out.push(&stream[start..]);
    (stream, out)
}
