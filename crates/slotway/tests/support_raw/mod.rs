//! A raw RESP2 client for tests that check exact replies (shared by core.rs, transactions.rs, blocking.rs, ...).
#![allow(dead_code)]

use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A RESP2 reply, decoded exactly.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "${}", show(b)),
            Reply::Array(None) => write!(f, "(nil array)"),
            Reply::Array(Some(v)) => f.debug_list().entries(v).finish(),
        }
    }
}

/// Bytes for a failure message: quoted, the first 400 of them.
pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned();
    if b.len() > 400 {
        format!("{s:?}... ({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

pub fn ok() -> Reply {
    Reply::Simple("OK".into())
}
pub fn queued() -> Reply {
    Reply::Simple("QUEUED".into())
}
pub fn simple(s: &str) -> Reply {
    Reply::Simple(s.into())
}
pub fn err(s: &str) -> Reply {
    Reply::Error(s.into())
}
pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}
pub fn nil() -> Reply {
    Reply::Bulk(None)
}
pub fn int(i: i64) -> Reply {
    Reply::Int(i)
}
pub fn arr(items: Vec<Reply>) -> Reply {
    Reply::Array(Some(items))
}

/// RESP encoding of a command given as strings.
pub fn c(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
}

/// Parses one reply at `buf[at..]`: `Ok(None)` when incomplete, else the reply and the offset after it.
pub fn parse_reply(buf: &[u8], at: usize) -> Result<Option<(Reply, usize)>, String> {
    let Some(&kind) = buf.get(at) else { return Ok(None) };
    let Some(cr) = find_crlf(buf, at + 1) else { return Ok(None) };
    let line = String::from_utf8_lossy(&buf[at + 1..cr]).into_owned();
    let next = cr + 2;
    let num = || line.parse::<i64>().map_err(|_| format!("bad length/integer line {line:?}"));
    match kind {
        b'+' => Ok(Some((Reply::Simple(line), next))),
        b'-' => Ok(Some((Reply::Error(line), next))),
        b':' => Ok(Some((Reply::Int(num()?), next))),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(format!("bulk of {n} bytes not followed by CRLF"));
            }
            Ok(Some((Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = next;
            for _ in 0..n {
                match parse_reply(buf, pos)? {
                    Some((r, p)) => {
                        items.push(r);
                        pos = p;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        other => Err(format!("not a RESP2 reply type byte: {:?}", other as char)),
    }
}

/// A raw TCP client speaking RESP by hand.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to slotway");
    }

    /// Sends several commands in one write (a pipeline).
    pub fn send_all(&mut self, cmds: &[&[&str]]) {
        let bytes: Vec<u8> = cmds.iter().flat_map(|a| c(a)).collect();
        self.send(&bytes);
    }

    pub fn read_reply(&mut self) -> Reply {
        loop {
            match parse_reply(&self.buf, 0) {
                Ok(Some((r, used))) => {
                    self.buf.drain(..used);
                    return r;
                }
                Ok(None) => {}
                Err(e) => panic!("bad reply: {e}"),
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.s.read(&mut chunk).unwrap_or_else(|e| panic!("no whole reply ({e}); got {:?}", self.buf));
            assert!(n > 0, "connection closed; got {:?}", String::from_utf8_lossy(&self.buf));
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> Reply {
        self.send(&c(args));
        self.read_reply()
    }

    /// Sends a pipeline and reads one reply per command.
    pub fn pipeline(&mut self, cmds: &[&[&str]]) -> Vec<Reply> {
        self.send_all(cmds);
        cmds.iter().map(|_| self.read_reply()).collect()
    }
}

/// `name:value` of slotway's INFO (the `# Proxy` section).
pub fn proxy_info(raw: &mut Raw, name: &str) -> i64 {
    let Reply::Bulk(Some(text)) = raw.call(&["INFO", "proxy"]) else { panic!("INFO is not a bulk string") };
    let text = String::from_utf8(text).unwrap();
    let prefix = format!("{name}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in INFO:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}
