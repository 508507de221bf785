//! opencode-sidepanel: a pingora gateway between OpenCode and the Venice AI API that knows,
//! after every response, the balance, the rate-limit headroom and the exact tokens and cost.
//!
//! Start with [`app`] (building and running the server) and [`gateway`] (the proxy phases);
//! `docs/ARCHITECTURE.md` follows a request through the code.

pub mod access;
pub mod admission;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod hub;
pub mod ingest;
pub mod install;
pub mod lean;
pub mod memory;
pub mod metrics;
pub mod opencode;
pub mod pricing;
pub mod refresh;
pub mod services;
pub mod simulator;
pub mod store;
pub mod util;
pub mod ws;
