//! The blocking client: one request at a time on one connection, events kept for later.
//!
//! The core closes a connection that stays idle (no subscription, nothing in flight) for
//! `limits.ipc_idle_timeout_secs`, saying so first with a `closing` notice (`docs/ipc.md`). The
//! client then reconnects and sends its request again, transparently: a connection closed that way
//! never had the request read, so it cannot run twice.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    check_version, decode, parse_line, request_line, ClientError, Incoming, MAX_LINE_BYTES,
};
use crate::api::{
    Method, Notification, PendingRequest, Refusal, Request, RequestsRequest, VersionInfo,
    VersionRequest,
};

pub struct Client {
    socket: PathBuf,
    conn: Connection,
    next_id: u64,
    events: VecDeque<Notification>,
}

struct Connection {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Connection {
    fn open(socket: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(socket).map_err(|source| ClientError::NotRunning {
            socket: socket.to_path_buf(),
            source,
        })?;
        let reader = BufReader::new(s.try_clone()?);
        Ok(Self { writer: s, reader })
    }

    /// The next line; None at the end of the stream.
    fn read_line(&mut self) -> Result<Option<String>, std::io::Error> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_LINE_BYTES as u64)
            .read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with('\n') && n == MAX_LINE_BYTES {
            return Err(std::io::Error::other(ClientError::LineTooLong));
        }
        Ok(Some(line))
    }
}

/// How one request went.
enum Outcome {
    Answer(Result<Value, ClientError>),
    /// The core closed the connection as idle before reading the request.
    ClosedIdle,
}

impl Client {
    /// Connect to the core on `socket`.
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        Ok(Self {
            socket: socket.to_path_buf(),
            conn: Connection::open(socket)?,
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Connect, and check that the core speaks a compatible API version.
    pub fn connect_checked(socket: &Path) -> Result<Self, ClientError> {
        let mut c = Self::connect(socket)?;
        c.check_version()?;
        Ok(c)
    }

    /// Ask the core's versions; an error if this client cannot use it.
    pub fn check_version(&mut self) -> Result<VersionInfo, ClientError> {
        check_version(self.call(VersionRequest {}))
    }

    /// Call a method and wait for its typed answer (events arriving meanwhile are kept).
    pub fn call<M: Method>(&mut self, request: M) -> Result<M::Result, ClientError> {
        self.request(request.into())
    }

    /// Pending discussion requests.
    pub fn requests(&mut self) -> Result<Vec<PendingRequest>, ClientError> {
        self.request(RequestsRequest { refused: None }.into())
    }

    /// The requests recently turned away without asking the user, oldest first.
    pub fn refused_requests(&mut self) -> Result<Vec<Refusal>, ClientError> {
        self.request(
            RequestsRequest {
                refused: Some(true),
            }
            .into(),
        )
    }

    /// Send `request` and read its answer as `T`.
    pub fn request<T: DeserializeOwned>(&mut self, request: Request) -> Result<T, ClientError> {
        let method = request.method();
        let v = match self.exchange(&request)? {
            Outcome::Answer(r) => r?,
            Outcome::ClosedIdle => {
                self.conn = Connection::open(&self.socket)?;
                match self.exchange(&request)? {
                    Outcome::Answer(r) => r?,
                    Outcome::ClosedIdle => return Err(ClientError::Closed),
                }
            }
        };
        decode(method, v)
    }

    fn exchange(&mut self, request: &Request) -> Result<Outcome, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = request_line(id, request)?;
        let written = writeln!(self.conn.writer, "{line}");
        let mut closed_idle = false;
        loop {
            let line = match self.conn.read_line() {
                Ok(Some(l)) => l,
                Ok(None) | Err(_) if closed_idle => return Ok(Outcome::ClosedIdle),
                Ok(None) => return Err(ClientError::Closed),
                Err(e) => return Err(ClientError::ClosedWith(e)),
            };
            match parse_line(&line)? {
                Incoming::Notice(Notification::Closing { .. }) => closed_idle = true,
                Incoming::Notice(n) => self.events.push_back(n),
                Incoming::Answer { .. } if written.is_err() => {
                    // Nothing of ours reached the core; read on only to find its notice.
                    if let Err(e) = written {
                        return Err(ClientError::ClosedWith(e));
                    }
                }
                Incoming::Answer { id: got, result } if got == id => {
                    return Ok(Outcome::Answer(result.map_err(ClientError::Rpc)));
                }
                Incoming::Answer { .. } | Incoming::Other => {}
            }
        }
    }

    /// The next notification (`event`, `lagged`), waiting at most `timeout` (None: forever).
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Notification>, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        self.conn.reader.get_ref().set_read_timeout(timeout)?;
        let r = self.conn.read_line();
        self.conn.reader.get_ref().set_read_timeout(None)?;
        match r {
            Ok(Some(line)) => match parse_line(&line)? {
                Incoming::Notice(n) => Ok(Some(n)),
                Incoming::Answer { .. } | Incoming::Other => Ok(None),
            },
            Ok(None) => Err(ClientError::Closed),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(ClientError::ClosedWith(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{WhoAmI, WhoamiRequest};
    use serde_json::json;
    use std::os::unix::net::UnixListener;

    fn whoami(name: &str) -> Value {
        json!({"name": name, "fingerprint": "F", "node": "n", "tcp_port": 1, "data_dir": "/d"})
    }

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
                json!({"jsonrpc":"2.0","id":req["id"],"result": whoami("alice")})
            )
            .unwrap();
            req
        });
        let mut client = Client::connect(&path).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let me: WhoAmI = client.call(WhoamiRequest {}).unwrap();
        assert_eq!(me.name, "alice");
        assert_eq!(server.join().unwrap()["method"], "whoami");
    }

    /// A core whose answer lacks a field (or names it differently) is an error, not an empty
    /// string.
    #[test]
    fn an_answer_with_a_missing_or_renamed_field_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut renamed = whoami("alice");
            let fpr = renamed
                .as_object_mut()
                .unwrap()
                .remove("fingerprint")
                .unwrap();
            renamed["fpr"] = fpr;
            for answer in [renamed, whoami("alice")] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let req: Value = serde_json::from_str(&line).unwrap();
                writeln!(
                    w,
                    "{}",
                    json!({"jsonrpc":"2.0","id":req["id"],"result": answer})
                )
                .unwrap();
            }
        });
        let mut client = Client::connect(&path).unwrap();
        let e = client.call(WhoamiRequest {}).unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::BadAnswer {
                    method: "whoami",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("fingerprint"), "{e}");
        assert_eq!(client.call(WhoamiRequest {}).unwrap().fingerprint, "F");
    }

    #[test]
    fn an_incompatible_or_unversioned_core_is_refused_with_how_to_restart_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let answers = [
                json!({"result": {"api": "2.0", "core": "9.0.0"}}),
                json!({"error": {"code": -32601, "message": "unknown method 'version'"}}),
            ];
            for a in answers {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let req: Value = serde_json::from_str(&line).unwrap();
                let mut a = a;
                a["jsonrpc"] = "2.0".into();
                a["id"] = req["id"].clone();
                writeln!(w, "{a}").unwrap();
            }
        });
        let mut client = Client::connect(&path).unwrap();
        for _ in 0..2 {
            let e = client.check_version().unwrap_err();
            assert!(matches!(e, ClientError::Incompatible { .. }), "{e}");
            assert!(e.to_string().contains("`pgpchat stop`"), "{e}");
        }
    }

    #[test]
    fn no_core_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let e = Client::connect(&dir.path().join("none")).err().unwrap();
        assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
    }
}
