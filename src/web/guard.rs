//! What every request passes before any handler, and what every answer carries.
//!
//! - `Host` must be exactly `127.0.0.1:PORT` or `localhost:PORT` (the port bound): a page of
//!   another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name,
//!   and is refused before anything is read or answered.
//! - `Sec-Fetch-Site`, when the browser sends it, must be `same-origin` or `none` (typed or opened
//!   from outside a browser page): a request started by another site, or by another port of this
//!   machine (`same-site`: bob's page is same-site to alice's), is refused. Browsers that do not
//!   send it still have the cookie's SameSite=Strict and the WebSocket's `Origin` check.
//! - Every answer has a strict Content-Security-Policy (only this origin's own script, style and
//!   WebSocket; no inline script, no frames, no form posts elsewhere), `nosniff`, no referrer, no
//!   caching, and no CORS header at all (another origin's script cannot read any answer).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Web;

/// The names this page answers to, with the port bound.
pub fn allowed_hosts(port: u16) -> [String; 2] {
    [format!("127.0.0.1:{port}"), format!("localhost:{port}")]
}

/// The Content-Security-Policy of every answer.
pub fn content_security_policy(port: u16) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' ws://127.0.0.1:{port} ws://localhost:{port}; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// The request's `Host`, if it is one of [`allowed_hosts`].
pub fn host_of(headers: &HeaderMap, port: u16) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    allowed_hosts(port).into_iter().find(|h| h == host)
}

/// Whether the browser says another site (or another port here) started this request.
pub fn is_cross_site(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").map(HeaderValue::to_str) {
        None => false,
        Some(Ok("same-origin" | "none")) => false,
        Some(_) => true,
    }
}

pub async fn check_and_harden(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    let mut res = if host_of(req.headers(), web.port).is_none() {
        refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "refused: this page answers only to the Host it printed (127.0.0.1 or localhost with its port)",
        )
    } else if is_cross_site(req.headers()) {
        refuse(
            StatusCode::FORBIDDEN,
            "refused: the request came from another site (Sec-Fetch-Site)",
        )
    } else {
        next.run(req).await
    };
    harden(res.headers_mut(), web.port);
    res
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

fn harden(h: &mut HeaderMap, port: u16) {
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(port)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_printed_hosts_and_same_origin_requests_pass() {
        assert!(host_of(&headers(&[("host", "127.0.0.1:8080")]), 8080).is_some());
        assert!(host_of(&headers(&[("host", "localhost:8080")]), 8080).is_some());
        for bad in [
            "127.0.0.1:8081",
            "127.0.0.1",
            "evil.example:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(host_of(&headers(&[("host", bad)]), 8080).is_none(), "{bad}");
        }
        assert!(host_of(&HeaderMap::new(), 8080).is_none());
        assert!(!is_cross_site(&HeaderMap::new()));
        for ok in ["same-origin", "none"] {
            assert!(!is_cross_site(&headers(&[("sec-fetch-site", ok)])), "{ok}");
        }
        for bad in ["cross-site", "same-site", "other"] {
            assert!(is_cross_site(&headers(&[("sec-fetch-site", bad)])), "{bad}");
        }
    }
}
