//! The downstream side of a connection with hyper's server: under `GATEWAY_HTTP=hyper` for
//! every connection from its first byte, and under the gateway's own HTTP/1 for the rest of
//! a connection whose request was not simple.

use std::{
    pin::{Pin, pin},
    rc::Rc,
};

use hyper::{
    rt::{Read, Write},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::{App, forwarding::Client, limits::ConnectionPlace};

/// Serves the connection from `client` with hyper until it closes or `shutdown` is
/// cancelled. `_place` is the connection's place under the per-client cap, given back when
/// it ends.
pub(crate) async fn serve(
    _place: ConnectionPlace,
    stream: TcpStream,
    app: Rc<App>,
    client: Client,
    http: Rc<http1::Builder>,
    shutdown: CancellationToken,
) {
    let stopped = pin!(shutdown.cancelled());
    serve_io(TokioIo::new(stream), app, client, &http, stopped).await;
}

/// Serves `io` with hyper until the connection closes or `stopped` is ready; then a request
/// in flight is answered first, with `Connection: close`.
pub(crate) async fn serve_io<I: Read + Write + Unpin + 'static>(
    io: I,
    app: Rc<App>,
    client: Client,
    http: &http1::Builder,
    stopped: Pin<&mut impl Future<Output = ()>>,
) {
    let service = service_fn(move |request| app.call(request, &client));
    let mut served = pin!(http.serve_connection(io, service));
    tokio::select! {
        _ = served.as_mut() => {}
        () = stopped => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}
