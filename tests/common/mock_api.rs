//! Responses for kube's mock client (tower-test): what the API server would answer.

#![allow(dead_code)]

use http::{Response, StatusCode};
use kube::client::Body;
use serde_json::Value;

/// A response with this status, content type and body.
pub fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("response")
}

/// A JSON response with this status.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(body).expect("json"),
    )
}
