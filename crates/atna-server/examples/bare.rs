//! The yardstick for the HTTP benchmark (`bench/http.sh`): a bare axum server whose one handler returns "ok", on the
//! same axum and tokio as atna, with the same socket option (TCP_NODELAY) so the comparison measures atna's own work.
//! `cargo run --release -p atna-server --example bare -- 127.0.0.1:8090`

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare listening on http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/", get(|| async { "ok" }));
    axum::serve(listener, app).await
}
