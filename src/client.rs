//! A blocking JSON-RPC client of the core's IPC socket (what every command and the prompt use).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Largest line accepted from the core.
const MAX_LINE: usize = 16 * 1024 * 1024;

pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
    events: VecDeque<Value>,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Self> {
        let s = UnixStream::connect(socket).map_err(|e| {
            anyhow!(
                "the core is not running (no answer on {}: {e}); start it with `pgpchat daemon` \
                 or `pgpchat chat`",
                socket.display()
            )
        })?;
        let reader = BufReader::new(s.try_clone()?);
        Ok(Self {
            writer: s,
            reader,
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Call a method and wait for its answer (events arriving meanwhile are kept for later).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.writer, "{line}")
            .map_err(|e| anyhow!("the core closed the connection ({e})"))?;
        loop {
            let v = self
                .read_line()
                .map_err(|e| anyhow!("the core closed the connection ({e})"))?
                .ok_or_else(|| anyhow!("the core closed the connection"))?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    bail!(
                        "{}",
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown error")
                    );
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
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
        self.reader.get_ref().set_read_timeout(timeout)?;
        let r = self.read_line();
        self.reader.get_ref().set_read_timeout(None)?;
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
