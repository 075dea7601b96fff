//! A blocking JSON-RPC client of the core's IPC socket (what every command and the prompt use).
//!
//! The core closes a connection that stays idle (no subscription, nothing in flight) for
//! `limits.ipc_idle_timeout_secs`, saying so first with a `closing` notice (`docs/ipc.md`). The
//! client then reconnects and sends its request again, transparently: a connection closed that way
//! never had the request read, so it cannot run twice.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Largest line accepted from the core.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The notice the core sends before closing an idle connection.
const CLOSING_NOTICE: &str = "closing";

pub struct Client {
    socket: PathBuf,
    /// What to tell the user when no core answers (the command to start one, with their options).
    start_hint: String,
    conn: Connection,
    next_id: u64,
    events: VecDeque<Value>,
}

struct Connection {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Connection {
    fn open(socket: &Path, start_hint: &str) -> Result<Self> {
        let s = UnixStream::connect(socket).map_err(|e| {
            anyhow!(
                "the core is not running (no answer on {}: {e}); {start_hint}",
                socket.display()
            )
        })?;
        let reader = BufReader::new(s.try_clone()?);
        Ok(Self { writer: s, reader })
    }

    fn read_line(&mut self) -> Result<Option<Value>> {
        let mut line = String::new();
        let n = std::io::Read::take(&mut self.reader, MAX_LINE as u64).read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(
            serde_json::from_str(&line).context("bad line from the core")?,
        ))
    }
}

/// How one request went.
enum Outcome {
    Answer(Result<Value>),
    /// The core closed the connection as idle before reading the request.
    ClosedIdle,
}

fn is_closing_notice(v: &Value) -> bool {
    v.get("method").and_then(Value::as_str) == Some(CLOSING_NOTICE)
}

impl Client {
    /// Connect to the core on `socket`; `start_hint` ends the error when none answers.
    pub fn connect(socket: &Path, start_hint: String) -> Result<Self> {
        let conn = Connection::open(socket, &start_hint)?;
        Ok(Self {
            socket: socket.to_path_buf(),
            start_hint,
            conn,
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Call a method and wait for its answer (events arriving meanwhile are kept for later).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        match self.exchange(method, &params)? {
            Outcome::Answer(r) => r,
            Outcome::ClosedIdle => {
                self.conn = Connection::open(&self.socket, &self.start_hint)?;
                match self.exchange(method, &params)? {
                    Outcome::Answer(r) => r,
                    Outcome::ClosedIdle => bail!("the core closed the connection"),
                }
            }
        }
    }

    fn exchange(&mut self, method: &str, params: &Value) -> Result<Outcome> {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let written = writeln!(self.conn.writer, "{line}");
        let mut closed_idle = false;
        loop {
            let v = match self.conn.read_line() {
                Ok(Some(v)) => v,
                Ok(None) | Err(_) if closed_idle => return Ok(Outcome::ClosedIdle),
                Ok(None) => bail!("the core closed the connection"),
                Err(e) => bail!("the core closed the connection ({e})"),
            };
            if is_closing_notice(&v) {
                closed_idle = true;
                continue;
            }
            if let Err(e) = &written {
                // Nothing of ours reached the core; read on only to find its notice.
                if v.get("id").is_some() {
                    bail!("the core closed the connection ({e})");
                }
            }
            if written.is_ok() && v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    return Ok(Outcome::Answer(Err(anyhow!(
                        "{}",
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown error")
                    ))));
                }
                return Ok(Outcome::Answer(Ok(v
                    .get("result")
                    .cloned()
                    .unwrap_or(Value::Null))));
            }
            if v.get("method").is_some() {
                self.events.push_back(v);
            }
        }
    }

    /// The next notification (`event`, `lagged`), waiting at most `timeout` (None: forever).
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Value>> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        self.conn.reader.get_ref().set_read_timeout(timeout)?;
        let r = self.conn.read_line();
        self.conn.reader.get_ref().set_read_timeout(None)?;
        match r {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => bail!("the core closed the connection"),
            Err(e) => match e.downcast_ref::<std::io::Error>() {
                Some(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Ok(None)
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake core: the first connection is closed as idle (notice, then close, the request
    /// unread); the second one answers. The call succeeds, on the second connection.
    #[test]
    fn a_connection_closed_as_idle_is_reopened_and_the_request_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut first, _) = listener.accept().unwrap();
            writeln!(
                first,
                "{}",
                json!({"jsonrpc":"2.0","method":"closing","params":{"reason":"idle"}})
            )
            .unwrap();
            // Wait for the client's request, then close without reading it.
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
            let (second, _) = listener.accept().unwrap();
            let mut r = BufReader::new(second.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let req: Value = serde_json::from_str(&line).unwrap();
            let mut w = second;
            writeln!(
                w,
                "{}",
                json!({"jsonrpc":"2.0","id":req["id"],"result":{"name":"alice"}})
            )
            .unwrap();
            req
        });
        let mut client = Client::connect(&path, "start it".into()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let v = client.call("whoami", json!({})).unwrap();
        assert_eq!(v["name"], "alice");
        assert_eq!(server.join().unwrap()["method"], "whoami");
    }

    #[test]
    fn no_core_says_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = Client::connect(&dir.path().join("none"), "start it with X".into())
            .err()
            .unwrap();
        assert!(e.to_string().contains("start it with X"), "{e}");
    }
}
