//! Who may use the page: a random one-time token, printed as a URL and kept in a 0600 file for
//! scripts, is exchanged for a session cookie; sessions live in this process only, so they end at
//! logout or when `pgpchat web` restarts.
//!
//! The cookie is `pgpchat-PORT` (alice's and bob's pages on one machine keep their own), HttpOnly
//! (no script reads it), SameSite=Strict (no other site's request carries it), Path=/. After the
//! exchange the browser is redirected to `/`, so the token leaves the address bar and its history;
//! a new token takes its place in the file.
//!
//! The cookie alone opens nothing: browsers send a cookie to every port of its host, and every
//! port of 127.0.0.1 is one site for SameSite, so another server on this machine that the user
//! visits (another local user's, any local dev server) gets a copy of it. Each session therefore
//! also has a key, given once at the login redirect in the URL's fragment (`/#key=…`, never sent
//! to a server), kept by the page in its own origin's `localStorage` (which another port cannot
//! read), and required with the cookie to open the WebSocket ([`Auth::key_matches`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Web;

/// Sessions kept at once (browsers, tabs sharing a cookie count once); a new login past it ends
/// the oldest session.
pub const MAX_SESSIONS: usize = 16;

/// Random bytes in a token or a session id.
const SECRET_BYTES: usize = 32;

pub struct Auth {
    port: u16,
    token: Mutex<String>,
    sessions: Mutex<HashMap<String, Session>>,
    url_file: PathBuf,
    /// Counts the sessions ended (logout, or pushed out by a newer one): each WebSocket watches it
    /// and closes when its own session is gone.
    ended: tokio::sync::watch::Sender<u64>,
}

/// A live session: when it began, and the key its page must show with the cookie.
struct Session {
    since: Instant,
    key: String,
}

fn random_hex() -> String {
    let mut b = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auth {
    /// A fresh token, written (0600) to `run_dir/web.url`.
    pub fn new(port: u16, run_dir: &Path) -> anyhow::Result<Self> {
        let auth = Self {
            port,
            token: Mutex::new(random_hex()),
            sessions: Mutex::default(),
            url_file: run_dir.join("web.url"),
            ended: tokio::sync::watch::Sender::new(0),
        };
        auth.write_url_file()?;
        Ok(auth)
    }

    /// The name of this page's session cookie.
    pub fn cookie_name(&self) -> String {
        format!("pgpchat-{}", self.port)
    }

    /// The URL that logs a browser in (once).
    pub fn login_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/login?token={}",
            self.port,
            lock(&self.token)
        )
    }

    pub fn url_file(&self) -> &Path {
        &self.url_file
    }

    fn write_url_file(&self) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let dir = self.url_file.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // Written aside and renamed: a script never reads half a URL, and the mode is 0600 from
        // the first byte.
        let tmp = self.url_file.with_extension("url.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(f, "{}", self.login_url())?;
        std::fs::rename(&tmp, &self.url_file)?;
        Ok(())
    }

    /// Remove the URL file (at exit: its token is dead with the process).
    pub fn forget_url_file(&self) {
        let _ = std::fs::remove_file(&self.url_file);
    }

    /// Exchange the token for a new session: its id (the cookie) and its key (for the page's
    /// origin only); the token is replaced.
    fn exchange(&self, given: &str) -> Option<(String, String)> {
        let mut token = lock(&self.token);
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return None;
        }
        *token = random_hex();
        drop(token);
        if let Err(e) = self.write_url_file() {
            log::warn!("cannot write {}: {e}", self.url_file.display());
        }
        let id = random_hex();
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.since)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
                self.ended.send_modify(|n| *n += 1);
            }
        }
        let key = random_hex();
        sessions.insert(
            id.clone(),
            Session {
                since: Instant::now(),
                key: key.clone(),
            },
        );
        Some((id, key))
    }

    /// Whether `given` is the key of the live session `id` (compared in constant time).
    pub fn key_matches(&self, id: &str, given: &str) -> bool {
        lock(&self.sessions)
            .get(id)
            .is_some_and(|s| bool::from(s.key.as_bytes().ct_eq(given.as_bytes())))
    }

    /// This page's session id in the request's cookies, if it names a live session.
    pub fn session_of(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.cookie_name();
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())?;
        let sessions = lock(&self.sessions);
        // Compared in constant time against each live session.
        let live = sessions
            .keys()
            .any(|k| bool::from(k.as_bytes().ct_eq(id.as_bytes())));
        live.then_some(id)
    }

    fn end(&self, id: &str) {
        lock(&self.sessions).remove(id);
        self.ended.send_modify(|n| *n += 1);
    }

    /// Whether the session `id` is still live.
    pub fn is_live(&self, id: &str) -> bool {
        lock(&self.sessions).contains_key(id)
    }

    /// Changes whenever a session ends.
    pub fn watch_ended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ended.subscribe()
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    token: String,
}

/// `GET /login?token=T`: the token for a cookie, then away from the URL. (A cross-site request
/// never reaches here: `guard` refuses it.)
pub async fn login(State(web): State<Arc<Web>>, Query(q): Query<LoginQuery>) -> Response {
    // The exchange writes the next token's file: disk work, off the event loop.
    let exchanged = {
        let web = web.clone();
        tokio::task::spawn_blocking(move || web.auth.exchange(&q.token)).await
    };
    let Some((id, key)) = exchanged.ok().flatten() else {
        return (
            StatusCode::UNAUTHORIZED,
            "refused: this login link is wrong or was used already; the current one is in the \
             web.url file of the data directory's run/ folder",
        )
            .into_response();
    };
    let cookie = format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/",
        web.auth.cookie_name()
    );
    redirect_with_cookie(&cookie, &format!("/#key={key}"))
}

/// `POST /logout`: the session ends and its cookie is cleared.
pub async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if !super::socket::origin_is_own(&headers, web.port) {
        return (StatusCode::FORBIDDEN, "refused: not from this page").into_response();
    }
    if let Some(id) = web.auth.session_of(&headers) {
        web.auth.end(&id);
    }
    let cookie = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        web.auth.cookie_name()
    );
    redirect_with_cookie(&cookie, "/")
}

fn redirect_with_cookie(cookie: &str, to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    res
}
