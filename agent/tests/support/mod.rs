//! Real git for the source tests: repositories made with the git CLI and a smart-HTTP
//! server running `git http-backend` on 127.0.0.1.

pub mod git_http;
pub mod upstream;
