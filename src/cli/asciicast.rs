//! A session recording in asciicast v2 (<https://docs.asciinema.org/manual/asciicast/v2/>): a
//! JSON header line, then one `[seconds, code, text]` line per event ("o" output, "i" input,
//! "r" resize). Bytes are decoded as UTF-8 across reads, so a character split between two reads
//! is kept whole.

use std::time::Instant;

use serde_json::json;

pub struct Recorder {
    start: Instant,
    buf: Vec<u8>,
    carry_out: Vec<u8>,
    carry_in: Vec<u8>,
    record_input: bool,
}

/// What the header says about the terminal.
pub struct Header<'a> {
    pub width: u16,
    pub height: u16,
    pub timestamp: i64,
    pub title: &'a str,
    pub term: Option<&'a str>,
    pub shell: Option<&'a str>,
}

/// Decodes what can be decoded of `carry` + `bytes`, keeping an incomplete last character.
fn decode(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    carry.extend_from_slice(bytes);
    let keep = match std::str::from_utf8(carry) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => carry.len() - e.valid_up_to(),
        Err(_) => 0,
    };
    let text = String::from_utf8_lossy(&carry[..carry.len() - keep]).into_owned();
    carry.drain(..carry.len() - keep);
    text
}

impl Recorder {
    pub fn new(h: &Header<'_>, record_input: bool) -> Self {
        let header = json!({
            "version": 2,
            "width": h.width,
            "height": h.height,
            "timestamp": h.timestamp,
            "title": h.title,
            "env": { "TERM": h.term, "SHELL": h.shell },
        });
        let mut buf = header.to_string().into_bytes();
        buf.push(b'\n');
        Self {
            start: Instant::now(),
            buf,
            carry_out: Vec::new(),
            carry_in: Vec::new(),
            record_input,
        }
    }

    fn event(&mut self, code: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        // Microseconds, as asciinema writes them.
        let t = (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e6;
        let line = json!([t, code, text]).to_string();
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    pub fn output(&mut self, bytes: &[u8]) {
        let text = decode(&mut self.carry_out, bytes);
        self.event("o", &text);
    }

    /// Kept only when the profile sets `record_input = true`.
    pub fn input(&mut self, bytes: &[u8]) {
        if self.record_input {
            let text = decode(&mut self.carry_in, bytes);
            self.event("i", &text);
        }
    }

    pub fn resize(&mut self, width: u16, height: u16) {
        self.event("r", &format!("{width}x{height}"));
    }

    /// A line elevate itself adds (why the session ended), as output.
    pub fn note(&mut self, text: &str) {
        self.event("o", text);
    }

    /// What was recorded since the last call, for upload.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// At most `n` bytes of what was recorded since the last call, oldest first.
    pub fn take_at_most(&mut self, n: usize) -> Vec<u8> {
        if self.buf.len() <= n {
            return self.take();
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Puts back what an upload could not send, ahead of what came since.
    pub fn put_back(&mut self, mut unsent: Vec<u8>) {
        unsent.append(&mut self.buf);
        self.buf = unsent;
    }

    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &mut Recorder) -> Vec<serde_json::Value> {
        String::from_utf8(r.take())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_recording_is_a_header_and_timed_events_with_characters_kept_whole() {
        let h = Header {
            width: 120,
            height: 40,
            timestamp: 1_700_000_000,
            title: "deploy@web-1",
            term: Some("xterm"),
            shell: Some("/bin/bash"),
        };
        let mut r = Recorder::new(&h, false);
        let euro = "€".as_bytes();
        r.output(b"hello ");
        r.output(&euro[..2]);
        r.output(&euro[2..]);
        r.input(b"secret typed");
        r.resize(80, 24);
        let got = lines(&mut r);
        assert_eq!(got[0]["version"], 2);
        assert_eq!(got[0]["width"], 120);
        assert_eq!(got[0]["env"]["SHELL"], "/bin/bash");
        let events: Vec<(String, String)> = got[1..]
            .iter()
            .map(|e| (e[1].as_str().unwrap().into(), e[2].as_str().unwrap().into()))
            .collect();
        assert_eq!(
            events,
            [("o", "hello "), ("o", "€"), ("r", "80x24")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(got[1..].iter().all(|e| e[0].as_f64().unwrap() >= 0.0));
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn input_is_kept_only_when_asked_and_unsent_data_goes_back_first() {
        let h = Header {
            width: 80,
            height: 24,
            timestamp: 0,
            title: "",
            term: None,
            shell: None,
        };
        let mut r = Recorder::new(&h, true);
        let header = r.take();
        r.input(b"ls\r");
        let first = r.take();
        r.output(b"x");
        r.put_back(first.clone());
        let head = r.take_at_most(3);
        assert_eq!(head, first[..3]);
        r.put_back(head);
        let all = r.take();
        assert!(all.starts_with(&first));
        let text = String::from_utf8(all).unwrap();
        assert!(text.contains(r#""i","ls\r""#), "{text}");
        assert!(!header.is_empty());
    }
}
