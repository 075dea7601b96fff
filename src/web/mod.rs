//! `pgpchat web`: a local web page over the core's API, a front-end like the prompt.
//!
//! The browser speaks the JSON-RPC 2.0 of `docs/ipc.md` on a WebSocket; this process decodes each
//! request with the API's own types and multiplexes every page's requests onto one connection to
//! the core, made with the library's async client (no second logic: the core answers). The page's
//! files are embedded in the binary. Security model (`docs/web.md`): 127.0.0.1 only, a one-time
//! token exchanged for an HttpOnly SameSite=Strict cookie, `Host` checked against DNS rebinding,
//! the WebSocket's `Origin` checked against cross-site hijacking, a strict CSP, no CORS.
//!
//! One concern per file: [`guard`] (Host, Sec-Fetch-Site and the security headers of every
//! answer), [`auth`] (token, sessions, login and logout), [`assets`] (the embedded page),
//! [`socket`] (one browser's WebSocket), [`rpc`] (a browser's line into a typed request and back),
//! [`core_link`] (the one connection to the core, its events, and waiting for a core that went
//! away).

mod assets;
mod auth;
mod core_link;
mod guard;
mod rpc;
mod socket;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
use pgpchat_actors::client::AsyncClient;

use crate::ctx::Ctx;

/// What every handler shares.
pub struct Web {
    /// The port actually bound (the one in `Host`, `Origin` and the cookie's name).
    pub port: u16,
    pub auth: auth::Auth,
    pub core: Arc<core_link::CoreLink>,
    /// Bounds the browser WebSockets open at once, all pages together.
    pub sockets: Arc<tokio::sync::Semaphore>,
}

/// `pgpchat web`: bind the port (one line if it is taken), make sure a core runs (starting one as
/// the prompt does), print the login URL, and serve until Ctrl-C or SIGTERM.
pub fn run(ctx: &Ctx) -> Result<()> {
    let port = ctx.settings.web.port;
    let listener = bind(port)?;
    let mut client = crate::core_process::ensure_core(ctx, || {
        crate::secrets::obtain(
            None,
            "PGPCHAT_PASSPHRASE",
            "Passphrase for your identity key",
            false,
        )
    })?;
    client.check_version(&ctx.hint("stop"))?;
    drop(client);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the web server's runtime")?;
    runtime.block_on(serve_until_stopped(ctx, listener))
}

/// The page's listener on 127.0.0.1 (never another address): a port in use is one clear line.
fn bind(port: u16) -> Result<std::net::TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            l.set_nonblocking(true)?;
            Ok(l)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(crate::exit::Usage(format!(
            "port {port} of 127.0.0.1 is already in use (another `pgpchat web`?): choose another \
             with [web] port in the configuration or PGPCHAT__WEB__PORT"
        ))
        .into()),
        Err(e) => Err(e).with_context(|| format!("listening on {addr}")),
    }
}

async fn serve_until_stopped(ctx: &Ctx, listener: std::net::TcpListener) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let port = listener.local_addr()?.port();
    let socket = ctx.settings.ipc_socket();
    let (client, events) = AsyncClient::connect(&socket).await?;
    client.check_version().await?;
    let core = core_link::CoreLink::start(socket, client, events).await?;
    let run_dir = ctx.settings.node.data_dir.join("run");
    let auth = auth::Auth::new(port, &run_dir)?;
    let url = auth.login_url();
    crate::stdout::write(format_args!(
        "pgpchat web: open {url}\n(the link works once; the next one is always in {})\n",
        auth.url_file().display()
    ));
    let _ = std::io::stdout().flush();
    let web = Arc::new(Web {
        port,
        auth,
        core,
        sockets: Arc::new(tokio::sync::Semaphore::new(socket::MAX_SOCKETS)),
    });
    let served = serve(
        listener,
        web.clone(),
        pgpchat_actors::daemon::termination_signal(),
    )
    .await;
    web.auth.forget_url_file();
    served
}

/// HTTP connections open at once, all clients together (a WebSocket stops counting here once
/// upgraded: `socket::MAX_SOCKETS` bounds those). Past it, a new connection is closed at once.
pub const MAX_CONNECTIONS: usize = 128;

/// Time a connection has to send a whole request head (the first one, and each next one on a
/// kept-alive connection): one that sends nothing or dribbles it is closed.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the open connections get to finish when `pgpchat web` stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve the page on an already-bound listener until `shutdown` completes: at most
/// [`MAX_CONNECTIONS`] connections, each request head within [`HEADER_READ_TIMEOUT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    web: Arc<Web>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/login", get(auth::login))
        .route("/logout", post(auth::logout))
        .route("/ws", get(socket::upgrade))
        .fallback(assets::not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::check_and_harden,
        ))
        .with_state(web);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait a little rather than spin.
                    log::warn!("web page: accepting a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
