//! The client side of a connection under `GATEWAY_HTTP=hyper`: hyper's server reads every
//! request and writes every answer, from the first byte of the connection to its close.

use std::{pin::pin, rc::Rc};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::{App, forwarding::Client, limits::ConnectionPlace};

/// Serves the connection from `client` with hyper until it closes or `shutdown` is
/// cancelled (a request in flight is answered first, with `Connection: close`). `_place`
/// is the connection's place under the per-client cap, given back when it ends.
pub(crate) async fn serve(
    _place: ConnectionPlace,
    stream: TcpStream,
    app: Rc<App>,
    client: Client,
    http: Rc<http1::Builder>,
    shutdown: CancellationToken,
) {
    let service = service_fn(move |request| app.call(request, &client));
    let mut served = pin!(http.serve_connection(TokioIo::new(stream), service));
    tokio::select! {
        _ = served.as_mut() => {}
        () = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}
