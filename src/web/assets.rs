//! The page's files, embedded in the binary (no CDN, no fetch from anywhere else): the page itself
//! (only to a browser with a live session), its script and its style.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Web;

const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const APP_CSS: &str = include_str!("static/app.css");
const LOGIN_HTML: &str = include_str!("static/login.html");

fn file(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /`: the single page, or how to log in.
pub async fn index(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    if web.auth.session_of(&headers).is_some() {
        file(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
    } else {
        file(
            StatusCode::UNAUTHORIZED,
            "text/html; charset=utf-8",
            LOGIN_HTML,
        )
    }
}

pub async fn script() -> Response {
    file(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    file(StatusCode::OK, "text/css; charset=utf-8", APP_CSS)
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}
