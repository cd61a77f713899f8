//! HTTP: the gateway API (`/v1`, bearer API keys) and the operator listener.

pub mod admin;
pub mod auth;
pub mod error;
pub mod gateway;
pub mod matrix;
pub mod operator;
