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

/// Serve the page on an already-bound listener until `shutdown` completes.
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
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the web page")
}
