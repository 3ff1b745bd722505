//! The fleet test server as a process, for the multi-host e2e test: it runs in the
//! network namespace the test creates, where the test machines reach it.
//!
//! Usage: `leger-fleet-test-server LISTEN_ADDR SLOTS [REPORT_TOKEN]`

use anyhow::{Context, Result};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .context("usage: leger-fleet-test-server ADDR SLOTS [TOKEN]")?;
    let slots: usize = args
        .next()
        .context("usage: leger-fleet-test-server ADDR SLOTS [TOKEN]")?
        .parse()
        .context("SLOTS must be a number")?;
    let token = args.next();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("fleet test server on {listen}, {slots} slot(s) per group");
    leger_e2e::fleet_server::serve(listener, leger_e2e::fleet_server::state(slots, token)).await;
    Ok(())
}
