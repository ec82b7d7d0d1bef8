//! Reading: bytes from a socket, through the WebSocket frames, to the Engine.IO /
//! Socket.IO steps and the verified end of each stream.

use std::io::{self, Read};
use std::time::Instant;

use super::wire::{classify, header_len, parse_header, text_frame, TextKind};
use super::{Clients, Finished, Kind, State, NAMESPACE};

impl Clients {
    pub(super) fn drain(&mut self, idx: usize, buf: &mut [u8]) {
        loop {
            let r = self.conns[idx].sock.read(buf);
            match r {
                Ok(0) => {
                    self.fail(idx, "closed by the server".into());
                    return;
                }
                Ok(n) => {
                    if let Err(e) = self.feed(idx, &buf[..n]) {
                        self.fail(idx, e);
                        return;
                    }
                    if let Err(e) = self.conns[idx].flush() {
                        self.fail(idx, format!("write: {e}"));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(idx, format!("read: {e}"));
                    return;
                }
            }
        }
    }

    fn feed(&mut self, idx: usize, data: &[u8]) -> Result<(), String> {
        let now = Instant::now;
        let c = &mut self.conns[idx];
        if c.kind == Kind::Raw {
            if c.state != State::Streaming {
                return Err("unexpected bytes".into());
            }
            let want = (c.expect.len - c.hasher.len()) as usize;
            if data.len() > want {
                return Err("more bytes than the file".into());
            }
            if c.t_first.is_none() {
                c.t_first = Some(now());
            }
            c.hasher.update(data);
            let done = c.hasher.len() == c.expect.len;
            self.bytes += data.len() as u64;
            if done {
                self.end_of_stream(idx)?;
            }
            return Ok(());
        }
        let mut data = data;
        if c.state == State::Upgrading {
            c.http.extend_from_slice(data);
            let Some(end) = c.http.windows(4).position(|w| w == b"\r\n\r\n") else {
                if c.http.len() > 8192 {
                    return Err("upgrade answer too long".into());
                }
                return Ok(());
            };
            if !c.http.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&c.http[..end.min(80)]).into_owned();
                return Err(format!("upgrade refused: {line}"));
            }
            let consumed = end + 4 - (c.http.len() - data.len());
            data = &data[consumed..];
            c.http = Vec::new();
            c.state = State::WaitOpen;
        }
        let mut audio = 0u64;
        let r = self.frames(idx, data, &mut audio);
        self.bytes += audio;
        r
    }

    fn frames(&mut self, idx: usize, mut data: &[u8], audio: &mut u64) -> Result<(), String> {
        let now = Instant::now;
        while !data.is_empty() {
            let c = &mut self.conns[idx];
            if !c.in_payload {
                if c.hdr_len < 2 {
                    let take = (2 - c.hdr_len).min(data.len());
                    c.hdr[c.hdr_len..c.hdr_len + take].copy_from_slice(&data[..take]);
                    c.hdr_len += take;
                    data = &data[take..];
                    if c.hdr_len < 2 {
                        return Ok(());
                    }
                }
                let need = header_len(c.hdr[1]);
                if c.hdr_len < need {
                    let take = (need - c.hdr_len).min(data.len());
                    c.hdr[c.hdr_len..c.hdr_len + take].copy_from_slice(&data[..take]);
                    c.hdr_len += take;
                    data = &data[take..];
                    if c.hdr_len < need {
                        return Ok(());
                    }
                }
                if c.hdr[1] & 0x80 != 0 {
                    return Err("server frame is masked".into());
                }
                let (op, len) = parse_header(&c.hdr[..need]);
                c.hdr_len = 0;
                if op != 0 {
                    c.opcode = op;
                }
                c.remaining = len;
                c.in_payload = true;
                if c.opcode == 1 && len > 1 << 20 {
                    return Err("text frame too long".into());
                }
                if len == 0 {
                    c.in_payload = false;
                    self.frame_end(idx)?;
                }
                continue;
            }
            let take = (c.remaining.min(data.len() as u64)) as usize;
            let part = &data[..take];
            data = &data[take..];
            c.remaining -= take as u64;
            match c.opcode {
                2 => {
                    if c.state != State::Streaming {
                        return Err("audio outside a stream".into());
                    }
                    if c.t_first.is_none() {
                        c.t_first = Some(now());
                    }
                    c.hasher.update(part);
                    *audio += take as u64;
                }
                1 => c.text.extend_from_slice(part),
                8 => return Err("close frame from the server".into()),
                _ => {}
            }
            if c.remaining == 0 {
                c.in_payload = false;
                self.frame_end(idx)?;
            }
        }
        Ok(())
    }

    fn frame_end(&mut self, idx: usize) -> Result<(), String> {
        let c = &mut self.conns[idx];
        if c.opcode != 1 {
            return Ok(());
        }
        let text = std::mem::take(&mut c.text);
        let kind = classify(&text);
        let r = match kind {
            TextKind::Open => {
                let f = text_frame(format!("40{NAMESPACE},").as_bytes());
                c.queue(&f);
                c.state = State::WaitNamespace;
                Ok(())
            }
            TextKind::Ping => {
                c.queue(&text_frame(b"3"));
                Ok(())
            }
            TextKind::NamespaceOk => {
                if c.state == State::WaitNamespace {
                    c.state = State::Ready;
                    c.t_ready = Some(Instant::now());
                    self.ready += 1;
                }
                Ok(())
            }
            TextKind::EndOfStream => self.end_of_stream(idx),
            TextKind::Error => Err(format!(
                "server said: {}",
                String::from_utf8_lossy(&text[..text.len().min(160)])
            )),
            TextKind::Other => Ok(()),
        };
        let c = &mut self.conns[idx];
        c.text = text;
        c.text.clear();
        r
    }

    fn end_of_stream(&mut self, idx: usize) -> Result<(), String> {
        let now = Instant::now();
        let c = &mut self.conns[idx];
        if c.state != State::Streaming {
            return Err("end of a stream never joined".into());
        }
        c.check()?;
        let join = c.t_join.unwrap_or(now);
        self.finished.push(Finished {
            first: c.t_first.unwrap_or(now).saturating_duration_since(join),
            total: now.saturating_duration_since(join),
        });
        c.completed += 1;
        if c.reps_left > 0 {
            c.reps_left -= 1;
            c.request(now);
        } else {
            c.state = State::Ready;
        }
        Ok(())
    }
}
